"""The docker sandbox: programs run by ``docker exec`` in a warm pool of locked-down containers.

    box = DockerSandbox()    # needs scripts/docker-up.sh and scripts/build-sandbox-image.sh
    box.run(Program({"main.py": "print(1)"}, ["python3", "main.py"]), Limits(timeout_s=5))

Each container: ``network_mode=none`` (a loopback only), a read-only root, a size-capped tmpfs ``/work`` and a
small ``/tmp``, no capabilities, ``no-new-privileges``, uid/gid 65534, its own pid/ipc/uts/mount namespaces,
memory (no swap) and pids cgroups, one CPU, the daemon's default seccomp profile; pid 1 is a python loop that
reaps orphans (``sleep`` would not) and, as the namespace's init, survives ``kill -9 -1``. A run is one exec
of a (perl) runner that writes the files, runs the command under rlimits with a scrubbed environment, then kills
every other process (daemons too), empties ``/work`` and ``/tmp`` and reports on stderr in a nonce-tagged
status line the host strips. A container that cannot be cleaned, or whose limits differ, is replaced.

Protects against: network access, writes outside ``/work``/``/tmp``, host files and environment, fork/
memory/disk/output bombs, CPU loops, processes outliving the run, leftovers leaking into the next run,
containers outliving the caller (``close``/``atexit``, a sweep of dead owners' containers, and a detached
reaper: see ``docker_reaper``). Not protected against: kernel or runtime exploits, side channels, anything
that can reach the Docker socket; a program that ptraces its runner (same uid) could misreport its result.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import secrets
import select
import socket
import threading
import time
import weakref
from pathlib import PurePosixPath

from evalgym.sandbox.base import Limits, Program, RunResult, SandboxUnavailable
from evalgym.sandbox.docker_reaper import owner_labels, start_reaper, sweep_stale

DEFAULT_IMAGE = "evalgym-sandbox:1"
DEFAULT_SOCKET = "/run/evalgym-docker.sock"
USER = "65534:65534"
TMP_MB = 16
_TAIL = 512  # bytes of stderr kept to find the runner's status line
_KILL_GRACE_S = 3.0

_INIT = ("import os,signal\nsignal.pthread_sigmask(signal.SIG_BLOCK,{signal.SIGCHLD})\nwhile True:\n"
         " try:\n  while os.waitpid(-1,os.WNOHANG)[0]: pass\n except ChildProcessError: pass\n"
         " signal.sigtimedwait({signal.SIGCHLD},60)\n")
# The host's cleanup (the runner below does the same in perl): the cgroup's oom-kill count, live processes other than pid 1 and ourselves,
# emptying /work, /tmp, /dev/shm, /dev/mqueue (undoing chmods first) and SysV IPC: all outlive a process.
_COMMON = r"""import os,time
me=os.getpid()
def oom():
 for p in ('/sys/fs/cgroup/memory.events','/sys/fs/cgroup/memory/memory.oom_control'):
  try: return int(open(p).read().split('oom_kill ')[1].split()[0])
  except (OSError,IndexError): pass
 return -1
def alive():
 n=0
 for e in os.listdir('/proc'):
  try: n+=e.isdigit() and int(e) not in (1,me) and open('/proc/'+e+'/stat','rb').read().split(b') ')[-1][:1] \
   not in b'ZX'
  except (OSError,IndexError): pass
 return n
def killall():
 for i in range(400):
  try: os.kill(-1,9)
  except ProcessLookupError: return
  time.sleep(0.003)
def rm(p):
 if os.path.isdir(p) and not os.path.islink(p):
  os.chmod(p,0o700)
  for e in os.listdir(p): rm(os.path.join(p,e))
  os.rmdir(p)
 else: os.unlink(p)
D=('/work','/tmp','/dev/shm','/dev/mqueue')
def ipc():
 try: return sum(len(open('/proc/sysvipc/'+k).readlines())-1 for k in ('shm','msg','sem'))
 except OSError: return 0
