"""The reward model ranks held-out pairs above chance, and becomes a reward source for GRPO."""

from __future__ import annotations

import json

import pytest

from evalgym.rollouts import make_env
from evalgym.trainers.dpo import load_pairs
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from evalgym.trainers.rm import RMConfig, RewardModelScorer, train_rm


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs_and_scores_for_grpo(tmp_path, tiny_path):
    cfg = RMConfig(model=tiny_path, envs=["arithmetic"], env_rows=1000, steps=160, batch_size=16, lr=1e-3,
                   save_every=80, run_dir=str(tmp_path / "rm"))
    result = train_rm(cfg, progress=False)
    scorer = RewardModelScorer(result["checkpoint"].path)
    held_out = load_pairs(RMConfig(envs=["arithmetic"], env_rows=64, env_kwargs={"arithmetic": {"seed": 10**9}}))
    env = make_env("arithmetic", seed=10**9)
    problems = [env.source.problem(i) for i in range(64)]
    chosen = scorer.score_batch(problems, [p["chosen"] for p in held_out])
    rejected = scorer.score_batch(problems, [p["rejected"] for p in held_out])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(held_out)
    print("held-out pairwise accuracy", accuracy)
    # chance is 0.5. Measured with the head seeded (seed 0): 0.66. Before the head's init was seeded,
    # runs gave 0.62-0.89 depending on what ran earlier in the process: the tiny RM is only modestly
    # above chance on held-out pairs; a stronger RM recipe is left to the next stop.
    assert accuracy >= 0.6, accuracy
    v = scorer.verify(problems[0], held_out[0]["chosen"])
    assert 0 <= v.reward <= 1 and v.verifier == "reward-model"
    # GRPO on the reward model's scores (the InstructGPT stage): rewards come from the scorer
    grpo = GRPOConfig(model=tiny_path, reward_model=result["checkpoint"].path, steps=1, prompts_per_step=2,
                      group_size=2, max_tokens=8, run_dir=str(tmp_path / "grpo"), save_every=1)
    train_grpo(grpo, progress=False)
    m = json.loads((tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < m["reward"] < 1 and m["verifier_reward"] in (0.0, 0.25, 0.5, 0.75, 1.0)
