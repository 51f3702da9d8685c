"""The local sandbox: a subprocess under an unprivileged uid with rlimits, inside bubblewrap namespaces
when they are available.

    box = LocalSandbox()               # refuses to run without namespaces unless isolation="weak"
    box.run(Program({"main.py": "print(1)"}, ["python3", "main.py"]), Limits(timeout_s=5))

Each run gets:
- its own uid (``uid_base`` + slot, never root; each slot is a host-wide flock, so two processes never
  share one), so RLIMIT_NPROC counts only its own processes and "kill everything of this uid" ends every
  process it started, daemons included;
- rlimits: address space (memory), CPU seconds, processes, file size, core dumps off;
- its own session and process group, a scrubbed environment (PATH, HOME, LANG + Program.env);
- a private working directory: a size-capped tmpfs at ``/work`` holding a copy of its files;
- with bubblewrap: new user, network (no interfaces up), mount, pid, ipc and uts namespaces, no nested
  user namespaces, the host filesystem hidden except ``/usr`` (read-only), a read-only root, a fresh
  ``/proc``, a minimal ``/dev``, size-capped ``/tmp`` and ``/dev/shm``, ``--die-with-parent``; when the
  run ends the kernel tears its pid namespace down.
- output capped per stream: a program that goes over ``Limits.output_bytes`` is stopped there
  (``RunResult.killed == "output_limit"``), not drained to its end.

Without namespaces (no bubblewrap, or no unprivileged user namespaces) the sandbox refuses to start
(``SandboxUnavailable``) unless ``isolation="weak"`` is asked for explicitly: then the same uid, rlimits
and session, but the host filesystem is visible (as that uid) and the network is reachable; every
result's ``isolation`` lists what was in force.

Runs are started by a tiny launcher process (``launcher.py``), so the caller is never forked.

Not protected against: kernel exploits; CPU-cache side channels; a host that runs something sensitive
as the sandbox uids (60000+). Memory is capped as address space (no cgroup v2 assumed); memfd_create,
whose pages escape that cap, is denied by a seccomp filter, as are foreign syscall ABIs.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from evalgym.sandbox.base import Limits, Program, RunResult, SandboxUnavailable, check_isolation
from evalgym.sandbox.launcher import Launcher

UID_BASE = 60000
SLOTS = 256
LOCK_DIR = "/run/evalgym-sandbox"  # one flock per uid: slots are unique across every process on the host
_KILL_GRACE_S = 2.0


# A classic-BPF seccomp filter for bubblewrap's --seccomp: memfd_create fails with EPERM (memfd pages are
# not address space, so RLIMIT_AS cannot cap them), and foreign syscall ABIs (x32, i386) kill the process.
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 319), "aarch64": (0xC00000B7, 279)}  # audit arch, memfd_create nr


def seccomp_filter() -> bytes | None:
    import platform
    import struct

    arch = _SECCOMP_ARCH.get(platform.machine())
    if arch is None:
        return None
    audit_arch, memfd_nr = arch
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | 1
    prog = [
        (ld, 0, 0, 4),                   # A = seccomp_data.arch
        (jeq, 1, 0, audit_arch),         # native ABI? skip the kill
        (ret, 0, 0, kill),
        (ld, 0, 0, 0),                   # A = seccomp_data.nr
        (jset, 0, 1, 0x40000000),        # x32 syscall numbers
        (ret, 0, 0, kill),
        (jeq, 0, 1, memfd_nr),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in prog)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _namespaces_work(bwrap: str, uid: int) -> bool:
    """bubblewrap needs unprivileged user namespaces (as the sandbox uid); check once."""
    try:
        r = subprocess.run([bwrap, "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true"],
                           user=uid, group=uid, extra_groups=[], capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class _Reader(threading.Thread):
    """Drain a pipe, keeping the first ``cap`` bytes; past the cap, ``on_overflow`` is called once (it stops
    the program) and the rest is drained, so a flooding program never blocks on a full pipe."""

    def __init__(self, stream, cap: int, on_overflow=None):
        super().__init__(daemon=True)
        self.stream, self.cap, self.on_overflow = stream, cap, on_overflow
        self.buf = bytearray()
        self.truncated = False

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                return
            room = self.cap - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]
            if len(chunk) > max(room, 0) and not self.truncated:
                self.truncated = True
                if self.on_overflow is not None:
                    self.on_overflow()


class LocalSandbox:
    name = "local"

    def __init__(self, strict: bool | None = None, uid_base: int = UID_BASE, slots: int = SLOTS,
                 python: str = "/usr/bin/python3", *, isolation: str | None = None):
        # strict=True is isolation="full", strict=False is "weak" (the old spelling); the default is "full"
        isolation = check_isolation(isolation or ("weak" if strict is False else "full"))
        if os.geteuid() != 0:
            # Not root: we cannot switch uids; run as ourselves (rlimits + namespaces still apply).
            self._uids = [os.geteuid()]
        else:
            self._uids = list(range(uid_base, uid_base + slots))
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        self._launcher: Launcher | None = None
        self._launcher_failed = False
        self.python = python
        missing = [tool for tool in ("/usr/bin/prlimit", "/usr/bin/setpriv") if not os.path.exists(tool)]
        if missing:
            raise SandboxUnavailable(f"local sandbox needs util-linux's {', '.join(missing)}")
        self.bwrap = bwrap_path()
        self.namespaces = bool(self.bwrap) and _namespaces_work(self.bwrap, self._uids[0])
        self._seccomp = seccomp_filter() if self.namespaces else None
        if isolation == "full" and not self.namespaces:
            why = "bubblewrap is not installed" if not self.bwrap else "user namespaces are not available"
            raise SandboxUnavailable(
                f"the local sandbox promises namespaces (no network, no host files) and cannot make them here: "
                f"{why} (apt-get install bubblewrap). To run model-written code with uid + rlimits only, ask for "
                "it explicitly: isolation: weak (EVALGYM_SANDBOX_ISOLATION=weak, or --isolation weak)")
        self.isolation_level = isolation
        self.strict = isolation == "full"

    # -- uid slots (uid_base .. uid_base + slots) ------------------------------------------
    def _acquire(self) -> int:
        """A uid no other run on this host is using: a non-blocking flock on its lock file."""
        if os.geteuid() != 0:
            return self._uids[0]
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        start = random.randrange(len(self._uids))
        while True:
            for k in range(len(self._uids)):
                uid = self._uids[(start + k) % len(self._uids)]
                with self._lock:
                    if uid in self._held:
                        continue
                    fd = os.open(f"{LOCK_DIR}/uid-{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    self._held[uid] = fd
                    return uid
            time.sleep(0.01)

    def _release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock

    @property
    def isolation(self) -> tuple[str, ...]:
        base = ("rlimits",) + (("uid",) if self._uids[0] != 0 and os.geteuid() == 0 else ())
        if self.namespaces:
            return base + ("userns", "netns", "mountns", "pidns", "ipcns", "utsns") + (
                ("seccomp",) if self._seccomp is not None else ())
        return base

    # -- one run -----------------------------------------------------------------------------------
    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        files = _checked_files(program)  # before taking a uid: a bad path is the caller's error
        uid = self._acquire()
        fds: list[int] = []
        try:
            argv, work = self._argv(program, files, limits, uid, fds)
            return self._spawn(program, limits, uid, argv, work, fds)
        finally:
            for fd in fds:
                os.close(fd)
            if not self.namespaces:  # with namespaces the kernel ends the pid namespace, daemons included
                self._kill_uid(uid)
            self._release(uid)

    def _argv(self, program: Program, files: list[tuple[str, bytes]], limits: Limits, uid: int,
              fds: list[int]) -> tuple[list[str], Path | None]:
        """The command line, and (without namespaces) the private working directory it runs in."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", **dict(program.env)}
        command = [self.python if c == "python3" else c for c in program.command]
        if not self.namespaces:
            work = Path(tempfile.mkdtemp(prefix="evalgym-work-"))
            for rel, data in files:
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                (work / rel).write_bytes(data)
            if os.geteuid() == 0:
                for p in [work, *work.rglob("*")]:
                    os.chown(p, uid, uid)
            env["HOME"] = str(work)
            return ["/usr/bin/env", "-i", *[f"{k}={v}" for k, v in env.items()], *command], work
        argv = self.bwrap_args(limits.disk_mb)
        made: set[str] = set()
        for rel, data in files:  # bwrap copies each file into the tmpfs from an in-memory fd: no temp dir
            parts = rel.split("/")
            for k in range(1, len(parts)):
                d = "/work/" + "/".join(parts[:k])
                if d not in made:
                    made.add(d)
                    argv += ["--dir", d]
            fd = os.memfd_create("evalgym-file")
            fds.append(fd)
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            argv += ["--file", str(fd), "/work/" + rel]
        return self.bwrap_finish(argv, env, command, fds), None

    def bwrap_args(self, disk_mb: int) -> list[str]:
        """bubblewrap's namespaces and mounts up to an empty size-capped ``/work`` (runs and sessions)."""
        return [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                "--symlink", "usr/lib64", "/lib64", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
                "--proc", "/proc", "--dev-bind", "/dev/null", "/dev/null", "--dev-bind", "/dev/zero", "/dev/zero",
                "--dev-bind", "/dev/urandom", "/dev/urandom",
                "--symlink", "urandom", "/dev/random", "--symlink", "/proc/self/fd", "/dev/fd",
                "--size", str(16 << 20), "--tmpfs", "/dev/shm",
                "--size", str(16 << 20), "--tmpfs", "/tmp",
                "--size", str(disk_mb << 20), "--tmpfs", "/work"]

    def bwrap_finish(self, argv: list[str], env: dict[str, str], command: list[str], fds: list[int]) -> list[str]:
        """The rest of a bubblewrap command line: read-only root, seccomp, environment, the command."""
        argv = argv + ["--remount-ro", "/", "--chdir", "/work", "--clearenv"]  # only /work, /tmp, /dev/shm stay writable
        if self._seccomp is not None:
            fd = os.memfd_create("evalgym-seccomp")  # ours, before the filter applies
            fds.append(fd)
            os.write(fd, self._seccomp)
            os.lseek(fd, 0, os.SEEK_SET)
            argv += ["--seccomp", str(fd)]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        return argv + ["--", *command]

    def _spawn(self, program: Program, limits: Limits, uid: int, argv: list[str], work: Path | None,
               fds: list[int]) -> RunResult:
        cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s) + 1
        nproc = limits.processes + 8  # bwrap's own helpers count too
        t0 = time.perf_counter()
        proc = self._start(argv, uid, limits, cpu, nproc, str(work) if work else "/", fds)
        killed: list[str] = []
        stop_lock = threading.Lock()

        def stop(reason: str) -> None:
            with stop_lock:
                if killed:
                    return
                killed.append(reason)
            self._kill_group(proc)
            self._kill_uid(uid)

        readers = [_Reader(proc.stdout, limits.output_bytes, lambda: stop("output_limit")),
                   _Reader(proc.stderr, limits.output_bytes, lambda: stop("output_limit"))]
        for r in readers:
            r.start()
        feeder = threading.Thread(target=self._feed, args=(proc, program.stdin), daemon=True)
        feeder.start()
        timer = threading.Timer(limits.timeout_s, stop, args=("timeout",))
        timer.start()
        proc.wait()  # blocking wait: Popen.wait(timeout=...) polls with sleeps, adding ~30 ms a run
        timer.cancel()
        duration = time.perf_counter() - t0
        timed_out = killed == ["timeout"]
        for r in readers:
            r.join(timeout=_KILL_GRACE_S)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            try:
                stream.close()
            except OSError:
                pass
        stdout = bytes(readers[0].buf).decode("utf-8", "replace")
        stderr = bytes(readers[1].buf).decode("utf-8", "replace")
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        code = None if killed else proc.returncode
        if code is not None and self.namespaces and 128 < code <= 128 + 64:
            code = -(code - 128)  # bwrap's pid 1 reports a signal death as 128 + signal
        oom = "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr
        return RunResult(exit_code=code, timed_out=timed_out, oom=oom, stdout=stdout, stderr=stderr,
                         truncated=readers[0].truncated or readers[1].truncated, duration_s=duration,
                         backend=self.name, isolation=self.isolation, killed=killed[0] if killed else None)

    def _start(self, argv: list[str], uid: int, limits: Limits, cpu: int, nproc: int, cwd: str,
               fds: list[int]) -> Any:
        """Start the run through the launcher (a fork of a tiny process), else through setpriv + prlimit
        (two extra execs); never Popen(user=..., preexec_fn=...), which forks this whole process."""
        as_root = os.geteuid() == 0
        launcher = self._get_launcher()
        if launcher is not None:
            rlimits = [("RLIMIT_AS", limits.memory_mb << 20), ("RLIMIT_CPU", cpu), ("RLIMIT_NPROC", nproc),
                       ("RLIMIT_FSIZE", limits.disk_mb << 20), ("RLIMIT_NOFILE", 256), ("RLIMIT_CORE", 0)]
            try:
                return launcher.spawn(argv, uid=uid if as_root else None, rlimits=rlimits, cwd=cwd, pass_fds=fds)
            except OSError:
                pass  # the launcher died: fall through to the exec chain
        prefix = ["/usr/bin/prlimit", f"--as={limits.memory_mb << 20}", f"--cpu={cpu}", f"--nproc={nproc}",
                  f"--fsize={limits.disk_mb << 20}", "--nofile=256", "--core=0", "--"]
        if as_root:
            prefix = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *prefix]
        try:
            return subprocess.Popen(prefix + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=cwd, start_new_session=True, close_fds=True,
                                    pass_fds=fds, env={})
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the sandboxed process: {exc}") from None

    def _get_launcher(self) -> Launcher | None:
        with self._lock:
            if self._launcher is not None and (self._launcher.pid != os.getpid() or not self._launcher.alive):
                self._launcher = None  # inherited through fork, or dead: start our own
            if self._launcher is None and not self._launcher_failed:
                try:
                    self._launcher = Launcher(self.python if os.path.exists(self.python) else sys.executable)
                except OSError:
                    self._launcher_failed = True
            return self._launcher

    @staticmethod
    def _feed(proc: subprocess.Popen, data: str | bytes | None) -> None:
        try:
            if data:
                proc.stdin.write(data.encode() if isinstance(data, str) else data)
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    @staticmethod
    def _kill_group(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_uid(self, uid: int) -> None:
        """SIGKILL every process of ``uid`` (kill(-1) from a child running as that uid)."""
        if os.geteuid() != 0 or uid == 0:
            return
        for _ in range(3):  # a fork bomb may be mid-fork: repeat until nothing is left
            pid = os.fork()
            if pid == 0:  # child: become the uid and kill all its processes, then exit
                try:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                    os.kill(-1, signal.SIGKILL)
                except BaseException:  # noqa: BLE001
                    pass
                os._exit(0)
            os.waitpid(pid, 0)
            if not _has_processes(uid):
                return

    def close(self) -> None:
        with self._lock:
            if self._launcher is not None and self._launcher.pid == os.getpid():
                self._launcher.close()
            self._launcher = None


def _checked_files(program: Program) -> list[tuple[str, bytes]]:
    """Program.files as (relative posix path, bytes); a path that is absolute or climbs out is refused."""
    out = []
    for rel, content in program.files.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".") for p in parts) or "\x00" in rel:
            raise ValueError(f"Program.files: {rel!r} escapes the working directory")
        out.append(("/".join(parts), content.encode() if isinstance(content, str) else bytes(content)))
    return out


def _has_processes(uid: int) -> bool:
    """Whether a live (non-zombie) process of ``uid`` exists."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state not in (b"Z", b"X"):
                    return True
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return False