def left(): return sum(len(os.listdir(d)) for d in D)+ipc()
def wipe():
 os.chmod('/work',0o755)
 for d in D:
  for e in os.listdir(d):
   try: rm(os.path.join(d,e))
   except Exception: pass
 if ipc(): os.system('ipcrm --all >/dev/null 2>&1')
 return left()
"""
# The runner is perl (in every Debian image, perl-base is essential): it starts in ~3 ms where python3 takes
# ~13 ms, and unlike sh its waitpid tells a signal from an exit code. Same steps as _COMMON + the cleanup.
_RUNNER = r"""my $me=$$;
sub oom { for my $p ('/sys/fs/cgroup/memory.events','/sys/fs/cgroup/memory/memory.oom_control') {
 if (open(my $f,'<',$p)) { local $/; my $s=<$f>; return $1 if defined $s && $s=~/oom_kill (\d+)/ } } -1 }
sub ls { opendir(my $d,$_[0]) or return (); grep { $_ ne '.' && $_ ne '..' } readdir $d }
sub alive { my $n=0; for my $e (ls('/proc')) { next unless $e=~/^\d+$/ && $e!=1 && $e!=$me;
 open(my $f,'<',"/proc/$e/stat") or next; my $s=<$f>; next unless defined $s && $s=~/.*\) (.)/s;
 $n++ unless $1 eq 'Z' || $1 eq 'X' } $n }
sub killall { for (1..400) { kill(9,-1) or return; select(undef,undef,undef,0.003) } }
sub rm { my $p=shift; if ((lstat $p) && -d _) { chmod 0700,$p; rm("$p/$_") for ls($p); rmdir $p } else { unlink $p } }
my @D=('/work','/tmp','/dev/shm','/dev/mqueue');
sub ipc { my $n=0; for my $k ('shm','msg','sem') { open(my $f,'<',"/proc/sysvipc/$k") or return 0; my @l=<$f>;
 $n+=@l-1 } $n }
sub left { my $n=ipc(); $n+=scalar(my @e=ls($_)) for @D; $n }
sub wipe { chmod 0755,'/work'; for my $d (@D) { eval { rm("$d/$_") } for ls($d) }
 system('ipcrm --all >/dev/null 2>&1') if ipc(); left() }
sub rd { my ($n,$b)=(shift,''); while (length($b)<$n) { sysread(STDIN,$b,$n-length($b),length($b)) or exit 97 } $b }
my @h=unpack('(N/a)*',rd(0+rd(12)));
my ($nonce,$cpu,$fsize,$nr,$na)=splice(@h,0,5); my @argv=splice(@h,0,$na); my %env=splice(@h,0,2*shift(@h));
sub status { syswrite(STDERR,sprintf("\0EVALGYM:%s:%s:%d:%d:%d:%d\n",$nonce,$_[0],$_[1],$_[2],oom(),$_[3])) }
if (alive() || left()) { status('dirty',0,0,0); exit 0 }
sub mkpath { my $d=shift; return if -d $d; (my $up=$d)=~s{/[^/]*\z}{}; mkpath($up) if length $up;
 mkdir $d or -d $d or die "evalgym-sandbox: mkdir $d: $!\n" }
while (@h) { my ($rel,$data)=splice(@h,0,2); my $p="/work/$rel"; (my $dir=$p)=~s{/[^/]*\z}{}; mkpath($dir);
 open(my $f,'>:raw',$p) or die "evalgym-sandbox: $p: $!\n"; print $f $data; close $f or die "evalgym-sandbox: $p: $!\n" }
my $o=oom(); my $pid=fork; defined $pid or die "evalgym-sandbox: fork: $!\n";
if (!$pid) { if (!@argv || grep(/\0/,@argv,%env) || grep(/=/,keys %env)) {
  syswrite(STDERR,"evalgym-sandbox: cannot run '@argv[0..$#argv > 0 ? 0 : $#argv]': a NUL byte, '=' in a name or no command\n"); exit 127 }
 %ENV=%env;
 if ($nr) { for ([0,$cpu,$cpu+1],[1,$fsize,$fsize],[4,0,0]) { syscall($nr+0,$$_[0],pack('QQ',$$_[1],$$_[2]))==0
  or do { syswrite(STDERR,"evalgym-sandbox: setrlimit: $!\n"); exit 127 } } exec {$argv[0]} @argv }
 else { exec {'/usr/bin/prlimit'} 'prlimit',"--cpu=$cpu:".($cpu+1),"--fsize=$fsize",'--core=0','--',@argv }
 syswrite(STDERR,"evalgym-sandbox: cannot run '$argv[0]': $!\n"); exit 127 }
