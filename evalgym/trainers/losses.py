"""Losses and advantages of every trainer, as pure functions of tensors (unit-tested by hand).

Shapes: ``B`` sequences, ``T`` completion tokens (right-padded), ``mask`` 1.0 on real completion
tokens. Log-probabilities are of the sampled tokens, ``[B, T]``.

GRPO family (one function, the variants are options):

- advantages: group-normalized ``(r - mean) / (std + eps)`` (GRPO) or ``r - mean`` (Dr. GRPO);
- ratio: per token (GRPO, DAPO) or per sequence, the length-normalized geometric mean (GSPO);
- clipping: ``[1 - clip_low, 1 + clip_high]``; ``clip_high > clip_low`` is DAPO's clip-higher;
- aggregation: ``token`` (mean over all tokens of the batch: DAPO), ``sequence`` (mean over each
  sequence, then over sequences: GRPO), ``constant`` (sum over tokens / (B · max_tokens): Dr. GRPO);
- KL to a reference: ``beta`` times the k3 estimator ``exp(ref - new) - (ref - new) - 1`` per token;
- importance correction: when the rollout engine's logprobs (``behavior_logp``) differ from the
  trainer's at sampling time (``old_logp``), each token is weighted by the truncated ratio
  ``min(exp(old - behavior), tis_cap)`` (truncated importance sampling).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Aggregation = Literal["token", "sequence", "constant"]


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """``rewards`` is ``[num_groups, G]``; returns advantages of the same shape.

    ``scale=False`` is Dr. GRPO (no division by the group's std). The std is the population std
    (``unbiased=False``), as in the GRPO paper's implementation in TRL."""
    centered = rewards - rewards.mean(dim=-1, keepdim=True)
    if not scale:
        return centered
    return centered / (rewards.std(dim=-1, unbiased=False, keepdim=True) + eps)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: Aggregation, max_tokens: int | None = None, *,
              num_tokens: float | None = None, num_seqs: float | None = None) -> torch.Tensor:
    """Reduce ``[B, T]`` per-token terms to the loss. ``num_tokens`` / ``num_seqs`` replace this batch's own
    counts when it is one micro-batch of a larger minibatch (its losses then add up to the minibatch's)."""
    if how == "token":
        return (per_token * mask).sum() / (num_tokens if num_tokens is not None else mask.sum().clamp(min=1))
    if how == "sequence":
        per_seq = masked_mean(per_token, mask, dim=1)
        return per_seq.mean() if num_seqs is None else per_seq.sum() / num_seqs
    if how == "constant":
        if not max_tokens:
            raise ValueError("aggregation 'constant' (Dr. GRPO) needs max_tokens")
        return (per_token * mask).sum() / ((num_seqs if num_seqs is not None else per_token.shape[0]) * max_tokens)
    raise ValueError(f"aggregation must be 'token', 'sequence' or 'constant', got {how!r}")


