"""Where a synthetic-data run's problems come from, and how each is graded.

    items, bad = prompt_items(cfg)          # [(TextEnv, index)], bad prompt rows (counted, with examples)

- **Env splits** (``envs``): the first ``num_prompts`` distinct problems of each env's ``split`` (a
  procedural env seeded with the run's ``seed``; a dataset split sampled by it). An env's evaluation split
  is refused: data generated from evaluation problems is contaminated by construction.
- **Prompt files** (``prompts``): JSONL, parquet or an HF dataset folder of rows with ``prompt`` (a string
  or chat messages; ``messages``, ``question`` and ``problem`` are read too) and optional ``answer``,
  ``env`` (a registered env whose verifier grades it), ``domain``, ``id``, ``reference`` and ``extra`` (the
  verifier's data, e.g. countdown numbers). A bad row (no prompt, wrong types, an unknown env) is counted
  and reported with its line, and the run goes on.

Every problem is served by a ``TextEnv``, so generation and grading are the rollout engine's
(``evalgym.rollouts.collect_many``: the env's verifier in worker processes, overlapped with generation).
Problems without a checker get the judge (``verify: auto`` with a ``judge``) or :class:`Unverified`, whose
verdicts say ``error="unverified"``: kept only by ``keep: all``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from evalgym.envs.base import TextEnv
from evalgym.errors import EvalgymError
from evalgym.synth.config import SynthConfig
from evalgym.types import ChatMessage, Problem, Verdict, messages_from

PROMPT_KEYS = ("prompt", "messages", "question", "problem")
MAX_EXAMPLES = 5


class Unverified:
    """The verifier of a problem nothing can check: every verdict is marked, none is a silent 0."""

    name, version = "none", "1"

    def verify(self, problem: Problem, response: str) -> Verdict:
        return Verdict(reward=0.0, correct=False, error="unverified", verifier=self.name, verifier_version=self.version)

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        return [self.verify(p, r) for p, r in zip(problems, responses)]


class ListSource:
    """A fixed list of problems as a ProblemSource."""

    def __init__(self, problems: list[Problem], instruction: str = ""):
        self.problems, self.instruction = problems, instruction
        self.size = len(problems)

    def problem(self, index: int) -> Problem:
        return self.problems[index]


@dataclass
class Item:
    """One prompt of the run: the env serving it, its index there, the question (for dedup and
    decontamination) and where it came from."""

    env: TextEnv
    index: int
    question: str
    source: str

    @property
    def problem(self) -> Problem:
        return self.env.source.problem(self.index)


def _takes_seed(env_id: str) -> bool:
    import inspect

    from evalgym.envs.registry import CATALOG, resolve_id

    return "seed" in inspect.signature(CATALOG[resolve_id(env_id)].source).parameters


def make_split_env(cfg: SynthConfig, name: str, knobs: dict[str, Any] | None = None) -> TextEnv:
    """The env ``name`` on the run's split (refusing its evaluation split), seeded by the run's seed."""
    import evalgym  # noqa: F401
    from evalgym.envs.registry import CATALOG, resolve_id
    from evalgym.rollouts import make_env

    env_id = resolve_id(name)
    info = CATALOG[env_id]
    kwargs = {**cfg.env_kwargs.get(name, cfg.env_kwargs.get(env_id, {})), **(knobs or {})}
    split = kwargs.pop("split", cfg.split)
    if info.eval_split is not None and split == info.eval_split:
        raise EvalgymError(f"split: {split!r} is {env_id}'s evaluation split; synthetic data is never generated "
                           f"from evaluation problems (its splits: {list(info.splits)})")
    if info.splits and split not in info.splits:
        raise EvalgymError(f"split: {env_id} has no split {split!r}; its splits: {list(info.splits)}")
    if info.splits:
        kwargs["split"] = split
    if _takes_seed(env_id):
        kwargs.setdefault("seed", cfg.seed)
    return make_env(env_id, **kwargs)


def env_indices(env: TextEnv, k: int | None, seed: int) -> list[int]:
    """``k`` distinct problems: the first ``k`` of a procedural split (seeded by the env's seed), a seeded
    sample of a dataset split."""
    from evalgym.envs.sources import UNLIMITED, distinct_indices

    size = env.source.size
    if size != UNLIMITED:
        return sorted(random.Random(seed).sample(range(size), min(k or size, size)))
    return distinct_indices(env.source, k or 64, where=env.source.info.id)


def env_items(cfg: SynthConfig, verifier_for: Any) -> list[Item]:
    items = []
    for name in cfg.envs:
        env = make_split_env(cfg, name)
        env.verifier = verifier_for(env.verifier)
        instr = getattr(env.source, "instruction", "") or ""
        for i in env_indices(env, cfg.num_prompts, cfg.seed):
            items.append(Item(env, i, question_of(env.source.problem(i), instr),
                              f"env:{env.source.info.id}/{getattr(env.source, 'split', cfg.split)}"))
    return items


def question_of(problem: Problem, instruction: str = "") -> str:
    from evalgym.synth.decontam import question_of as q

    return q(problem, instruction)


def _row_problem(row: dict[str, Any], line: int, path: str) -> tuple[Problem, str | None]:
    """A Problem from a prompt row, and the env whose verifier grades it (None: no checker)."""
    import json

    from evalgym.envs.registry import CATALOG, resolve_id

    key = next((k for k in PROMPT_KEYS if row.get(k) not in (None, "", [])), None)
    if key is None:
        raise ValueError(f"no prompt (one of {list(PROMPT_KEYS)})")
    value = row[key]
    if not isinstance(value, (str, list)):
        raise ValueError(f"{key}: expected a string or a list of chat messages, got {type(value).__name__}")
    messages = messages_from(value)
    if not any(m.role == "user" for m in messages):
        raise ValueError(f"{key}: no user message")
    answer = row.get("answer")
    answer = "" if answer is None else str(answer)
    env_name = row.get("env")
    env_id = None
    if env_name is not None:
        if not isinstance(env_name, str):
            raise ValueError(f"env: expected an env name, got {env_name!r}")
        env_id = resolve_id(env_name)      # EvalgymError names the registered envs
    info = CATALOG.get(env_id) if env_id else None
    extra = row.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    if not isinstance(extra, dict):
        raise ValueError(f"extra: expected an object, got {type(extra).__name__}")
    question = messages[-1].content if messages[-1].role == "user" else next(m.content for m in reversed(messages) if m.role == "user")
    extra = {**extra}
    if "canonical" not in extra:
        from evalgym.synth.problems import canonical_for

        extra["canonical"], extra["env_scheme"] = canonical_for(env_id, question, answer)
    domain = row.get("domain") or (info.domain if info else "general")
    pid = str(row.get("id") or f"prompts/{line}")
    return Problem(id=pid, env_id=env_id or "synth/prompts", env_version=info.version if info else 0, domain=str(domain),
                   messages=tuple(ChatMessage(m.role, m.content) for m in messages), answer=answer,
                   reference=str(row.get("reference") or ""), index=line, extra=extra), env_id


def file_items(cfg: SynthConfig, verifier_for: Any, judge: Any) -> tuple[list[Item], dict[str, Any]]:
    """Items from the prompt file, and the bad-row report {count, examples}."""
    from evalgym.data import read_rows
    from evalgym.envs.registry import CATALOG

    assert cfg.prompts is not None
    bad: dict[str, Any] = {"count": 0, "examples": []}
    by_env: dict[str | None, list[Problem]] = {}
    rows = read_rows(cfg.prompts, "prompts")
    if cfg.num_prompts is not None:
        rows = rows[: cfg.num_prompts]
    for line, row in rows:
        try:
            problem, env_id = _row_problem(row, line, cfg.prompts)
        except (ValueError, KeyError, TypeError, EvalgymError) as exc:
            bad["count"] += 1
            if len(bad["examples"]) < MAX_EXAMPLES:
                bad["examples"].append({"where": f"{cfg.prompts}:{line}", "error": str(exc)[:300]})
            continue
        by_env.setdefault(env_id if problem.answer or env_id in _no_answer_envs() else None, []).append(problem)
    items: list[Item] = []
    for env_id, problems in by_env.items():
        checker = CATALOG[env_id].verifier_factory() if env_id else None
        verifier = verifier_for(checker) if checker is not None else (judge if judge is not None else Unverified())
        env = TextEnv(ListSource(problems), verifier)
        items += [Item(env, i, p.prompt_text, f"prompts:{cfg.prompts}") for i, p in enumerate(problems)]
    items.sort(key=lambda it: it.problem.index)
    return items, bad


def _no_answer_envs() -> set[str]:
    """Envs whose verifier needs no gold answer (the problem's extra holds what it checks)."""
    from evalgym.envs.registry import CATALOG

    return {i for i, info in CATALOG.items() if info.verifier in ("code", "ifeval", "countdown")}
