"""Evaluate a policy on an env through the env contract (reset → policy → step) and summarize.

    rows = evaluate_scripted("evalgym/gsm8k-v0", "noisy", num=100, seed=0)

Scores carry a Wilson 95% interval; grader errors (timeouts, unreadable golds) are counted, never
folded silently into zeros.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import gymnasium

from evalgym.envs.registry import resolve_id
from evalgym.errors import EvalgymError
from evalgym.policies.scripted import POLICIES
from evalgym.types import Verdict


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (sensible at 0 and 1, unlike the normal interval)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class EvalSummary:
    env_id: str
    policy: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_reward: float
    errors: int
    grade_ms: float
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_scripted(env_id: str, policy: str, *, num: int = 50, seed: int = 0,
                      data_dir: str | None = None, **env_kwargs: Any) -> EvalSummary:
    if policy not in POLICIES:
        raise EvalgymError(f"unknown policy {policy!r}; choose from {sorted(POLICIES)}")
    env_id = resolve_id(env_id)
    env = gymnasium.make(env_id, data_dir=data_dir, **env_kwargs)
    size = env.unwrapped.source.size
    rng = random.Random(seed)
    indices = list(range(size)) if size <= num else sorted(rng.sample(range(size), num))
    t0 = time.perf_counter()
    verdicts: list[Verdict] = []
    for i in indices:
        _, info = env.reset(seed=seed + i, options={"index": i})
        done = False
        while not done:
            text = POLICIES[policy](info["problem"], random.Random(seed * 1_000_003 + i + info["turn"]))
            _, _, terminated, truncated, info = env.step(text)
            done = terminated or truncated
        verdicts.append(info["verdict"])
    env.close()
    n = len(verdicts)
    correct = sum(v.correct for v in verdicts)
    lo, hi = wilson(correct, n)
    return EvalSummary(env_id, policy, n, correct / max(n, 1), lo, hi,
                       sum(v.reward for v in verdicts) / max(n, 1), sum(v.error is not None for v in verdicts),
                       1000 * sum(v.elapsed_s for v in verdicts) / max(n, 1), time.perf_counter() - t0)
