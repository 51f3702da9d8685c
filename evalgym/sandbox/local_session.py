"""Local session boxes: the session agent as pid 1 of its own bubblewrap namespaces, under its own uid.

    start = local_box_starter(SessionLimits(), isolation=None)     # used by evalgym.sandbox.session
    box = start()          # a started box; Session(...) speaks to it; box.kill() ends it and all it started

The box is the one-shot sandbox's (``LocalSandbox.bwrap_args``: new user, network, mount, pid, ipc and uts
namespaces, no nested user namespaces, only ``/usr`` of the host read-only, a read-only root, size-capped
``/work``, ``/tmp`` and ``/dev/shm``, the seccomp filter, ``--die-with-parent``), started by the same
launcher under a uid slot of its own that it holds until it is killed (so RLIMIT_NPROC counts only its own
processes, and two sessions never share a uid). ``--as-pid-1`` makes the agent the namespace's init: a
tool call cannot signal it, and when it ends the kernel kills everything in the namespace.

Without namespaces (``isolation="weak"`` asked for explicitly, and bubblewrap unusable) the agent runs in a
private temporary directory under the session's uid with the same rlimits; its clean-up then kills the
processes of that uid (as root) or only each call's process group (not root).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from evalgym.sandbox.session import SessionLimits, agent_bootstrap, agent_frame



class LocalBox:
    backend = "local"

    def __init__(self, sandbox: Any, limits: SessionLimits):
        self._sandbox = sandbox
        self.isolation = tuple(sandbox.isolation)
        self.uid = sandbox._acquire()
        self._work: Path | None = None
        self._dead = False
        fds: list[int] = []
        try:
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8"}
            if sandbox.namespaces:
                argv = sandbox.bwrap_args(limits.disk_mb) + ["--as-pid-1"]
                argv = sandbox.bwrap_finish(argv, env, [sandbox.python, "-S", "-c", agent_bootstrap(), "/work", "namespace"],
                                            fds)
                cwd = "/"
            else:
                self._work = Path(tempfile.mkdtemp(prefix="evalgym-session-"))
                if os.geteuid() == 0:
                    os.chown(self._work, self.uid, self.uid)
                scope = "uid" if os.geteuid() == 0 else "group"
                argv = [sandbox.python, "-S", "-c", agent_bootstrap(), str(self._work), scope]
                cwd = str(self._work)
            launcher = sandbox._get_launcher()
            if launcher is None:
                raise OSError("the sandbox launcher could not start")
            # the box's own limits; each call gets tighter ones from the agent. NPROC: the session's uid only
            rlimits = [("RLIMIT_NPROC", limits.processes + 16), ("RLIMIT_NOFILE", 1024), ("RLIMIT_CORE", 0),
                       ("RLIMIT_FSIZE", limits.disk_mb << 20)]
            self._run = launcher.spawn(argv, uid=self.uid if os.geteuid() == 0 else None, rlimits=rlimits, cwd=cwd,
                                       pass_fds=fds)
        except BaseException:
            self._cleanup()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self._out = self._run.stdout.fileno()
        os.set_blocking(self._out, False)
        self.stderr_tail = bytearray()
        threading.Thread(target=self._drain_stderr, daemon=True, name="evalgym-session-stderr").start()
        self.send(agent_frame())

    def _drain_stderr(self) -> None:
        try:
            while chunk := self._run.stderr.read1(4096):
                self.stderr_tail = (self.stderr_tail + chunk)[-2048:]
        except (OSError, ValueError):
            pass

    def send(self, data: bytes) -> None:
        self._run.stdin.write(data)
        self._run.stdin.flush()

    def recv(self, timeout_s: float) -> bytes | None:
        import select

        if not select.select([self._out], [], [], max(0.0, timeout_s))[0]:
            return None
        try:
            return os.read(self._out, 1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def kill(self) -> None:
        if self._dead:
            return
        self._dead = True
        try:
            if self._run.pid:
                os.kill(self._run.pid, signal.SIGKILL)  # bwrap: --die-with-parent ends the agent, pid 1 the rest
        except OSError:
            pass
        self._run.done.wait(5)
        for f in (self._run.stdin, self._run.stdout, self._run.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        # With namespaces, pid 1's end takes every process of the box with it, but not at once: the uid slot
        # is handed on only when none is left (they would count against the next box's RLIMIT_NPROC: a fork
        # bomb's remains made the next session's shell unable to fork). Else, or if some linger, kill them.
        if not self._sandbox.namespaces or not _gone(self.uid, 5.0):
            self._sandbox._kill_uid(self.uid)  # as root: anything of the uid left (forks this process: slow)
            _gone(self.uid, 5.0)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self._sandbox._release(self.uid)


def _gone(uid: int, wait_s: float) -> bool:
    """Whether no process of ``uid`` (zombies included: they count for RLIMIT_NPROC) is left, waiting up to
    ``wait_s``. Only meaningful as root (each box has its own uid); otherwise there is nothing to wait for."""
    import time

    if os.geteuid() != 0:
        return True
    deadline = time.monotonic() + wait_s
    while True:
        left = False
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                    left = True
                    break
            except OSError:
                continue
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def local_box_starter(limits: SessionLimits, isolation: str | None = None) -> Callable[[], LocalBox]:
    from evalgym.sandbox import get_sandbox

    sandbox = get_sandbox("local", isolation=isolation)  # refuses weaker isolation unless asked (SandboxUnavailable)
    return lambda: LocalBox(sandbox, limits)
