"""The sandbox protocol: run a program (files + a command) under limits, get a result back.

    from evalgym.sandbox import Program, Limits, get_sandbox
    box = get_sandbox("local")            # or "docker"
    result = box.run(Program(files={"main.py": "print(1)"}, command=["python3", "main.py"]),
                     Limits(timeout_s=5, memory_mb=256))
    result.exit_code, result.stdout, result.isolation   # 0, "1\\n", ("netns", "mountns", "pidns", ...)

What a sandbox protects against: the program's own actions (network, host files, secrets in the
environment, fork/memory/disk/output bombs, CPU loops, daemons outliving the run, signals to its
parent). What it does not: kernel exploits and side channels; for hostile code at scale, run the docker
backend on a dedicated host. ``isolation`` lists only what was actually in force for that run.

The program sees its files in its working directory (``/work`` under namespaces or in docker) and runs
``command`` there with the system ``python3``. Nothing else of the host's environment is passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

ISOLATION_KINDS = ("netns", "mountns", "pidns", "ipcns", "utsns", "userns", "uid", "rlimits", "seccomp",
                   "container", "readonly-root", "no-new-privs", "cap-drop")


@dataclass(frozen=True)
class Program:
    """What to run: ``files`` (relative path -> text or bytes) written into a fresh working directory,
    then ``command`` (argv) run there, with ``stdin`` fed to it."""

    files: Mapping[str, str | bytes]
    command: Sequence[str]
    stdin: str | bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # added to a scrubbed PATH/HOME/LANG


@dataclass(frozen=True)
class Limits:
    """Limits of one run. ``cpu_s`` defaults to ``timeout_s``; output is capped per stream."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    cpu_s: float | None = None
    processes: int = 64
    output_bytes: int = 64 * 1024
    disk_mb: int = 64


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when stopped by the sandbox (``killed``); negative = killed by that signal
    timed_out: bool
    oom: bool
    stdout: str
    stderr: str
    truncated: bool  # stdout or stderr was cut at Limits.output_bytes
    duration_s: float
    backend: str
    isolation: tuple[str, ...]  # what was in force for this run (ISOLATION_KINDS)
    killed: str | None = None   # why the sandbox stopped the program: "timeout" or "output_limit" (a stream
                                # went over Limits.output_bytes: the program is stopped there, not drained)

    def as_dict(self) -> dict:
        return {"exit_code": self.exit_code, "timed_out": self.timed_out, "oom": self.oom, "stdout": self.stdout,
                "stderr": self.stderr, "truncated": self.truncated, "duration_s": round(self.duration_s, 6),
                "backend": self.backend, "isolation": list(self.isolation), "killed": self.killed}


class SandboxUnavailable(RuntimeError):
    """The backend cannot run here (no engine; no namespaces unless ``isolation="weak"``); the message says why."""


ISOLATION_LEVELS = ("full", "weak")


def check_isolation(isolation: str) -> str:
    """``"full"``: run only with the isolation the backend promises (the default); ``"weak"``: the local
    backend may fall back to uid + rlimits where bubblewrap cannot make namespaces (results say so)."""
    if isolation not in ISOLATION_LEVELS:
        raise ValueError(f"isolation must be one of {list(ISOLATION_LEVELS)}, got {isolation!r}")
    return isolation


@runtime_checkable
class Sandbox(Protocol):
    name: str

    def run(self, program: Program, limits: Limits = Limits()) -> RunResult: ...

    def close(self) -> None: ...
