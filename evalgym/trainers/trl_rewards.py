"""evalgym envs for TRL users: a dataset of prompts and a reward function graded by the env's verifier.

    from trl import GRPOTrainer
    dataset = trl_dataset("arithmetic", num=1000, seed=0)           # columns: prompt, env_id, problem_index
    # or the exact problems, in order: trl_dataset("arithmetic", indices=[3, 14, 15])
    trainer = GRPOTrainer(model=..., reward_funcs=[trl_reward("arithmetic")], train_dataset=dataset)

The reward function has TRL's signature ``f(prompts, completions, **columns) -> list[float]``:
completions may be strings or chat lists (``[{"role": "assistant", "content": ...}]``); the
``problem_index`` column tells it which problem each completion answers, so the same verifier that
grades our own training and evaluation grades TRL's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalgym.errors import EvalgymError


def trl_dataset(env_id: str, *, num: int | None = None, seed: int = 0, indices: Sequence[int] | None = None,
                **env_kwargs: Any):
    """``num`` problems picked by ``seed``, or exactly the given ``indices`` in their order (repeats
    allowed: e.g. the problems another trainer saw, step by step)."""
    from datasets import Dataset

    from evalgym.rollouts import make_env, pick_indices

    env = make_env(env_id, **env_kwargs)
    if (num is None) == (indices is None):
        raise EvalgymError("trl_dataset: give num or indices (one of them)")
    if indices is not None:
        bad = [i for i in indices if not 0 <= int(i) < env.source.size]
        if bad:
            raise EvalgymError(f"trl_dataset: indices {bad[:5]} out of range for {env_id} (size {env.source.size})")
    rows = []
    for i in (pick_indices(env.source.size, num, seed) if indices is None else [int(i) for i in indices]):
        p = env.source.problem(i)
        rows.append({"prompt": [m.as_dict() for m in p.messages], "env_id": p.env_id, "problem_index": i})
    return Dataset.from_list(rows)


def trl_reward(env_id: str, **env_kwargs: Any):
    from evalgym.rollouts import make_env

    env = make_env(env_id, **env_kwargs)

    def reward(prompts: list[Any], completions: list[Any], problem_index: list[int] | None = None,
               **_: Any) -> list[float]:
        if problem_index is None:
            raise EvalgymError("evalgym reward: the dataset needs a 'problem_index' column (use trl_dataset)")
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        problems = [env.source.problem(int(i)) for i in problem_index]
        return [v.reward for v in env.verifier.verify_batch(problems, texts)]

    reward.__name__ = f"evalgym_{env_id.split('/')[-1].replace('-', '_')}"
    return reward
