"""Losses and advantages against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from evalgym.trainers.losses import (
    bradley_terry_loss,
    distill_advantages,
    dpo_loss,
    group_advantages,
    kl_k3,
    overlong_penalty,
    policy_loss,
    ratio_band_mask,
    sft_loss,
    topk_reverse_kl,
)

t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def test_group_advantages_grpo_and_dr_grpo():
    r = t([1.0, 0.0, 0.0, 1.0]).reshape(1, 4)           # mean 0.5, population std 0.5
    assert torch.allclose(group_advantages(r), t([1, -1, -1, 1]).reshape(1, 4), atol=1e-5)
    assert torch.allclose(group_advantages(r, scale=False), t([0.5, -0.5, -0.5, 0.5]).reshape(1, 4))
    same = t([1.0, 1.0, 1.0]).reshape(1, 3)             # zero-variance group: no signal, no NaN
    assert torch.equal(group_advantages(same), torch.zeros(1, 3, dtype=torch.float64))
    two = t([3.0, 1.0, 0.0, 0.0]).reshape(2, 2)          # groups are normalized separately
    assert torch.allclose(group_advantages(two), t([1, -1, 0, 0]).reshape(2, 2), atol=1e-5)


def test_on_policy_loss_is_minus_mean_advantage_and_its_gradient():
    # ratio 1 everywhere (new == old): loss = -mean over tokens of A
    logp = t([-1.0, -2.0, -3.0, -0.5, -0.5, 0.0]).reshape(2, 3).requires_grad_()
    mask = t([1, 1, 1, 1, 1, 0]).reshape(2, 3)
    adv = t([2.0, -1.0])
    loss, m = policy_loss(logp, logp.detach(), adv, mask, aggregation="token")
    assert loss.item() == pytest.approx(-(3 * 2.0 + 2 * -1.0) / 5)
    loss.backward()
    # d loss / d logp_t = -A / (number of tokens) on real tokens, 0 on padding
    assert torch.allclose(logp.grad, t([-0.4, -0.4, -0.4, 0.2, 0.2, 0.0]).reshape(2, 3))
    assert m["clip_fraction"] == 0 and m["ratio_mean"] == pytest.approx(1.0)


def test_aggregations():
    logp = t([-1.0, -1.0, -1.0, -1.0, 0.0, 0.0]).reshape(2, 3)
    mask = t([1, 1, 1, 1, 0, 0]).reshape(2, 3)
    adv = t([1.0, 1.0])
    # per-token loss is -1 on every real token
    tok, _ = policy_loss(logp, logp, adv, mask, aggregation="token")
    seq, _ = policy_loss(logp, logp, adv, mask, aggregation="sequence")
    const, _ = policy_loss(logp, logp, adv, mask, aggregation="constant", max_tokens=4)
    assert tok.item() == pytest.approx(-1.0)           # 4 tokens / 4
    assert seq.item() == pytest.approx(-1.0)           # mean(-1, -1)
    assert const.item() == pytest.approx(-4 / (2 * 4))  # sum / (B * max_tokens)
    with pytest.raises(ValueError, match="max_tokens"):
        policy_loss(logp, logp, adv, mask, aggregation="constant")


def test_clipping_is_asymmetric_with_clip_higher():
    old = t([0.0, 0.0]).reshape(2, 1)
    new = torch.log(t([1.5, 0.5])).reshape(2, 1).requires_grad_()  # ratios 1.5 and 0.5
    mask = torch.ones(2, 1, dtype=torch.float64)
    adv = t([1.0, -1.0])
    loss, m = policy_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.28, aggregation="sequence")
    # seq 1: A>0, ratio 1.5 clipped at 1.28 -> -1.28; seq 2: A<0, ratio 0.5 clipped at 0.8 -> 0.8
    assert loss.item() == pytest.approx((-1.28 + 0.8) / 2)
    assert m["clip_fraction"] == pytest.approx(1.0)
    loss.backward()
    assert torch.equal(new.grad, torch.zeros_like(new))  # clipped tokens carry no gradient


def test_gspo_uses_the_sequence_geometric_mean_ratio():
    old = t([0.0, 0.0]).reshape(1, 2)
    new = torch.log(t([2.0, 0.5])).reshape(1, 2).requires_grad_()   # token ratios 2 and 0.5; geo mean 1
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, m = policy_loss(new, old, t([1.0]), mask, ratio_level="sequence", aggregation="sequence")
    assert loss.item() == pytest.approx(-1.0)   # sequence ratio 1: nothing clipped
    assert m["clip_fraction"] == 0
    loss.backward()
    # gradient s · ∇log π / |y| per token: -1 · 1 / 2 each
    assert torch.allclose(new.grad, t([-0.5, -0.5]).reshape(1, 2))
    tok_loss, tm = policy_loss(new.detach(), old, t([1.0]), mask, ratio_level="token", aggregation="sequence")
    assert tm["clip_fraction"] == 0.5 and tok_loss.item() == pytest.approx(-(1.2 + 0.5) / 2)


def test_kl_k3_and_beta():
    new, ref = t([-1.0]).reshape(1, 1), t([-2.0]).reshape(1, 1)
    d = -1.0
    assert kl_k3(new, ref).item() == pytest.approx(math.exp(d) - d - 1)
    assert kl_k3(new, new).item() == 0.0
    mask = torch.ones(1, 1, dtype=torch.float64)
    base, _ = policy_loss(new, new, t([0.0]), mask)
    with_kl, m = policy_loss(new, new, t([0.0]), mask, ref_logp=ref, beta=0.5)
    assert base.item() == 0.0 and with_kl.item() == pytest.approx(0.5 * (math.exp(d) - d - 1))
    assert m["kl"] == pytest.approx(math.exp(d) - d - 1)


def test_truncated_importance_correction():
    logp = t([-1.0, -1.0]).reshape(1, 2)
    behavior = t([-1.0 - math.log(0.5), -1.0 - math.log(4.0)]).reshape(1, 2)  # old/behavior = 0.5 and 4
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, _ = policy_loss(logp, logp, t([1.0]), mask, behavior_logp=behavior, tis_cap=2.0)
    assert loss.item() == pytest.approx(-(0.5 + 2.0) / 2)  # weights 0.5 and min(4, 2)


def test_per_token_advantages_for_distillation():
    student = t([-2.0, -1.0]).reshape(1, 2).requires_grad_()
    teacher = t([-1.0, -3.0]).reshape(1, 2)
    adv = distill_advantages(teacher, student)
    assert torch.equal(adv, t([1.0, -2.0]).reshape(1, 2)) and not adv.requires_grad
    loss, _ = policy_loss(student, student.detach(), adv, torch.ones(1, 2, dtype=torch.float64))
    assert loss.item() == pytest.approx(-(1.0 - 2.0) / 2)


def _student_topk(student_logp, ids):
    """(the student's log-probs at ``ids``, the log of its mass elsewhere): what the chunked scorer returns."""
    top = student_logp.gather(-1, ids)
    if ids.shape[-1] >= student_logp.shape[-1]:
        return top, torch.full(top.shape[:-1], float("-inf"), dtype=top.dtype)
    return top, student_logp.scatter(-1, ids, float("-inf")).logsumexp(-1)


def test_topk_reverse_kl_by_hand():
    # three tokens; student (0.5, 0.25, 0.25), teacher (0.25, 0.5, 0.25)
    student = torch.log(t([[0.5, 0.25, 0.25]])).requires_grad_()
    teacher = torch.log(t([[0.25, 0.5, 0.25]]))
    full = teacher.topk(3, -1)
    # the whole vocabulary: the exact KL, 0.5 ln 2 + 0.25 ln 0.5 + 0 = 0.25 ln 2
    kl = topk_reverse_kl(*_student_topk(student, full.indices), full.values)
    assert kl.item() == pytest.approx(0.25 * math.log(2))
    kl.backward()
    assert torch.isfinite(student.grad).all()     # no NaN through the empty rest bucket
    student.grad = None
    # teacher's top 1 (token 1, 0.5) and a rest bucket: student (0.25, 0.75) vs teacher (0.5, 0.5)
    top1 = teacher.topk(1, -1)
    kl = topk_reverse_kl(*_student_topk(student, top1.indices), top1.values)
    assert kl.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert kl.item() <= 0.25 * math.log(2)      # coarsening never raises a KL
    kl.backward()
    assert torch.isfinite(student.grad).all()
    # the student equal to the teacher: zero, with or without the rest bucket
    for k in (1, 2, 3):
        top = teacher.topk(k, -1)
        assert topk_reverse_kl(*_student_topk(teacher, top.indices), top.values).item() == pytest.approx(0.0, abs=1e-12)


def test_micro_batch_losses_add_up_to_the_minibatch_loss():
    """With the minibatch's token and sequence counts, the losses of its micro-batches sum to its loss
    (gradient accumulation is exact for every aggregation)."""
    g = torch.Generator().manual_seed(0)
    new = torch.randn(6, 5, generator=g, dtype=torch.float64)
    old = new + 0.1 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    mask = (torch.rand(6, 5, generator=g) > 0.3).to(torch.float64)
    mask[:, 0] = 1
    for how in ("token", "sequence", "constant"):
        whole, _ = policy_loss(new, old, adv, mask, aggregation=how, max_tokens=5)
        parts = sum(policy_loss(new[s], old[s], adv[s], mask[s], aggregation=how, max_tokens=5,
                                num_tokens=float(mask.sum()), num_seqs=6.0)[0] for s in (slice(0, 2), slice(2, 6)))
        assert parts.item() == pytest.approx(whole.item(), rel=1e-12), how


def test_advantage_one_at_ratio_one_is_the_sft_gradient():
    """Rejection sampling and off-policy distillation: advantage 1, old = new.detach() → ∇(token-mean NLL)."""
    logp = torch.log(t([[0.5, 0.25, 0.9]])).requires_grad_()
    mask = t([[1.0, 1.0, 0.0]])
    loss, _ = policy_loss(logp, logp.detach(), torch.ones(1, dtype=torch.float64), mask, aggregation="token")
    (g_pg,) = torch.autograd.grad(loss, logp)
    (g_sft,) = torch.autograd.grad(sft_loss(logp, mask), logp)
    assert torch.equal(g_pg, g_sft)


def test_ratio_band_mask():
    # ratios exp(train - engine): e^0 = 1, e^-1 = 0.37, e^0.5 = 1.65, e^1 = 2.72
    train = t([[0.0, -1.0, 0.5, 1.0]])
    engine = t([[0.0, 0.0, 0.0, 0.0]])
    assert ratio_band_mask(train, engine, 0.5, 2.0).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert ratio_band_mask(train, engine, 0.3, 3.0).tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_overlong_penalty():
    p = overlong_penalty(torch.tensor([10, 80, 90, 100, 120]), max_tokens=100, buffer=20)
    assert torch.allclose(p, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))


def test_sft_dpo_and_bradley_terry():
    assert sft_loss(t([-1.0, -3.0, -100.0]), t([1, 1, 0])).item() == pytest.approx(2.0)
    loss, m = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    # margin = (-1 + 2) - (-3 + 2) = 2 -> -log σ(1)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))
    assert m["margin"] == pytest.approx(2.0) and m["accuracy"] == 1.0
    loss, m = bradley_terry_loss(t([2.0, 0.0]), t([0.0, 1.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2)
    assert m["accuracy"] == 0.5
