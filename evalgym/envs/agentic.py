"""The agentic envs built on other envs' problems: ``python-math`` and ``code-tools`` (``swe-lite`` has its
own module). Each problem is its base env's problem (same question, answer, tests and canonical content, so
the same content hash: training on one counts for the other in contamination checks) with a prompt that
offers tools, served by an ``AgenticEnv``.

    gymnasium.make("evalgym/python-math-v0", dataset="gsm8k", split="test", sandbox="docker")
    gymnasium.make("evalgym/code-tools-v0", dataset="code-gen", split="train", tool_time_s=30)

Knobs every agentic env takes: ``sandbox`` (``local`` | ``docker``; default ``$EVALGYM_SANDBOX`` or local),
``isolation`` (``weak`` to allow the local fallback without namespaces), ``parser`` (``auto``: the model
family's), ``max_tokens``, ``tool_time_s``, ``call_timeout_s``, ``memory_mb``; ``max_turns`` is
``gymnasium.make``'s own. Splits: ``train`` and ``test``; a procedural base's ``test`` is its ``eval``
split (disjoint from ``train`` by content hash).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable

from evalgym.agentic.env import AgenticEnv, AgenticOptions, Budgets
from evalgym.errors import EvalgymError
from evalgym.sandbox.session import SessionLimits
from evalgym.types import ChatMessage, Problem

PROCEDURAL = {"arithmetic", "linear-equations", "fractions", "code-gen"}
MATH_DATASETS = ("gsm8k", "math", "arithmetic", "linear-equations", "fractions")
CODE_DATASETS = ("mbpp", "mbpp-sanitized", "humaneval", "code-gen")

MATH_PROMPT = ("{question}\n\nYou can run Python with the `python` tool (the interpreter keeps its variables). "
               "Work the problem out, then call `submit` with the final answer only (a number or an expression).")
CODE_PROMPT = ("{question}\n\nYou can run code with the `python` tool; try your function on the examples above. "
               "When it is right, call `submit` with the complete function (its source code) as `answer`.")


def agentic_options(tools: tuple[str, ...], *, sandbox: str | None = None, isolation: str | None = None,
                    parser: str = "auto", max_tokens: int = 4096, tool_time_s: float = 60.0,
                    call_timeout_s: float = 10.0, memory_mb: int = 512, output_bytes: int = 16 * 1024,
                    files: Callable[[Problem], dict[str, str]] | None = None,
                    final: Callable[..., str] | None = None) -> AgenticOptions:
    """The agentic knobs (see the module docstring) as ``AgenticOptions``."""
    budgets = Budgets(max_tokens=int(max_tokens), tool_time_s=float(tool_time_s), call_timeout_s=float(call_timeout_s))
    limits = SessionLimits(timeout_s=float(call_timeout_s), memory_mb=int(memory_mb), output_bytes=int(output_bytes))
    extra = {k: v for k, v in (("files", files), ("final", final)) if v is not None}
    return AgenticOptions(tools=tools, sandbox=sandbox or os.environ.get("EVALGYM_SANDBOX", "local"),
                          isolation=isolation, limits=limits, budgets=budgets, parser=parser, **extra)


class AgenticSource:
    """A base env's problems with an agentic prompt, carrying the ``AgenticOptions`` its env is built with."""

    def __init__(self, info: Any, base: Any, agentic: AgenticOptions, template: str, dataset: str):
        self.info, self.base, self.agentic, self.template, self.dataset = info, base, agentic, template, dataset
        self.size = base.size
        self.split = getattr(base, "split", "")
        self.knobs = {"dataset": dataset, **dict(getattr(base, "knobs", {}) or {})}
        if hasattr(base, "space"):
            self.space = base.space

    def problem(self, index: int) -> Problem:
        p = self.base.problem(index)
        question = p.prompt_text
        messages = tuple(m for m in p.messages if m.role == "system") + (
            ChatMessage("user", self.template.format(question=question)),)
        suffix = p.id.split("/", 1)[1] if "/" in p.id else p.id
        return replace(p, id=f"{self.info.name}-v{self.info.version}/{self.dataset}/{suffix}", env_id=self.info.id,
                       env_version=self.info.version, messages=messages,
                       extra={**p.extra, "base_env": p.env_id, "base_id": p.id})


def base_source(base_name: str, split: str, data_dir: str | None, knobs: dict[str, Any]) -> Any:
    from evalgym.envs.registry import CATALOG, resolve_id

    import inspect

    info = CATALOG[resolve_id(base_name)]
    if "instruction" in inspect.signature(info.source).parameters:
        knobs = {**knobs, "instruction": ""}  # the question alone: the agentic prompt says how to answer
    if base_name in PROCEDURAL:
        split = {"test": "eval"}.get(split, split)
    elif data_dir is not None:
        knobs = {**knobs, "data_dir": data_dir}
    return info.source(info, **{**info.defaults, **knobs, "split": split})


def _check(dataset: str, known: tuple[str, ...], env: str) -> None:
    if dataset not in known:
        raise EvalgymError(f"{env}: dataset must be one of {list(known)}, got {dataset!r}")


def _boxed(env: AgenticEnv, answer: str, submitted: bool) -> str:
    """A submitted answer is graded as the boxed final answer; a final completion as written."""
    return f"\\boxed{{{answer.strip()}}}" if submitted and "\\boxed" not in answer else answer


def _fenced(env: AgenticEnv, answer: str, submitted: bool) -> str:
    return f"```python\n{answer.strip()}\n```" if submitted and "```" not in answer else answer


def _split_knobs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ("sandbox", "isolation", "parser", "max_tokens", "tool_time_s", "call_timeout_s", "memory_mb",
             "output_bytes")
    return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}


def python_math_source(info: Any, dataset: str = "gsm8k", split: str = "train", data_dir: str | None = None,
                       **kwargs: Any) -> AgenticSource:
    _check(dataset, MATH_DATASETS, info.id)
    agentic, knobs = _split_knobs(kwargs)
    opts = agentic_options(("python", "submit"), final=_boxed, **agentic)
    return AgenticSource(info, base_source(dataset, split, data_dir, knobs), opts, MATH_PROMPT, dataset)


def code_tools_source(info: Any, dataset: str = "mbpp", split: str = "train", data_dir: str | None = None,
                      **kwargs: Any) -> AgenticSource:
    _check(dataset, CODE_DATASETS, info.id)
    agentic, knobs = _split_knobs(kwargs)
    opts = agentic_options(("python", "submit"), final=_fenced, **agentic)
    return AgenticSource(info, base_source(dataset, split, data_dir, knobs), opts, CODE_PROMPT, dataset)


__all__ = ["AgenticEnv", "AgenticSource", "agentic_options", "code_tools_source", "python_math_source"]
