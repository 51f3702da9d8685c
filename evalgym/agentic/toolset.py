"""The built-in tools, run in the episode's sandbox session, and the session pools they share.

    TOOLS["python"].spec          # ToolSpec: name, description, JSON-schema parameters
    TOOLS["python"].run(ctx, {"code": "print(1)"})   -> ToolReply(text="1\\n", error=None)

- ``python`` (``code``): a stateful interpreter for the episode (variables persist between calls; the value of
  a final expression is shown, as in a notebook);
- ``shell`` (``command``): bash in the episode's working tree;
- ``write_file`` (``path``, ``content``): write a file of the working tree (``path`` relative to it);
- ``submit`` (``answer``): ends the episode; the answer is graded.

A reply is what the model reads: the call's output, with a bracketed note when something went wrong
(``[error: timed out after 5s: interrupted; variables kept]``). ``ToolReply.error`` names the failure for
the metrics (None when the tool ran; a Python exception or a non-zero exit status is a result the model
learns from, counted apart as ``code_error``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from evalgym.agentic.tools import ToolSpec
from evalgym.sandbox.session import Session, SessionLimits, SessionPool, ToolRun


@dataclass(frozen=True)
class ToolReply:
    text: str
    error: str | None = None          # why the call failed (metrics: tool_errors)
    code_error: bool = False          # it ran, and the code raised / exited non-zero (metrics: code_errors)
    final: str | None = None          # submit: the answer to grade (ends the episode)
    duration_s: float = 0.0


class ToolContext(Protocol):
    """What a tool sees of its episode (``AgenticEnv`` implements it)."""

    def session(self) -> Session: ...

    def call_timeout(self) -> float: ...


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    run: Callable[[ToolContext, Mapping[str, Any]], ToolReply]


_NOTES = {"timeout": "timed out after {t:g}s", "output_limit": "output over the limit: stopped",
          "session_lost": "the sandbox was lost and restarted: files and variables are back to the start"}


def describe_run(r: ToolRun, timeout: float) -> ToolReply:
    """A session result as the model reads it."""
    text = r.output if r.output else "(no output)\n"
    if r.truncated:
        text = text.rstrip("\n") + "\n[output truncated]\n"
    notes = []
    if r.error:
        note = _NOTES.get(r.error, r.error).format(t=timeout)
        if r.status == "interrupted":
            note += ": interrupted, variables kept"
        elif r.error in ("timeout", "output_limit"):
            note += ": killed"
        notes.append(f"error: {note}")
    if r.restarted and r.error != "session_lost":
        notes.append("note: the interpreter was restarted; earlier variables are gone")
    if r.exit_code not in (None, 0):
        notes.append(f"exit code {r.exit_code}")
    if notes:
        text += "".join(f"[{n}]\n" for n in notes)
    code_error = r.status in ("error", "exit") or r.exit_code not in (None, 0)
    return ToolReply(text, error=r.error, code_error=code_error, duration_s=r.duration_s)


def _python(ctx: ToolContext, args: Mapping[str, Any]) -> ToolReply:
    t = ctx.call_timeout()
    return describe_run(ctx.session().python(str(args["code"]), timeout_s=t), t)


def _shell(ctx: ToolContext, args: Mapping[str, Any]) -> ToolReply:
    t = ctx.call_timeout()
    return describe_run(ctx.session().shell(str(args["command"]), timeout_s=t), t)


def _write_file(ctx: ToolContext, args: Mapping[str, Any]) -> ToolReply:
    r = ctx.session().write_file(str(args["path"]), str(args["content"]))
    return ToolReply(r.output or f"[error: {r.error}]\n", error=r.error, duration_s=r.duration_s)


def _submit(ctx: ToolContext, args: Mapping[str, Any]) -> ToolReply:
    return ToolReply("Submitted.", final=str(args["answer"]))


def _spec(name: str, description: str, **props: str) -> ToolSpec:
    return ToolSpec(name, description, {"type": "object", "required": list(props),
                                        "properties": {k: {"type": "string", "description": v} for k, v in props.items()}})


TOOLS: dict[str, Tool] = {
    "python": Tool(_spec("python", "Run Python code in a stateful interpreter; the value of the last expression is "
                         "shown.", code="the Python code to run"), _python),
    "shell": Tool(_spec("shell", "Run a bash command in the working directory.", command="the command"), _shell),
    "write_file": Tool(_spec("write_file", "Write a text file (replacing it).", path="path relative to the working "
                             "directory", content="the whole new content"), _write_file),
    "submit": Tool(_spec("submit", "Submit the final answer; this ends the episode.", answer="the final answer"),
                   _submit),
}

# -- session pools (one per backend, limits and isolation; shared by every env of the process) ------------

_POOLS: dict[tuple, SessionPool] = {}
_LOCK = threading.Lock()


def session_pool(backend: str, limits: SessionLimits, isolation: str | None = None) -> SessionPool:
    """The process-wide pool for these settings (``EVALGYM_SESSION_WARM`` boxes kept started, default 2)."""
    key = (backend, limits, isolation)
    with _LOCK:
        if key not in _POOLS:
            warm = int(os.environ.get("EVALGYM_SESSION_WARM", "2"))
            _POOLS[key] = SessionPool(backend, limits, warm=warm, isolation=isolation)
        return _POOLS[key]


def close_pools() -> None:
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.close()