def kl_k3(new_logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(new || ref): unbiased, always >= 0."""
    d = ref_logp - new_logp
    return torch.exp(d) - d - 1


def policy_loss(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    ratio_level: Literal["token", "sequence"] = "token",
    aggregation: Aggregation = "token",
    max_tokens: int | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    behavior_logp: torch.Tensor | None = None,
    tis_cap: float = 2.0,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate of the GRPO family; returns (loss, metrics).

    ``advantages`` is ``[B]`` (one per sequence; broadcast over its tokens) or ``[B, T]`` (per token,
    e.g. on-policy distillation's teacher-minus-student)."""
    mask = mask.to(new_logp.dtype)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    log_ratio = new_logp - old_logp
    if ratio_level == "sequence":
        # GSPO-token: s_t = sg[s] · π(y_t) / sg[π(y_t)], s the sequence's geometric-mean ratio; the
        # value is s for every token, the gradient is s · ∇log π(y_t)
        seq = masked_mean(log_ratio, mask, dim=1).detach()
        log_ratio = seq[:, None] + new_logp - new_logp.detach()
    elif ratio_level != "token":
        raise ValueError(f"ratio_level must be 'token' or 'sequence', got {ratio_level!r}")
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if behavior_logp is not None:
        weight = torch.exp(old_logp - behavior_logp).clamp(max=tis_cap).detach()
        per_token = per_token * weight
    kl = torch.zeros((), dtype=new_logp.dtype)
    if ref_logp is not None:
        kl_tok = kl_k3(new_logp, ref_logp)
        kl = masked_mean(kl_tok, mask)
        if beta:
            per_token = per_token + beta * kl_tok
    loss = aggregate(per_token, mask, aggregation, max_tokens, num_tokens=num_tokens, num_seqs=num_seqs)
    with torch.no_grad():
        is_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))
        metrics = {
            "clip_fraction": float(masked_mean(is_clipped.to(mask.dtype), mask)),
            "kl": float(kl),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
    return loss, metrics


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to ``max_tokens - buffer``, then linearly down to -1 at
    ``max_tokens`` (added to the reward)."""
    start = max_tokens - buffer
    return -((lengths.float() - start).clamp(min=0) / max(buffer, 1)).clamp(max=1.0)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per token over the masked (assistant) tokens."""
    return -masked_mean(logp, mask.to(logp.dtype))


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO on sequence log-probabilities ``[B]``: ``-log σ(β((πc − rc) − (πr − rr)))``."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(beta * margin).mean()
    m = margin.detach()
    return loss, {"margin": float(m.mean()), "accuracy": float((m > 0).float().mean())}


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Reward-model loss on scalar scores ``[B]``: ``-log σ(r_chosen − r_rejected)``."""
    diff = chosen - rejected
    d = diff.detach()
    return -F.logsigmoid(diff).mean(), {"accuracy": float((d > 0).float().mean()), "margin": float(d.mean())}


def distill_advantages(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """On-policy distillation's per-token advantage: the stop-gradient reverse-KL term
    ``log π_teacher(y_t) − log π_student(y_t)`` (positive where the teacher likes the token more)."""
    return (teacher_logp - student_logp).detach()


def topk_reverse_kl(student_top: torch.Tensor, student_rest: torch.Tensor, teacher_top: torch.Tensor,
                    eps: float = 1e-10) -> torch.Tensor:
    """Per-position reverse KL ``KL(π_s ‖ π_t)`` over the teacher's top-k tokens plus one bucket for every
    other token: ``Σ_k π_s(v_k)(log π_s(v_k) − log π_t(v_k)) + π_s(rest)(log π_s(rest) − log π_t(rest))``
    with ``π_t(rest) = 1 − Σ_k π_t(v_k)``. ``student_top`` ``[..., k]``: the student's log-probs of the
    teacher's top-k ids (differentiable), ``student_rest`` ``[...]``: the log of the student's mass on every
    other id (``-inf`` when the top-k is the whole vocabulary), ``teacher_top`` ``[..., k]``. With k = V it
    is the exact KL; with k < V the KL between the two distributions coarsened to k + 1 outcomes (a lower
    bound of the full one), which pushes the student's mass onto the teacher's likely tokens."""
    kl = (student_top.exp() * (student_top - teacher_top)).sum(-1)
    t_rest = torch.log((1 - teacher_top.exp().sum(-1)).clamp(min=eps))
    finite = torch.isfinite(student_rest)
    safe = torch.where(finite, student_rest, torch.zeros_like(student_rest))   # no NaN gradient through -inf
    rest_term = safe.exp() * (safe - t_rest)
    return kl + torch.where(finite, rest_term, torch.zeros_like(rest_term))


def ratio_band_mask(train_logp: torch.Tensor, engine_logp: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """1.0 where the trainer/engine probability ratio ``exp(train − engine)`` of a sampled token lies
    in ``[low, high]``, else 0.0: tokens the engine sampled with numerics too far from the trainer's
    are masked out of the loss."""
    ratio = torch.exp(train_logp - engine_logp)
    return ((ratio >= low) & (ratio <= high)).to(train_logp.dtype)
