"""Sandboxes for model-written programs: one protocol (``base.py``), two backends (local, docker).

    from evalgym.sandbox import Program, Limits, get_sandbox
    result = get_sandbox("local").run(Program({"a.py": "print(1)"}, ["python3", "a.py"]), Limits())
"""

from __future__ import annotations

import threading

from evalgym.sandbox.base import Limits, Program, RunResult, Sandbox, SandboxUnavailable

_CACHE: dict[tuple[str, bool], Sandbox] = {}
_LOCK = threading.Lock()


def get_sandbox(backend: str = "local", *, strict: bool = False) -> Sandbox:
    """A process-wide sandbox of that backend (docker keeps a warm container pool)."""
    with _LOCK:
        key = (backend, strict)
        if key not in _CACHE:
            if backend == "local":
                from evalgym.sandbox.local import LocalSandbox

                _CACHE[key] = LocalSandbox(strict=strict)
            elif backend == "docker":
                from evalgym.sandbox.docker_backend import DockerSandbox

                _CACHE[key] = DockerSandbox()
            else:
                raise ValueError(f"unknown sandbox backend {backend!r}; choose 'local' or 'docker'")
        return _CACHE[key]


__all__ = ["Limits", "Program", "RunResult", "Sandbox", "SandboxUnavailable", "get_sandbox"]
