"""The reward model ranks held-out pairs above chance, and becomes a reward source for GRPO."""

from __future__ import annotations

import json

import pytest

from evalgym.rollouts import make_env
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from evalgym.trainers.rm import RewardModelScorer


# chance is 0.5; below the worst of seeds 0/1/2 in perf/results/learning_spread_prefs.md: 0.875 / 0.703 / 0.672
RM_ACCURACY = 0.6


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs_and_scores_for_grpo(tmp_path, tiny_path):
    """Trained on train-split pairs, ranked on eval-split pairs (tests/trainers/learning.py)."""
    from tests.trainers import learning

    result = learning.rm(tiny_path, tmp_path / "rm", seed=0)
    held_out = learning.eval_pairs()
    accuracy = learning.rm_accuracy(result["checkpoint"].path, held_out)
    print("held-out pairwise accuracy", accuracy)
    assert accuracy >= RM_ACCURACY, accuracy
    scorer = RewardModelScorer(result["checkpoint"].path)
    v = scorer.verify(make_env("arithmetic", split="eval").source.problem(0), held_out[0]["chosen"])
    assert 0 <= v.reward <= 1 and v.verifier == "reward-model"
    # GRPO on the reward model's scores (the InstructGPT stage): rewards come from the scorer
    grpo = GRPOConfig(model=tiny_path, reward_model=result["checkpoint"].path, steps=1, prompts_per_step=2,
                      group_size=2, max_tokens=8, run_dir=str(tmp_path / "grpo"), save_every=1)
    train_grpo(grpo, progress=False)
    m = json.loads((tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < m["reward"] < 1 and m["verifier_reward"] in (0.0, 0.25, 0.5, 0.75, 1.0)
