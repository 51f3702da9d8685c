"""Docker session boxes: one container per episode whose pid 1 is the session agent.

    start = docker_box_starter(SessionLimits())     # used by evalgym.sandbox.session (SessionPool warms them)
    box = start()         # a created, started and attached container; box.kill() removes it

The container is locked down exactly as the one-shot pool's (``docker_backend.locked_down``: no network, a
read-only root, size-capped ``/work`` and ``/tmp`` tmpfs, no capabilities, ``no-new-privileges``, uid 65534,
private ipc, memory without swap, a pids cgroup, one CPU, owner labels for the reaper). Its command is the
session agent (``session_agent.py``, pid 1: no tool call can signal it); the host speaks to it over the
container's attached stdin/stdout (docker's multiplexed stream). RLIMIT_NPROC is not used (uid 65534 is
shared by every container on the host): the pids cgroup bounds a fork bomb. A container serves one episode
and is removed after it, so nothing of one episode reaches another.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any, Callable

from evalgym.sandbox.session import SessionLimits, agent_bootstrap, agent_frame

_SANDBOX: list[Any] = []
_LOCK = threading.Lock()
_AGENT_MEMORY_MB = 96  # the agent and its interpreter, on top of what a call may use


def _engine() -> Any:
    """One DockerSandbox per process for its connection, image check, sweep and reaper (no one-shot pool)."""
    with _LOCK:
        if not _SANDBOX:
            from evalgym.sandbox.docker_backend import DockerSandbox

            _SANDBOX.append(DockerSandbox(pool_size=1, warm=False))
        return _SANDBOX[0]


class DockerBox:
    backend = "docker"

    def __init__(self, engine: Any, limits: SessionLimits):
        from evalgym.sandbox.docker_backend import locked_down

        self._engine = engine
        self.isolation = tuple(engine.isolation)
        self._dead = False
        opts = locked_down(limits.memory_mb, limits.processes, limits.disk_mb, extra_pids=8,
                           extra_memory_mb=_AGENT_MEMORY_MB)
        c = engine.client.containers.create(engine.image, ["python3", "-S", "-c", agent_bootstrap(), "/work", "namespace"],
                                            stdin_open=True, tty=False, **opts)
        self.id = c.id
        with engine._cond:  # removed with the engine's own containers at close()/exit, like the pool's
            engine._ids.add(c.id)
        try:
            if engine._unix is not None:
                self._sock, self._frames = engine.hijack(f"/containers/{c.id}/attach?stream=1&stdin=1&stdout=1&stderr=1")
            else:
                raw = engine.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
                self._sock, self._frames = getattr(raw, "_sock", raw), bytearray()
            engine.api.start(c.id)
            self.stderr_tail = bytearray()
            self.send(agent_frame())
        except BaseException:
            self.kill()
            raise

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self, timeout_s: float) -> bytes | None:
        """The agent's stdout bytes in the frames that arrive within ``timeout_s``."""
        out = bytearray()
        while True:
            while len(self._frames) >= 8:  # stream, 3 zero bytes, size, data
                size = int.from_bytes(self._frames[4:8], "big")
                if len(self._frames) < 8 + size:
                    break
                stream, chunk = self._frames[0], bytes(self._frames[8:8 + size])
                del self._frames[:8 + size]
                if stream == 1:
                    out += chunk
                elif stream == 2:
                    self.stderr_tail = (self.stderr_tail + chunk)[-2048:]
            if out:
                return bytes(out)
            if not select.select([self._sock], [], [], max(0.0, timeout_s))[0]:
                return None
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                return b""
            self._frames += data
            timeout_s = 0.0 if out else timeout_s

    def kill(self) -> None:
        if self._dead:
            return
        self._dead = True
        sock = getattr(self, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._engine._remove(self.id)


def docker_box_starter(limits: SessionLimits) -> Callable[[], DockerBox]:
    engine = _engine()
    return lambda: DockerBox(engine, limits)
