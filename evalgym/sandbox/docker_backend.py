"""The docker sandbox: programs run by ``docker exec`` in a warm pool of locked-down containers.

    box = DockerSandbox()    # needs scripts/docker-up.sh and scripts/build-sandbox-image.sh
    box.run(Program({"main.py": "print(1)"}, ["python3", "main.py"]), Limits(timeout_s=5))

Each container: no network (``network_mode=none``: only a loopback), a read-only root, a size-capped
tmpfs ``/work`` (``Limits.disk_mb``) and a small ``/tmp``, all capabilities dropped, ``no-new-privileges``,
uid/gid 65534, its own pid/ipc/uts/mount namespaces, a memory cgroup without swap (``Limits.memory_mb``), a
pids cgroup (``Limits.processes``), one CPU, the daemon's default seccomp profile. Its pid 1 is a tiny
python loop that reaps orphans; as the pid namespace's init it survives ``kill -9 -1``.

One run: an ``exec`` (as 65534, in ``/work``) of a small runner that reads the files and the command from
the head of its stdin (``marshal``: builtin, unlike json), writes the files, sets rlimits (CPU seconds, file size, no core dumps), runs the
command with exactly PATH/HOME=/work/LANG + ``Program.env`` and the rest of stdin, waits for it, SIGKILLs
every other process of the container (daemons included), then appends a nonce-tagged status line (exit
status, oom-kill count delta from the cgroup) to stderr, which the host strips. On timeout the host kills
everything from a second exec. Afterwards a cleanup exec kills again, empties ``/work`` and ``/tmp`` and
checks nothing is left; only then does the container go back to the pool (else it is replaced).

Protects against: network access, writes outside ``/work``/``/tmp``, reading host files or the host's
environment, fork/memory/disk/output bombs, CPU loops, processes outliving the run, files or processes
leaking into the next run in the same container, containers outliving the caller (``atexit``, a stale
sweep at start-up, and a detached reaper process that removes them once the caller dies, even by SIGKILL).
Does not protect against: kernel or container-runtime exploits, side channels, anything with access to
the Docker socket; a program that ptraces its runner (same uid) could misreport its own result.
"""

from __future__ import annotations

import atexit
import marshal
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import PurePosixPath

from evalgym.sandbox.base import Limits, Program, RunResult, SandboxUnavailable

DEFAULT_IMAGE = "evalgym-sandbox:1"
DEFAULT_SOCKET = "/run/evalgym-docker.sock"
USER = "65534:65534"
LABEL = "evalgym.sandbox"
TMP_MB = 16
_TAIL = 512  # bytes of stderr kept to find the runner's status line
_KILL_GRACE_S = 3.0

_INIT = ("import os,signal\nsignal.pthread_sigmask(signal.SIG_BLOCK,{signal.SIGCHLD})\nwhile True:\n"
         " try:\n  while os.waitpid(-1,os.WNOHANG)[0]: pass\n except ChildProcessError: pass\n"
         " signal.sigtimedwait({signal.SIGCHLD},60)\n")
# Shared by the runner and the cleanup: the cgroup's oom-kill count, live processes other than pid 1 and
# ourselves, and emptying /work and /tmp (a program may chmod its own directories: undo that first).
_COMMON = """import os,time
me=os.getpid()
def oom():
 for p in ('/sys/fs/cgroup/memory.events','/sys/fs/cgroup/memory/memory.oom_control'):
  try:
   for l in open(p):
    if l.startswith('oom_kill '): return int(l.split()[1])
  except OSError: pass
 return -1
def alive():
 n=0
 for e in os.listdir('/proc'):
  if e.isdigit() and int(e) not in (1,me):
   try: n+=open('/proc/%s/stat'%e,'rb').read().rsplit(b')',1)[1].split()[0] not in (b'Z',b'X')
   except (OSError,IndexError): pass
 return n
def killall():
 for i in range(400):
  try: os.kill(-1,9)
  except ProcessLookupError: pass
  if not alive(): return
  time.sleep(0.003)
def rm(p):
 if os.path.isdir(p) and not os.path.islink(p):
  os.chmod(p,0o700)
  for e in os.listdir(p): rm(os.path.join(p,e))
  os.rmdir(p)
 else: os.unlink(p)
def left():
 return len(os.listdir('/work'))+len(os.listdir('/tmp'))
def wipe():
 try: os.chmod('/work',0o755)
 except OSError: pass
 for d in ('/work','/tmp'):
  for e in os.listdir(d):
   try: rm(os.path.join(d,e))
   except Exception: pass
 return left()
"""
# One run: refuse a dirty container, read the header, write the files, run the command under rlimits,
# then kill everything else, wipe, and report (status line on stderr, after every other writer is dead).
_RUNNER = _COMMON + """import marshal,resource
def rd(n):
 b=b''
 while len(b)<n:
  c=os.read(0,n-len(b))
  if not c: os._exit(97)
  b+=c
 return b
h=marshal.loads(rd(int(rd(12))))
def status(k,n,o,c): os.write(2,('\\0EVALGYM:%s:%s:%d:%d:%d:%d\\n'%(h['nonce'],k,n,o,oom(),c)).encode())
if alive() or left():
 status('dirty',0,0,0); os._exit(0)
for rel,data in h['files'].items():
 p=os.path.join('/work',rel); os.makedirs(os.path.dirname(p),exist_ok=True)
 with open(p,'wb') as f: f.write(data)
o=oom(); pid=os.fork()
if pid==0:
 try:
  for r,v in ((resource.RLIMIT_CPU,h['cpu']),(resource.RLIMIT_FSIZE,h['fsize']),(resource.RLIMIT_CORE,0)):
   resource.setrlimit(r,(v,v+1 if r==resource.RLIMIT_CPU else v))
  os.execvpe(h['argv'][0],h['argv'],h['env'])
 except BaseException as e: os.write(2,('evalgym-sandbox: cannot run %r: %s\\n'%(h['argv'][0],e)).encode())
 os._exit(127)
st=os.waitpid(pid,0)[1]
killall()
clean=int(wipe()==0 and alive()==0)
k,n=('signal',os.WTERMSIG(st)) if os.WIFSIGNALED(st) else ('exit',os.WEXITSTATUS(st))
status(k,n,o,clean)
"""
_CLEAN = _COMMON + "killall()\nw=wipe()\nprint(alive(),oom(),w)\n"

