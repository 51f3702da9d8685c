"""Sandbox sessions: one sandbox that lives for a whole agentic episode and runs its tool calls.

    pool = SessionPool("local", SessionLimits(memory_mb=512), warm=4)     # or "docker"
    with pool.session(files={"repo/a.py": "x = 1\\n"}) as s:
        s.python("x = 41\\nx + 1").output          # '42\\n'   (a stateful interpreter)
        s.shell("ls repo && python3 -m unittest -q").exit_code
        s.write_file("repo/a.py", "x = 2\\n")
        s.files()                                    # {"repo/a.py": b"x = 2\\n"}
    # leaving the block destroys the sandbox: nothing of it reaches the next episode

A session is a box started for one episode and destroyed after it: a bubblewrap namespace set
(``local``) or a container from the warm pool (``docker``), isolated as the one-shot sandboxes are (no
network, an unprivileged uid, read-only system files, size-capped ``/work`` and ``/tmp``, memory, process
and file-size limits). Its pid 1 is ``session_agent.py`` (read there what a call may and may not do).
Sessions never share a box, a uid (local) or a container; ``SessionPool`` keeps boxes started ahead
(``warm``) so an episode does not wait for one.

Failures are results, not exceptions: a call that hangs, floods output, forks or exhausts memory comes back
as a ``ToolRun`` with ``error`` set (``timeout``, ``output_limit``, ``died: ...``) while the session goes
on. If the box itself is lost (it stopped answering), it is replaced by a fresh one with the episode's
initial files, and the result says so (``error="session_lost"``, ``restarted``). Every result names the
isolation it ran under.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from evalgym.sandbox.base import SandboxUnavailable

_AGENT = Path(__file__).with_name("session_agent.py")
_ANSWER_GRACE_S = 5.0  # past a call's own timeout, how long the agent may take to answer before it is lost


@dataclass(frozen=True)
class SessionLimits:
    """Limits of a session: per call ``timeout_s`` (default; calls may ask for less), memory per process,
    processes, ``/work`` size, output kept per call; ``cpu_s``: CPU seconds a process may use in its life."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    processes: int = 64
    disk_mb: int = 64
    output_bytes: int = 16 * 1024
    cpu_s: int = 600

    def key(self) -> tuple[int, int, int]:
        return (int(self.memory_mb), int(self.processes), int(self.disk_mb))


@dataclass(frozen=True)
class ToolRun:
    """One call's result. ``output``: stdout and stderr as one stream, cut at ``SessionLimits.output_bytes``
    (``truncated``). ``error``: None, ``"timeout"``, ``"output_limit"``, ``"died: ..."`` (the process was
    killed, e.g. out of memory), ``"session_lost"`` or a refusal (``"bad path: ..."``). ``exit_code``: a
    shell command's status (negative: killed by that signal). ``status`` (python): ``ok``, ``error``
    (an exception, traceback in ``output``), ``exit``, ``interrupted``. ``restarted``: the interpreter or
    the whole session was started afresh before or during this call (earlier state is gone)."""

    output: str
    error: str | None = None
    exit_code: int | None = None
    status: str | None = None
    truncated: bool = False
    restarted: bool = False
    duration_s: float = 0.0
    isolation: tuple[str, ...] = ()
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.status in (None, "ok") and self.exit_code in (None, 0)


class Box(Protocol):
    """A started session sandbox whose agent speaks the framed protocol."""

    backend: str
    isolation: tuple[str, ...]

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout_s: float) -> bytes | None:
        """Bytes from the agent's stdout (b"" at its end, None when nothing came within ``timeout_s``)."""
        ...

    def kill(self) -> None: ...


@lru_cache(maxsize=1)
def agent_source() -> bytes:
    return _AGENT.read_bytes()


def agent_frame() -> bytes:
    """The first frame a box gets: the agent's source, which its bootstrap runs."""
    return struct.pack(">I", len(agent_source())) + agent_source()


@lru_cache(maxsize=1)
def agent_bootstrap() -> str:
    """The short program a box starts with: it reads the agent's source from stdin (the first frame)."""
    import ast

    tree = ast.parse(agent_source())
    return next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "BOOTSTRAP")


class SessionLost(RuntimeError):
    pass


