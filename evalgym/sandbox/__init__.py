"""Sandboxes for model-written programs: one protocol (``base.py``), two backends (local, docker), and
sessions (``session.py``): a sandbox that lives for a whole agentic episode and runs tool calls in it.

    from evalgym.sandbox import Program, Limits, get_sandbox
    result = get_sandbox("local").run(Program({"a.py": "print(1)"}, ["python3", "a.py"]), Limits())

Isolation: each backend runs only with the isolation it promises (``isolation="full"``, the default). Where
the local backend cannot make namespaces it refuses, unless ``isolation="weak"`` is asked for explicitly (or
``EVALGYM_SANDBOX_ISOLATION=weak`` is set); every result lists what was in force (``RunResult.isolation``).
"""

from __future__ import annotations

import os
import threading

from evalgym.sandbox.base import (
    ISOLATION_LEVELS,
    Limits,
    Program,
    RunResult,
    Sandbox,
    SandboxUnavailable,
    check_isolation,
)

_CACHE: dict[tuple[str, str], Sandbox] = {}
_LOCK = threading.Lock()


def default_isolation() -> str:
    """``EVALGYM_SANDBOX_ISOLATION`` (``full`` or ``weak``), else ``full``."""
    value = os.environ.get("EVALGYM_SANDBOX_ISOLATION", "").strip() or "full"
    try:
        return check_isolation(value)
    except ValueError:
        raise ValueError(f"EVALGYM_SANDBOX_ISOLATION must be one of {list(ISOLATION_LEVELS)}, got {value!r}") from None


def get_sandbox(backend: str = "local", *, isolation: str | None = None, strict: bool | None = None) -> Sandbox:
    """A process-wide sandbox of that backend (docker keeps a warm container pool). ``isolation``: ``"full"``
    (default: refuse to run with less than the backend promises) or ``"weak"``; ``strict=True`` is ``"full"``."""
    level = check_isolation(isolation) if isolation else ("full" if strict else default_isolation())
    with _LOCK:
        key = (backend, level)
        if key not in _CACHE:
            if backend == "local":
                from evalgym.sandbox.local import LocalSandbox

                _CACHE[key] = LocalSandbox(isolation=level)
            elif backend == "docker":
                from evalgym.sandbox.docker_backend import DockerSandbox

                _CACHE[key] = DockerSandbox()
            else:
                raise ValueError(f"unknown sandbox backend {backend!r}; choose 'local' or 'docker'")
        return _CACHE[key]


__all__ = ["ISOLATION_LEVELS", "Limits", "Program", "RunResult", "Sandbox", "SandboxUnavailable", "check_isolation",
           "default_isolation", "get_sandbox"]