waitpid($pid,0); my $st=$?;
killall(); my $clean=(wipe()==0 && alive()==0) ? 1 : 0;
($st & 127) ? status('signal',$st & 127,$o,$clean) : status('exit',$st >> 8,$o,$clean);
"""
_CLEAN = _COMMON + "killall()\nw=wipe()\nprint(alive(),oom(),w)\n"
_SETRLIMIT_NR = {"amd64": 160, "arm64": 164}  # by the image's architecture (an emulated one has its own)
_KILL_SH = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do kill -9 -1 2>/dev/null || exit 0; done"
_STATUS = rb":(exit|signal|dirty):(\d+):(-?\d+):(-?\d+):([01])\n\Z"


def locked_down(memory_mb: int, processes: int, disk_mb: int, extra_pids: int = 2, extra_memory_mb: int = 0) -> dict:
    """The container settings every sandbox container gets (one-shot pool and sessions alike)."""
    memory = f"{memory_mb + extra_memory_mb}m"
    return dict(network_mode="none", read_only=True,
                tmpfs={"/work": f"rw,exec,nosuid,nodev,size={disk_mb}m,uid=65534,gid=65534,mode=0755",
                       "/tmp": f"rw,exec,nosuid,nodev,size={TMP_MB}m,mode=1777"},
                cap_drop=["ALL"], security_opt=["no-new-privileges"], user=USER, working_dir="/work",
                mem_limit=memory, memswap_limit=memory, pids_limit=processes + extra_pids, nano_cpus=10**9,
                ipc_mode="private", shm_size=f"{TMP_MB}m", hostname="sandbox", labels=owner_labels())


def _key(limits: Limits) -> tuple[int, int, int]:  # what a container is created with
    return (int(limits.memory_mb), int(limits.processes), int(limits.disk_mb))


class _Box:  # a pool container: id, the limits it was created with, its cgroup's last oom-kill count
    def __init__(self, cid: str, key: tuple[int, int, int]):
        self.id, self.key, self.oom = cid, key, 0


class DockerSandbox:
    name = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, pool_size: int = 2, base_url: str | None = None,
                 warm: bool = True):
        try:
            import docker
        except ImportError as exc:
            raise SandboxUnavailable(f"the docker SDK is not installed ({exc}): pip install docker") from None
        self._docker = docker
        self.image, self.pool_size = image, max(1, pool_size)
        self.base_url = base_url or os.environ.get("EVALGYM_DOCKER_HOST") or (
            f"unix://{DEFAULT_SOCKET}" if os.path.exists(DEFAULT_SOCKET) else None)  # None: the SDK's default
        where = self.base_url or os.environ.get("DOCKER_HOST") or "the default docker socket"
        try:
            self.client = (docker.DockerClient(base_url=self.base_url, timeout=60) if self.base_url
                           else docker.from_env(timeout=60))
            self.client.ping()
            security = self.client.info().get("SecurityOptions") or []
        except Exception as exc:  # noqa: BLE001
            raise SandboxUnavailable(f"no Docker engine answers at {where} ({type(exc).__name__}: {exc}); "
                                     "start one with scripts/docker-up.sh") from None
        try:
            arch = self.client.images.get(image).attrs.get("Architecture")
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(f"docker image {image!r} is missing on {where}: build it with "
                                     "scripts/build-sandbox-image.sh") from None
        self.api = self.client.api
        self._setrlimit_nr = _SETRLIMIT_NR.get(arch, 0)  # the runner's setrlimit(2); 0: it uses prlimit(1)
        self._unix = self.base_url[7:] if (self.base_url or "").startswith("unix://") else None
        self.isolation = ("container", "netns", "mountns", "pidns", "ipcns", "utsns", "uid", "readonly-root",
                          "no-new-privs", "cap-drop", "rlimits") + (
                          ("seccomp",) if any("seccomp" in s for s in security) else ())
        self._cond = threading.Condition()
        self._idle: list[_Box] = []
        self._ids: set[str] = set()
        self._count = 0  # containers alive or being created
        self._closed = False
        self.last_container_id: str | None = None  # of the latest run (for tests and debugging)
        sweep_stale(self.client)  # containers of dead owners on this host
        start_reaper(self.base_url)
        atexit.register(lambda ref=weakref.ref(self): ref() is not None and ref().close())
        if warm:
            self.warm()

    # -- the pool --------------------------------------------------------------------------------
    def _create(self, key: tuple[int, int, int]) -> _Box:
        c = self.client.containers.run(self.image, ["python3", "-S", "-c", _INIT], detach=True,
                                       **locked_down(*key, extra_pids=2))
        with self._cond:
            self._ids.add(c.id)
        return _Box(c.id, key)

    def _remove(self, cid: str) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.api.remove_container(cid, force=True)
        with self._cond:
            self._ids.discard(cid)

    def warm(self, limits: Limits = Limits()) -> None:
        """Start containers for ``limits`` until the pool is full."""
        while (box := self._acquire(_key(limits), fresh=True)) is not None:
            self._release(box)

    def _acquire(self, key: tuple[int, int, int], fresh: bool = False) -> _Box | None:
        """An idle container with these limits, else a new one (``fresh``: only a new one, None if full)."""
        victim = None
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("this DockerSandbox is closed")
                for i in range(len(self._idle) - 1, -1, -1):  # most recently used first
                    if not fresh and self._idle[i].key == key:
                        return self._idle.pop(i)
                if self._count < self.pool_size:
                    self._count += 1
                    break
                if fresh:
                    return None
                if self._idle:  # its limits differ: replace the oldest idle container
                    victim = self._idle.pop(0)
                    break
                self._cond.wait()
        if victim is not None:
            self._remove(victim.id)
        try:
            return self._create(key)
        except Exception:
            self._discard(None)
            raise

    def _release(self, box: _Box) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(box)
                self._cond.notify()
                return
        self._discard(box)

    def _discard(self, box: _Box | None) -> None:
        if box is not None:
            self._remove(box.id)
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def _exec(self, box: _Box, cmd: list[str]) -> bytes | None:
        try:
            return self.api.exec_start(self.api.exec_create(box.id, cmd, user=USER, workdir="/")["Id"])
        except Exception:  # noqa: BLE001  (pids exhausted, container gone)
            return None

    def _stop(self, box: _Box, cleaned: list) -> None:
        """Kill the run's processes and wipe the container (``cleaned[0]``: whether it is clean now); a
        container that cannot even exec (pids exhausted?) is removed."""
        self._exec(box, ["sh", "-c", _KILL_SH])  # sh: starts even when a fork bomb eats the CPU
        if not (ok := self._cleanup(box)):
            self._remove(box.id)
        cleaned[0] = ok

    def _cleanup(self, box: _Box) -> bool:
        """Kill every process of the run, empty /work and /tmp; whether the container is clean."""
        try:
            alive, oom, left = (int(x) for x in (self._exec(box, ["python3", "-S", "-c", _CLEAN]) or b"").split()[-3:])
        except ValueError:
            return False
        box.oom = max(box.oom, oom)
        return alive == 0 and left == 0

    # -- one run ---------------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        files = {}
        for rel, content in program.files.items():
            p = PurePosixPath(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise ValueError(f"Program.files: {rel!r} escapes the working directory")
            files[str(p)] = content.encode() if isinstance(content, str) else bytes(content)
        nonce = secrets.token_hex(8)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", **dict(program.env)}
        argv = [str(a) for a in program.command]
        cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s) + 1
        fields = [nonce, str(cpu), str(int(limits.disk_mb) << 20), str(self._setrlimit_nr), str(len(argv)), *argv,
                  str(len(env))]
        fields += [x for kv in env.items() for x in kv]
        head = b"".join(len(b).to_bytes(4, "big") + b for b in
                        [x.encode() for x in fields] + [x for kv in files.items() for x in (kv[0].encode(), kv[1])])
        stdin = program.stdin.encode() if isinstance(program.stdin, str) else (program.stdin or b"")
        payload = b"%012d" % len(head) + head + stdin
        for attempt in (0, 1):
            box = self._acquire(_key(limits))
            self.last_container_id = box.id
            try:
                return self._run_in(box, payload, nonce, limits)
            except BaseException as exc:
                self._discard(box)  # never reuse a container a run failed in
                if attempt or not isinstance(exc, self._docker.errors.APIError):
                    raise  # a container that died or was dirty gets one retry on a fresh one
        raise AssertionError("unreachable")

    def _run_in(self, box: _Box, payload: bytes, nonce: str, limits: Limits) -> RunResult:
        cap, oom_before = int(limits.output_bytes), box.oom
        t0 = time.perf_counter()
        eid = self._exec_create(box.id, ["perl", "-e", _RUNNER], stdin=True, user=USER, workdir="/work")
        sock, frames = self._exec_socket(eid)
        bufs, totals, tail = {1: bytearray(), 2: bytearray()}, {1: 0, 2: 0}, bytearray()
        killed, eof, deadline, hard = None, False, t0 + limits.timeout_s, None
        stopper, cleaned_box = None, [None]
        (feeder := threading.Thread(target=_feed, args=(sock, payload), daemon=True)).start()
        try:
            while not eof:
                now = time.perf_counter()
                over = totals[1] > cap or totals[2] > cap + _TAIL  # stderr's tail holds the status line
                if killed is None and (now >= deadline or over):
                    # Stop the program from a thread while this loop keeps draining the stream: a daemon
                    # that cannot deliver a flooding exec's output also stalls the kill exec (the
                    # timeout path used to hang here on a 2 GB flood).
                    killed, hard = ("timeout" if now >= deadline else "output_limit"), now + _KILL_GRACE_S
                    stopper = threading.Thread(target=self._stop, args=(box, cleaned_box), daemon=True)
                    stopper.start()
                if hard is not None and now >= hard:
                    break
                if not select.select([sock], [], [], max(0.0, (hard or deadline) - now))[0]:
                    continue
                try:
                    data = sock.recv(1 << 18)
                except OSError:
                    data = b""
                eof = not data
                frames += data
                while len(frames) >= 8:  # docker's multiplexed frames: stream, 3 zero bytes, size, data
                    size = int.from_bytes(frames[4:8], "big")
                    if len(frames) < 8 + size:
                        break
                    stream, chunk = frames[0], bytes(frames[8:8 + size])
                    del frames[:8 + size]
                    if stream in bufs:
                        totals[stream] += len(chunk)
                        bufs[stream] += chunk[:max(0, cap + _TAIL - len(bufs[stream]))]
                        if stream == 2:
                            tail = (tail + chunk)[-_TAIL:]
        finally:  # unblock the feeder before the fd goes (a reused fd must not get its bytes)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            feeder.join(1.0)
            sock.close()
        cleaned = None
        if stopper is not None:
            stopper.join(_KILL_GRACE_S)
            cleaned = False if stopper.is_alive() else cleaned_box[0]
        timed_out = killed == "timeout"
        duration = time.perf_counter() - t0
        m = re.search(rb"\x00EVALGYM:" + nonce.encode() + _STATUS, bytes(tail))
        status = {}
        for _ in range(200 if eof and killed is None else 0):  # the exit code may land just after the stream ends
            if not (status := self._exec_inspect(eid)).get("Running") and status.get("ExitCode") is not None:
                break
            time.sleep(0.005)
        if status.get("ExitCode") != 0:  # the runner did not finish (killed): a status line is not its own
            m = None
        if m and m.group(1) == b"dirty":  # should never happen: treated like a dead container
            raise self._docker.errors.APIError(f"container {box.id[:12]} had leftovers of an earlier run")
        err_total = totals[2] - (len(m.group(0)) if m else 0)
        if m:
            code = int(m.group(2)) * (-1 if m.group(1) == b"signal" else 1)
        else:  # no status line: the runner itself was killed (OOM killer, its program); the exec's status
            code = status.get("ExitCode")
            code = -(code - 128) if code is not None and code > 128 else code
        code = None if killed else code
        if m and not killed:  # the runner killed everything and wiped /work and /tmp itself
            oom, box.oom = int(m.group(4)) > int(m.group(3)), int(m.group(4))
            cleaned = m.group(5) == b"1" or self._cleanup(box)
        else:
            cleaned = self._cleanup(box) if cleaned is None else cleaned
            oom = box.oom > oom_before
        self._release(box) if cleaned else self._discard(box)
        return RunResult(exit_code=code, timed_out=timed_out, oom=oom,
                         stdout=bytes(bufs[1][:cap]).decode("utf-8", "replace"),
                         stderr=bytes(bufs[2][:min(cap, err_total)]).decode("utf-8", "replace"),
                         truncated=totals[1] > cap or err_total > cap, duration_s=duration, backend=self.name,
                         isolation=self.isolation, killed=killed)

    def _http(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call by hand on the unix socket (the SDK's requests stack costs ~3 ms a call)."""
        conn = _UnixHTTPConnection(self._unix)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, data, {"Content-Type": "application/json"} if data is not None else {})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._docker.errors.APIError(f"{method} {path}: {exc}") from None
        finally:
            conn.close()
        if resp.status >= 300:
            raise self._docker.errors.APIError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw or b"{}")

    def _exec_create(self, cid: str, cmd: list[str], stdin: bool, user: str, workdir: str) -> str:
        if self._unix is None:
            return self.api.exec_create(cid, cmd, stdin=stdin, user=user, workdir=workdir)["Id"]
        return self._http("POST", f"/containers/{cid}/exec", {
            "User": user, "Privileged": False, "Tty": False, "AttachStdin": stdin, "AttachStdout": True,
            "AttachStderr": True, "Cmd": cmd, "Env": None, "WorkingDir": workdir})["Id"]

    def _exec_inspect(self, eid: str) -> dict:
        return self.api.exec_inspect(eid) if self._unix is None else self._http("GET", f"/exec/{eid}/json")

    def _exec_socket(self, eid: str) -> tuple[socket.socket, bytearray]:
        """``exec start``'s hijacked stream and bytes read past the HTTP head (by hand on a unix socket)."""
        if self._unix is None:  # tcp/ssh daemons: the SDK's socket
            sock = self.api.exec_start(eid, socket=True)
            return getattr(sock, "_sock", sock), bytearray()
        return self.hijack(f"/exec/{eid}/start", b'{"Detach":false,"Tty":false}')

    def hijack(self, path: str, body: bytes = b"") -> tuple[socket.socket, bytearray]:
        """POST ``path`` on the unix socket and take over the connection (exec start, attach)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(60)  # for the handshake; blocking afterwards (reads only after select)
            s.connect(self._unix)
            s.sendall(b"POST %s HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                      b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s"
                      % (path.encode(), len(body), body))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise self._docker.errors.APIError(f"{path}: connection closed")
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            if head.split(b" ", 2)[1] not in (b"101", b"200"):
                raise self._docker.errors.APIError(f"{path}: {head.decode(errors='replace')} {rest[:300]!r}")
            s.settimeout(None)
            return s, bytearray(rest)
        except BaseException:
            s.close()
            raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            ids, self._idle = list(self._ids), []
            self._cond.notify_all()
        for cid in ids:
            self._remove(cid)


def _feed(sock: socket.socket, payload: bytes) -> None:
    """Write the runner's header and the program's stdin, then end the program's stdin."""
    with contextlib.suppress(OSError):  # the run may end before reading it all
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("docker", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)