class Session:
    """One episode's sandbox. Thread-compatible (one call at a time; calls are serialized)."""

    def __init__(self, start_box: Callable[[], Box], files: Mapping[str, str | bytes] | None = None,
                 limits: SessionLimits = SessionLimits(), env: Mapping[str, str] | None = None,
                 first_box: Box | None = None, on_close: Callable[[Box], None] | None = None):
        self._start_box, self.limits = start_box, limits
        self._files = {k: (v.encode() if isinstance(v, str) else bytes(v)) for k, v in (files or {}).items()}
        self._env = dict(env or {})
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._on_close = on_close
        self.closed = False
        self.restarts = 0
        self.box = first_box if first_box is not None else start_box()
        try:
            self._init()
        except SessionLost as exc:
            self._kill()
            raise SandboxUnavailable(f"the session sandbox did not start: {exc}") from None

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def isolation(self) -> tuple[str, ...]:
        return tuple(self.box.isolation)

    @property
    def backend(self) -> str:
        return self.box.backend

    def _request(self, req: dict[str, Any], wait_s: float) -> dict[str, Any]:
        data = json.dumps(req).encode()
        try:
            self.box.send(struct.pack(">I", len(data)) + data)
        except (OSError, ValueError) as exc:  # ValueError: its pipe is closed (the box was killed)
            raise SessionLost(f"cannot write to the session: {exc}") from None
        deadline = time.monotonic() + wait_s
        while True:
            if len(self._buf) >= 4:
                n = struct.unpack(">I", self._buf[:4])[0]
                if len(self._buf) >= 4 + n:
                    body = bytes(self._buf[4:4 + n])
                    del self._buf[:4 + n]
                    return json.loads(body)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionLost(f"the session did not answer within {wait_s:.0f}s")
            chunk = self.box.recv(left)
            if chunk == b"":
                raise SessionLost("the session ended")
            if chunk:
                self._buf += chunk

    def _init(self) -> None:
        lim = self.limits
        reply = self._request({"op": "init", "files": {k: base64.b64encode(v).decode() for k, v in self._files.items()},
                               "env": self._env,
                               "limits": {"memory_mb": lim.memory_mb, "processes": lim.processes, "disk_mb": lim.disk_mb,
                                          "output_bytes": lim.output_bytes, "cpu_s": lim.cpu_s,
                                          "nproc": self.box.backend == "local"}}, 60.0)
        if not reply.get("ok"):
            raise SessionLost(f"init failed: {reply.get('error')}")

    def _kill(self) -> None:
        try:
            self.box.kill()
        except Exception:  # noqa: BLE001
            pass

    def _restart(self) -> None:
        """Replace a lost box with a fresh one holding the episode's initial files."""
        self._kill()
        self._buf.clear()
        self.restarts += 1
        self.box = self._start_box()
        self._init()

    def _call(self, req: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any] | None, bool]:
        if self.closed:
            raise RuntimeError("the session is closed")
        with self._lock:
            try:
                return self._request(req, timeout_s + _ANSWER_GRACE_S), False
            except SessionLost:
                try:
                    self._restart()
                except (SessionLost, SandboxUnavailable, OSError):
                    pass  # the next call tries again
                return None, True

    def _result(self, reply: dict[str, Any] | None, lost: bool, t0: float) -> ToolRun:
        if lost or reply is None:
            return ToolRun("", error="session_lost", restarted=True, duration_s=time.monotonic() - t0,
                           isolation=self.isolation, backend=self.backend)
        if "output" not in reply:
            return ToolRun("", error=str(reply.get("error", "failed")), duration_s=time.monotonic() - t0,
                           isolation=self.isolation, backend=self.backend)
        return ToolRun(reply["output"], error=reply.get("error"), exit_code=reply.get("exit_code"),
                       status=reply.get("status"), truncated=bool(reply.get("truncated")),
                       restarted=bool(reply.get("restarted")), duration_s=float(reply.get("duration_s", 0.0)),
                       isolation=self.isolation, backend=self.backend)

    def _timeout(self, timeout_s: float | None) -> float:
        return max(0.05, min(float(timeout_s), self.limits.timeout_s) if timeout_s is not None else self.limits.timeout_s)

    # -- tools -----------------------------------------------------------------------------------
    def python(self, code: str, timeout_s: float | None = None) -> ToolRun:
        """Run ``code`` in the session's interpreter (state kept between calls; the value of a final
        expression is printed, as in a notebook)."""
        t0, timeout = time.monotonic(), self._timeout(timeout_s)
        reply, lost = self._call({"op": "python", "code": code, "timeout": timeout,
                                  "output_bytes": self.limits.output_bytes}, timeout)
        return self._result(reply, lost, t0)

    def shell(self, command: str, timeout_s: float | None = None) -> ToolRun:
        """Run ``command`` with bash in the working tree (``/work``)."""
        t0, timeout = time.monotonic(), self._timeout(timeout_s)
        reply, lost = self._call({"op": "shell", "command": command, "timeout": timeout,
                                  "output_bytes": self.limits.output_bytes}, timeout)
        return self._result(reply, lost, t0)

    def write_file(self, path: str, content: str | bytes) -> ToolRun:
        t0 = time.monotonic()
        data = content.encode() if isinstance(content, str) else bytes(content)
        reply, lost = self._call({"op": "write_file", "path": path, "data": base64.b64encode(data).decode()}, 10.0)
        if reply is not None and reply.get("ok"):
            return ToolRun(f"wrote {len(data)} bytes to {path}", duration_s=time.monotonic() - t0,
                           isolation=self.isolation, backend=self.backend)
        if reply is not None:
            reply = {"error": f"bad path: {reply.get('error')}"}
        return self._result(reply, lost, t0)

    def files(self, max_bytes: int = 8 << 20) -> dict[str, bytes]:
        """Every regular file of the working tree (symlinks and what would pass ``max_bytes`` left out)."""
        reply, lost = self._call({"op": "files", "max_bytes": int(max_bytes)}, 30.0)
        if lost or reply is None or "files" not in reply:
            raise SessionLost("the session was lost: its files are gone")
        return {k: base64.b64decode(v) for k, v in reply["files"].items()}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close(self.box)
        else:
            self._kill()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def box_starter(backend: str, limits: SessionLimits, isolation: str | None = None) -> Callable[[], Box]:
    """A function that starts one session box of ``backend``."""
    if backend == "local":
        from evalgym.sandbox.local_session import local_box_starter

        return local_box_starter(limits, isolation)
    if backend == "docker":
        from evalgym.sandbox.docker_session import docker_box_starter

        return docker_box_starter(limits)
    raise ValueError(f"unknown sandbox backend {backend!r}; choose 'local' or 'docker'")


