"""Our envs for TRL users: the dataset columns and the reward function TRL's GRPOTrainer calls."""

from __future__ import annotations

import inspect

import pytest

from evalgym.errors import EvalgymError
from evalgym.rollouts import make_env
from evalgym.trainers.trl_rewards import trl_dataset, trl_reward


def test_reward_function_grades_with_the_envs_verifier():
    ds = trl_dataset("arithmetic", num=4, seed=0)
    assert set(ds.column_names) == {"prompt", "env_id", "problem_index"} and len(ds) == 4
    env = make_env("arithmetic")
    refs = [env.source.problem(i).reference for i in ds["problem_index"]]
    fn = trl_reward("arithmetic")
    # TRL passes prompts, completions and every dataset column as keyword arguments
    assert list(inspect.signature(fn).parameters)[:2] == ["prompts", "completions"]
    assert fn(prompts=ds["prompt"], completions=refs, problem_index=ds["problem_index"], env_id=ds["env_id"]) == [1.0] * 4
    chat = [[{"role": "assistant", "content": r}] for r in refs]
    assert fn(prompts=ds["prompt"], completions=chat, problem_index=ds["problem_index"]) == [1.0] * 4
    assert fn(prompts=ds["prompt"], completions=["\\boxed{nonsense}"] * 4, problem_index=ds["problem_index"]) == [0.0] * 4
    with pytest.raises(EvalgymError, match="problem_index"):
        fn(prompts=ds["prompt"], completions=refs)
