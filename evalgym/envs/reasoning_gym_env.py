"""reasoning-gym's procedural generators as evalgym envs, graded by their own scorers.

    gymnasium.make("evalgym/reasoning-gym-v1", dataset="chain_sum", size=500, seed=1)      # split="train"
    gymnasium.make("evalgym/rg-leg-counting-v1", split="eval")

Splits: of the ``size`` entries reasoning-gym generates for (dataset, seed, config), an env keeps those
whose content hash (question and answer) falls in its split, as procedural envs do (``train`` ~80 %,
``eval`` ~20 %), so train and eval never share a problem whatever the seeds. The space of a
reasoning-gym dataset is not known here (``space`` null).

Needs the optional ``reasoning-gym`` package (``pip install 'evalgym[reasoning-gym]'``); it runs offline.
The answer is read from ``<answer>…</answer>`` (reasoning-gym's convention), else the last ``\\boxed{}``,
and scored by the dataset's ``score_answer`` in a verifier worker.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Mapping

from evalgym.envs.sources import PROCEDURAL_SPLITS, Fields, RowsSource, SpaceInfo, canonical_text, check_split, split_of
from evalgym.errors import EvalgymError
from evalgym.types import Problem, canonical_hash
from evalgym.verifiers.base import PooledVerifier
from evalgym.verifiers.math_extract import find_boxed

INSTRUCTION = "Give only the final answer inside <answer> </answer> tags."
BUILTIN = ("chain_sum", "basic_arithmetic", "leg_counting", "letter_counting", "simple_equations")


def _rg() -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise EvalgymError("reasoning-gym envs need the optional package: pip install 'evalgym[reasoning-gym]'") from None
    return reasoning_gym


@lru_cache(maxsize=64)
def _dataset(name: str, size: int, seed: int, config_json: str) -> Any:
    try:
        return _rg().create_dataset(name, size=size, seed=seed, **json.loads(config_json))
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise EvalgymError(f"reasoning-gym dataset {name!r}: {type(exc).__name__}: {exc}") from None


def _answer(entry: Mapping[str, Any]) -> str:
    return "" if entry["answer"] is None else str(entry["answer"])


class ReasoningGymSource(RowsSource):
    def __init__(self, info: Any, dataset: str = "chain_sum", size: int = 1000, seed: int = 0,
                 split: str = "train", instruction: str = INSTRUCTION, **config: Any):
        check_split(info, split, PROCEDURAL_SPLITS)
        key = (dataset, int(size), int(seed), json.dumps(config, sort_keys=True))
        ds = _dataset(*key)
        self.key = key
        entries = [ds[i] for i in range(len(ds))]
        in_split = [split_of(canonical_hash(canonical_text(e["question"], _answer(e)))) for e in entries]
        self.counts = {s: in_split.count(s) for s in PROCEDURAL_SPLITS}

        def fields(entry: Mapping[str, Any]) -> Fields:
            answer = _answer(entry)
            return entry["question"], answer, f"<answer>{answer}</answer>", {"rg": key, "entry": dict(entry)}

        super().__init__(info, [e for e, s in zip(entries, in_split) if s == split], fields,
                         split=f"{dataset}-{split}-seed{seed}", instruction=instruction)

    def space(self) -> SpaceInfo:
        """Unknown space; the split sizes are those of the generated entries."""
        return SpaceInfo(None, dict(self.counts), True)


def extract(response: str) -> str | None:
    from reasoning_gym.utils import extract_answer

    found = extract_answer(response, tag_name="answer")
    if found is None:
        boxes = [b for b in find_boxed(response) if b]
        found = boxes[-1] if boxes else None
    return found


def grade(key: tuple, entry: Mapping[str, Any], response: str) -> dict[str, Any]:
    answer = extract(response)
    if answer is None:
        return {"reward": 0.0, "correct": False, "details": {"extracted": None, "reason": "no <answer> tags"}}
    score = float(_dataset(*key).score_answer(answer, dict(entry)))
    score = min(1.0, max(0.0, score))
    return {"reward": score, "correct": score == 1.0, "details": {"extracted": answer, "score": score}}


class ReasoningGymVerifier(PooledVerifier):
    name = "reasoning-gym"
    version = "1"
    modules = ("evalgym.envs.reasoning_gym_env", "reasoning_gym")
    grade = staticmethod(grade)

    def __init__(self, budget_s: float = 5.0, **kwargs: Any):
        super().__init__(budget_s=budget_s, **kwargs)

    def args(self, problem: Problem, response: str) -> tuple:
        return (tuple(problem.extra["rg"]), problem.extra["entry"], response)
