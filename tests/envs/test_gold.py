"""Gold QA of every registered env: each problem's own reference solution must score exactly 1.0.

For every id in ``CATALOG`` a sample of problems (the first 40 indices plus 40 seeded random ones; 200
seeded random ones for the big ``math-v0`` / ``gsm8k-v0``, marked ``slow``) is graded with the env's
own verifier through one ``verify_batch`` call. A failure lists problem id, gold answer, reference
tail and the verdict's details. No verdict may carry an ``error`` (timeout, crash, internal). A wrong
answer (another problem's reference) must not score 1.0 everywhere, so the check can fail.
"""

from __future__ import annotations

import random

import gymnasium
import pytest

from evalgym.envs import CATALOG

SEED = 20240611
BIG = {"evalgym/math-v0", "evalgym/gsm8k-v0"}


def _indices(env_id: str, size: int) -> list[int]:
    rng = random.Random(f"{SEED}:{env_id}")
    if env_id in BIG:
        return sorted(rng.sample(range(size), min(200, size)))
    first = list(range(min(40, size)))
    rest = [i for i in range(size) if i >= 40] if size <= 100_000 else None
    extra = rng.sample(rest, min(40, len(rest))) if rest is not None else [rng.randrange(40, size) for _ in range(40)]
    return first + extra


def _params():
    for env_id in sorted(CATALOG):
        marks = [pytest.mark.slow] if env_id in BIG else []
        yield pytest.param(env_id, marks=marks, id=env_id)


def _tail(text: str, n: int = 80) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else "..." + text[-n:]


@pytest.mark.parametrize("env_id", list(_params()))
def test_reference_scores_one(env_id, data_dir):
    env = gymnasium.make(env_id, data_dir=str(data_dir)).unwrapped
    indices = _indices(env_id, env.source.size)
    assert len(indices) == len(set(indices)) and len(indices) in (80, 200, env.source.size)
    problems = [env.source.problem(i) for i in indices]
    assert [p.index for p in problems] == indices
    assert all(p.env_id == env_id for p in problems)
    missing = [p.id for p in problems if not p.reference]
    assert not missing, f"{env_id}: problems without a reference: {missing[:10]}"

    verdicts = env.verifier.verify_batch(problems, [p.reference for p in problems])
    assert len(verdicts) == len(problems)
    errors = [(p.id, p.answer, v.error) for p, v in zip(problems, verdicts) if v.error is not None]
    failed = [(p.id, p.answer, _tail(p.reference), v.reward, dict(v.details))
              for p, v in zip(problems, verdicts) if v.reward != 1.0 or not v.correct]
    report = "\n".join(f"  {pid}: answer={ans!r} reference={ref!r} reward={r} details={d}"
                       for pid, ans, ref, r, d in failed[:25])
    assert not failed, f"{env_id}: {len(failed)}/{len(problems)} references not scored 1.0:\n{report}"
    assert not errors, f"{env_id}: verdicts with error set: {errors[:25]}"
    assert all(v.verifier == CATALOG[env_id].verifier for v in verdicts)

    # The grader is not a constant 1.0: shifting every reference onto the next problem mostly fails.
    shifted = [problems[(k + 1) % len(problems)].reference for k in range(len(problems))]
    wrong = env.verifier.verify_batch(problems, shifted)
    assert sum(v.reward == 1.0 for v in wrong) < len(problems) // 2, f"{env_id}: wrong references score 1.0"