_KILL_SH = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do kill -9 -1 2>/dev/null || exit 0; done"

_REAPERS: dict[tuple[int, str], subprocess.Popen] = {}
_REAPER_LOCK = threading.Lock()


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _resolve_base_url(base_url: str | None) -> str | None:
    if base_url:
        return base_url
    if os.environ.get("EVALGYM_DOCKER_HOST"):
        return os.environ["EVALGYM_DOCKER_HOST"]
    if os.path.exists(DEFAULT_SOCKET):
        return f"unix://{DEFAULT_SOCKET}"
    return None  # the SDK's default: $DOCKER_HOST or /var/run/docker.sock


class _Dirty(Exception):
    """The runner found processes or files left in its container before starting."""


class _Box:
    __slots__ = ("id", "key", "oom")

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
        self.base_url = _resolve_base_url(base_url)
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
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(f"docker image {image!r} is missing on {where}: build it with "
                                     "scripts/build-sandbox-image.sh") from None
        self.api = self.client.api
        self._unix = self.base_url[len("unix://"):] if (self.base_url or "").startswith("unix://") else None
        self.isolation = ("container", "netns", "mountns", "pidns", "ipcns", "utsns", "uid", "readonly-root",
                          "no-new-privs", "cap-drop", "rlimits")
        if any("seccomp" in s for s in security):
            self.isolation += ("seccomp",)
        self._cond = threading.Condition()
        self._idle: list[_Box] = []
        self._ids: set[str] = set()
        self._count = 0  # containers alive or being created
        self._closed = False
        self.last_container_id: str | None = None
        self._host = socket.gethostname()
        self._remove_stale()
        self._start_reaper()
        atexit.register(_close_at_exit, weakref.ref(self))
        if warm:
            self.warm()

    # -- containers ------------------------------------------------------------------------------
    @staticmethod
    def _key(limits: Limits) -> tuple[int, int, int]:
        return (int(limits.memory_mb), int(limits.processes), int(limits.disk_mb))

    def _create(self, key: tuple[int, int, int]) -> _Box:
        memory_mb, processes, disk_mb = key
        pid = os.getpid()
        c = self.client.containers.run(
            self.image, ["python3", "-S", "-c", _INIT], detach=True, network_mode="none", read_only=True,
            tmpfs={"/work": f"rw,exec,nosuid,nodev,size={disk_mb}m,uid=65534,gid=65534,mode=0755",
                   "/tmp": f"rw,exec,nosuid,nodev,size={TMP_MB}m,mode=1777"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], user=USER, working_dir="/work",
            mem_limit=f"{memory_mb}m", memswap_limit=f"{memory_mb}m", pids_limit=processes + 2, nano_cpus=10**9,
            ipc_mode="private", hostname="sandbox",
            labels={LABEL: "1", "evalgym.owner_pid": str(pid), "evalgym.owner_start": _start_time(pid) or "",
                    "evalgym.owner_host": self._host})
        with self._cond:
            self._ids.add(c.id)
        return _Box(c.id, key)

    def _remove(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        with self._cond:
            self._ids.discard(cid)

    def warm(self, limits: Limits = Limits()) -> None:
        """Start containers for ``limits`` until the pool is full."""
        boxes = []
        while True:
            with self._cond:
                if self._closed or self._count >= self.pool_size:
                    break
                self._count += 1
            try:
                boxes.append(self._create(self._key(limits)))
            except Exception:
                self._lost()
                raise
        for b in boxes:
            self._release(b)

    def _acquire(self, key: tuple[int, int, int]) -> _Box:
        victim = None
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("this DockerSandbox is closed")
                for i in range(len(self._idle) - 1, -1, -1):  # most recently used first
                    if self._idle[i].key == key:
                        return self._idle.pop(i)
                if self._count < self.pool_size:
                    self._count += 1
                    break
                if self._idle:  # limits differ: replace the oldest idle container
                    victim = self._idle.pop(0)
                    break
                self._cond.wait()
        if victim is not None:
            self._remove(victim.id)
        try:
            return self._create(key)
        except Exception:
            self._lost()
            raise

    def _release(self, box: _Box) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(box)
                self._cond.notify()
                return
        self._discard(box)

    def _lost(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def _discard(self, box: _Box) -> None:
        self._remove(box.id)
        self._lost()

    def _cleanup(self, box: _Box) -> bool:
        """Kill every process of the run, empty /work and /tmp; whether the container is clean."""
        try:
            eid = self.api.exec_create(box.id, ["python3", "-S", "-c", _CLEAN], user=USER, workdir="/")["Id"]
            out = self.api.exec_start(eid).decode(errors="replace").split()
            alive, oom, left = (int(x) for x in out[-3:])
        except Exception:  # noqa: BLE001  (pids exhausted, container gone, rmtree failed)
            return False
        box.oom = max(box.oom, oom)
        return alive == 0 and left == 0

    def _kill(self, box: _Box) -> None:
        """SIGKILL every process of the run from a shell: it needs far less CPU than python3 when the
        container's CPU share is eaten by a fork bomb."""
        try:
            eid = self.api.exec_create(box.id, ["sh", "-c", _KILL_SH], user=USER, workdir="/")["Id"]
            self.api.exec_start(eid)
        except Exception:  # noqa: BLE001  (the python cleanup that follows decides the container's fate)
            pass

    # -- one run ---------------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        files = {}
        for rel, content in program.files.items():
            p = PurePosixPath(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise ValueError(f"Program.files: {rel!r} escapes the working directory")
            files[str(p)] = content.encode() if isinstance(content, str) else bytes(content)
        nonce = secrets.token_hex(8)
        cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s) + 1
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", **dict(program.env)}
        head = marshal.dumps({"files": files, "argv": [str(a) for a in program.command], "env": env, "cpu": cpu,
                              "fsize": int(limits.disk_mb) << 20, "nonce": nonce}, 2)  # plain types: any 3.x reads it
        stdin = program.stdin.encode() if isinstance(program.stdin, str) else (program.stdin or b"")
        payload = b"%012d" % len(head) + head + stdin
        for attempt in (0, 1):
            box = self._acquire(self._key(limits))
            self.last_container_id = box.id
            try:
                return self._run_in(box, payload, nonce, limits)
            except (self._docker.errors.APIError, _Dirty):  # container died or was dirty: retry on a fresh one
                self._discard(box)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _run_in(self, box: _Box, payload: bytes, nonce: str, limits: Limits) -> RunResult:
        cap, oom_before = int(limits.output_bytes), box.oom
        t0 = time.perf_counter()
        eid = self.api.exec_create(box.id, ["python3", "-S", "-c", _RUNNER], stdin=True, user=USER,
                                   workdir="/work")["Id"]
        sock, frames = self._exec_socket(eid)
        bufs, totals, tail = {1: bytearray(), 2: bytearray()}, {1: 0, 2: 0}, bytearray()
        pending, timed_out, cleaned, eof = memoryview(payload), False, None, False
        deadline, hard = t0 + limits.timeout_s, None
        try:
            sock.setblocking(False)
            while not eof:
                now = time.perf_counter()
                if not timed_out and now >= deadline:
                    timed_out, hard = True, now + _KILL_GRACE_S
                    self._kill(box)
                    cleaned = self._cleanup(box)
                    if not cleaned:  # cannot even exec a killer (pids exhausted): drop the container
                        self._remove(box.id)
                if hard is not None and now >= hard:
                    cleaned = False
                    break
                r, w, _ = select.select([sock], [sock] if pending is not None else [], [],
                                        max(0.0, (hard or deadline) - now))
                if w:
                    try:
                        pending = pending[sock.send(pending[:1 << 16]):]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        pending = pending[:0]
                    if not len(pending):
                        pending = None
                        try:
                            sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                if r:
                    try:
                        data = sock.recv(1 << 18)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    eof = not data
                    frames += data
                    while len(frames) >= 8:
                        size = int.from_bytes(frames[4:8], "big")
                        if len(frames) < 8 + size:
                            break
                        stream, chunk = frames[0], bytes(frames[8:8 + size])
                        del frames[:8 + size]
                        if stream in bufs:
                            totals[stream] += len(chunk)
                            room = cap + _TAIL - len(bufs[stream])
                            if room > 0:
                                bufs[stream] += chunk[:room]
                            if stream == 2:
                                tail = (tail + chunk)[-_TAIL:]
        finally:
            sock.close()
        duration = time.perf_counter() - t0
        m = re.search(rb"\x00EVALGYM:" + nonce.encode() + rb":(exit|signal|dirty):(\d+):(-?\d+):(-?\d+):([01])\n\Z",
                      bytes(tail))
        status = {} if timed_out or not eof else self._exec_status(eid)
        if status.get("ExitCode") != 0:  # the runner did not finish (killed): a status line is not its own
            m = None
        if m and m.group(1) == b"dirty":  # should never happen: drop the container, the caller retries
            raise _Dirty()
        err_total = totals[2] - (len(m.group(0)) if m else 0)
        if timed_out:
            code = None
        elif m:
            code = int(m.group(2)) * (-1 if m.group(1) == b"signal" else 1)
        else:  # the runner itself was killed (e.g. by the OOM killer): the exec's own status
            code = status.get("ExitCode")
            code = -(code - 128) if code is not None and code > 128 else code
        if m and not timed_out:  # the runner killed everything and wiped /work and /tmp itself
            oom, box.oom = int(m.group(4)) > int(m.group(3)), int(m.group(4))
            cleaned = m.group(5) == b"1" or self._cleanup(box)
        else:  # killed runner or timeout: kill and wipe from a fresh exec
            if cleaned is None:
                cleaned = self._cleanup(box)
            oom = box.oom > oom_before
        self._release(box) if cleaned else self._discard(box)
        return RunResult(exit_code=code, timed_out=timed_out, oom=oom,
                         stdout=bytes(bufs[1][:cap]).decode("utf-8", "replace"),
                         stderr=bytes(bufs[2][:min(cap, err_total)]).decode("utf-8", "replace"),
                         truncated=totals[1] > cap or err_total > cap, duration_s=duration, backend=self.name,
                         isolation=self.isolation)

    def _exec_status(self, eid: str) -> dict:
        for _ in range(200):  # the exit code may land a moment after the stream ends
            status = self.api.exec_inspect(eid)
            if not status.get("Running") and status.get("ExitCode") is not None:
                break
            time.sleep(0.005)
        return status

    def _exec_socket(self, eid: str) -> tuple[socket.socket, bytearray]:
        """The hijacked stream of ``exec start`` and any bytes already read past the HTTP head."""
        if self._unix is None:  # tcp/ssh daemons: the SDK's socket
            sock = self.api.exec_start(eid, socket=True)
            return getattr(sock, "_sock", sock), bytearray()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self._unix)
        body = b'{"Detach":false,"Tty":false}'
        s.sendall(b"POST /exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s" % (eid.encode(), len(body), body))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                s.close()
                raise self._docker.errors.APIError(f"exec start {eid}: connection closed")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        if head.split(b" ", 2)[1] not in (b"101", b"200"):
            s.close()
            raise self._docker.errors.APIError(f"exec start {eid}: {head.decode(errors='replace')} {rest[:300]!r}")
        return s, bytearray(rest)

    # -- leaks -----------------------------------------------------------------------------------
    def _remove_stale(self) -> None:
        """Remove sandbox containers of this host whose owner process is gone."""
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL}=1"})
        except Exception:  # noqa: BLE001
            return
        for c in found:
            labels = c.labels or {}
            pid = labels.get("evalgym.owner_pid", "")
            if labels.get("evalgym.owner_host", self._host) != self._host or not pid.isdigit():
                continue
            started = _start_time(int(pid))
            if started is None or started != labels.get("evalgym.owner_start", started):
                self._remove(c.id)

    def _start_reaper(self) -> None:
        key = (os.getpid(), self.base_url or "")
        with _REAPER_LOCK:
            proc = _REAPERS.get(key)
            if proc is not None and proc.poll() is None:
                return
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docker_reaper.py")
            _REAPERS[key] = subprocess.Popen([sys.executable, script, str(os.getpid()), self.base_url or ""],
                                             start_new_session=True, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            ids, self._idle = list(self._ids), []
            self._cond.notify_all()
        for cid in ids:
            self._remove(cid)

    def __enter__(self) -> "DockerSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close_at_exit(ref: "weakref.ReferenceType[DockerSandbox]") -> None:
    box = ref()
    if box is not None:
        box.close()
