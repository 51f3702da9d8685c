"""GRPO: batches and advantages from real rollouts, options wired through, and the learning effect."""

from __future__ import annotations

import json

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, build_batch, pick_problems, sequence_logp, train_grpo


def test_problem_choice_follows_the_mixture_and_the_step():
    cfg = GRPOConfig(envs={"arithmetic": 3.0, "fractions": 1.0}, prompts_per_step=400)
    sizes = {"arithmetic": 10**9, "fractions": 10**9}
    a = pick_problems(cfg, sizes, 0)
    assert a == pick_problems(cfg, sizes, 0) and a != pick_problems(cfg, sizes, 1)
    share = sum(n == "arithmetic" for n, _ in a) / len(a)
    assert 0.65 < share < 0.85
    with pytest.raises(EvalgymError, match="weights"):
        pick_problems(GRPOConfig(envs={"arithmetic": 0.0}), sizes, 0)
    with pytest.raises(EvalgymError, match="aggregation"):
        load_config(GRPOConfig, None, ["aggregation=mean"])


def test_batch_from_real_rollouts(tiny_policy):
    from evalgym.policies.base import SamplingParams
    from evalgym.rollouts import collect

    result = collect(tiny_policy, "arithmetic", num_prompts=3, n=4, sampling=SamplingParams(max_tokens=12), seed=0)
    cfg = GRPOConfig(group_size=4, max_tokens=12)
    batch = build_batch(cfg, result, tiny_policy.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 12 and batch["mask"].sum() == sum(
        len(t.final.completion.token_ids) for t in result.trajectories)
    # the mask marks exactly the completion tokens (positions predicting them)
    t0 = result.groups[0].trajectories[0].final.completion
    p = len(t0.prompt_token_ids)
    row = batch["input_ids"][0]
    assert row[p:p + len(t0.token_ids)].tolist() == list(t0.token_ids)
    assert batch["mask"][0, p - 1:p - 1 + len(t0.token_ids)].all() and batch["mask"][0, :p - 1].sum() == 0
    assert torch.allclose(batch["behavior_logp"][0, p - 1:p - 1 + len(t0.token_ids)], torch.tensor(t0.logprobs))
    # all-zero rewards: every group has zero variance; filtering drops them all
    assert batch["stats"]["zero_variance_frac"] == pytest.approx(sum(g.zero_variance for g in result.groups) / 3)
    filtered = build_batch(GRPOConfig(group_size=4, filter_zero_variance=True), result, 0)
    kept = sum(not g.zero_variance for g in result.groups)
    assert (filtered["input_ids"] is None) == (kept == 0)


def test_shared_prompt_logprobs_and_gradients_equal_a_plain_forward(tiny_policy, tiny_path):
    """The loss runs each group's prompt once (KV cache expanded to its rows): same numbers as a plain
    forward over every (prompt + completion) row, gradients included."""
    from transformers import AutoModelForCausalLM

    from evalgym.policies.base import SamplingParams
    from evalgym.rollouts import collect_many, make_env

    arithmetic, countdown = make_env("arithmetic"), make_env("countdown-gen")
    result = collect_many(tiny_policy, [(arithmetic, 0), (countdown, 0), (arithmetic, 1)], n=4,
                          sampling=SamplingParams(max_tokens=12), seed=1)
    batch = build_batch(GRPOConfig(group_size=4, max_tokens=12), result, tiny_policy.tokenizer.pad_token_id)
    ids, attn, mask = batch["input_ids"], batch["attention_mask"], batch["mask"]
    prompt_lens = {len(t.final.completion.prompt_token_ids) for t in result.trajectories}
    assert len(prompt_lens) > 1   # prompts of different lengths: the shared path's left padding is exercised
    model = AutoModelForCausalLM.from_pretrained(tiny_path).train()
    weights = torch.linspace(-1, 1, ids.shape[0])[:, None]
    out = {}
    for share in (False, True):
        model.zero_grad()
        logp = sequence_logp(model, ids, attn, mask, share_prompts=share)
        (logp * weights).sum().backward()
        out[share] = (logp.detach(), [p.grad.clone() for p in model.parameters()])
    (plain, plain_grads), (shared, shared_grads) = out[False], out[True]
    assert torch.allclose(plain, shared, atol=1e-5) and (shared * (1 - mask)).abs().sum() == 0
    assert torch.allclose(shared, batch["behavior_logp"], atol=1e-4)   # the sampler's own logprobs
    for a, b in zip(plain_grads, shared_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6 * float(a.abs().max()))
    assert any(float(g.abs().sum()) > 0 for g in shared_grads)


def test_grpo_variants_run_and_log_health_metrics(tmp_path, tiny_path):
    cfg = GRPOConfig(model=tiny_path, steps=2, prompts_per_step=2, group_size=3, max_tokens=8, lr=1e-4,
                     run_dir=str(tmp_path / "run"), save_every=2, beta=0.05, clip_high=0.28,
                     aggregation="constant", scale_advantages=False, ratio_level="sequence",
                     filter_zero_variance=True, overlong_buffer=4, tis_cap=2.0,
                     envs={"arithmetic": 1.0, "countdown-gen": 1.0})
    train_grpo(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for key in ("reward", "reward_std", "zero_variance_frac", "truncation_rate", "kl", "clip_fraction", "tokens_per_s"):
        assert key in rows[0], key
    meta = json.loads((tmp_path / "run" / "step_000002" / "meta.json").read_text())
    assert meta["trainer"] == "grpo" and meta["envs"] == {"arithmetic": "evalgym/arithmetic-v0",
                                                         "countdown-gen": "evalgym/countdown-gen-v0"}


@pytest.mark.slow
def test_grpo_lifts_an_sft_checkpoint(sft_arithmetic, grpo_arithmetic):
    start, end = sft_arithmetic["after"], grpo_arithmetic["after"]
    # measured: 0.48 -> 0.68 (40 steps, ~2 min on 2 cores)
    assert end >= start + 0.1, (start, end)