@dataclass
class SessionPool:
    """Sessions of one backend and limits, with ``warm`` boxes started ahead on a background thread.

    A box serves one session only: closing a session destroys its box (its processes, files and, for
    docker, its container) and the pool starts a replacement."""

    backend: str = "local"
    limits: SessionLimits = field(default_factory=SessionLimits)
    warm: int = 2
    isolation: str | None = None

    def __post_init__(self) -> None:
        self._start = box_starter(self.backend, self.limits, self.isolation)
        self._idle: list[Box] = []
        self._cond = threading.Condition()
        self._starting = 0
        self._closed = False
        self.started = 0
        self._refill()

    def _refill(self) -> None:
        with self._cond:
            need = self.warm - len(self._idle) - self._starting
            if self._closed or need <= 0:
                return
            self._starting += need
        for _ in range(need):
            threading.Thread(target=self._start_one, daemon=True, name="evalgym-session-warm").start()

    def _start_one(self) -> None:
        try:
            box = self._start()
        except Exception:  # noqa: BLE001  (surfaces when a session is asked for and none can start)
            box = None
        with self._cond:
            self._starting -= 1
            if box is not None and not self._closed:
                self._idle.append(box)
                self.started += 1
                box = None
            self._cond.notify_all()
        if box is not None:
            box.kill()

    def session(self, files: Mapping[str, str | bytes] | None = None, env: Mapping[str, str] | None = None) -> Session:
        """A fresh session holding ``files`` in its working tree."""
        with self._cond:
            if self._closed:
                raise SandboxUnavailable("this SessionPool is closed")
            box = self._idle.pop() if self._idle else None
        if box is None:
            box = self._start()
            self.started += 1
        self._refill()
        return Session(self._start, files, self.limits, env, first_box=box, on_close=self._discard)

    def _discard(self, box: Box) -> None:
        threading.Thread(target=box.kill, daemon=True, name="evalgym-session-kill").start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for box in idle:
            box.kill()
