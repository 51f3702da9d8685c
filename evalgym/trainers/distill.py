"""On-policy distillation from one teacher or many (MOPD), and off-policy distillation as its baseline.

``mode: on_policy`` — each step the student samples ``group_size`` completions of
``prompts_per_step`` problems from a mixture of envs; each trajectory is routed by its env/domain to
its teacher (``teachers: {domain or env: model}``), which scores the student's exact tokens; the
per-token advantage is the stop-gradient reverse-KL term ``log π_teacher(y_t) − log π_student(y_t)``,
plus ``alpha`` times the outcome reward's group-normalized advantage (``alpha: 0`` is pure
distillation). Tokens whose trainer/engine probability ratio ``π_train(y_t) / π_engine(y_t)`` falls
outside ``ratio_band`` are masked (an engine such as vLLM samples with slightly different numerics).
With ``kl_topk: k`` the sampled per-token term is replaced by the exact reverse KL at every position
the student visited, over the teacher's k likeliest tokens plus one bucket for all others (one
teacher pass returns them; k ≥ vocabulary is the full KL): the same objective, with the sampling noise
of each position's term removed (hf and vllm teachers; vllm needs ``max_logprobs ≥ k``).

``mode: off_policy`` — the teachers sample the same number of completions of the same problems and
the student is fine-tuned on them (SFT on teacher samples; no verifier filtering, which would be
rejection sampling).

Logged per domain: ``reverse_kl/<domain>`` (mean over the student's tokens of log π_s − log π_t, a
sampled estimate of KL(π_s ‖ π_t)), ``score_gap/<domain>`` (the teacher's verifier score on probe
problems of the domain, measured once at the start, minus the student's reward this step),
``masked_frac/<domain>`` and ``reward/<domain>``; ``kl`` is the overall reverse KL.

    evalgym train distill --config mopd.yaml \\
        teachers='{math: runs/expert-math/step_000040, countdown: runs/expert-cd/step_000040}'
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any, Literal

import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.teachers import Router, build_router, check_compatible
from evalgym.trainers.config import TrainConfig
from evalgym.trainers.grpo import mixture_setup, pick_problems
from evalgym.trainers.losses import (distill_advantages, group_advantages, masked_mean, policy_loss,
                                     ratio_band_mask, sft_loss, topk_reverse_kl)
from evalgym.trainers.loop import LoopState, run


class DistillConfig(TrainConfig):
    envs: dict[str, float] = {"arithmetic": 1.0}     # env id -> mixture weight
    env_kwargs: dict[str, dict[str, Any]] = {}
    teachers: dict[str, str] = {}       # domain ("math"), env id or short env name -> teacher model
    unrouted: Literal["error", "skip", "default"] = "error"
    default_teacher: str | None = None
    teacher_backend: Literal["hf", "vllm", "openai"] = "hf"
    teacher_kwargs: dict[str, Any] = {}  # passed to the teacher backend (e.g. base_url for openai)
    mode: Literal["on_policy", "off_policy"] = "on_policy"
    alpha: float = 0.0                  # weight of the outcome advantage mixed into the per-token one
    ratio_band: tuple[float, float] = (0.5, 2.0)
    # 0: the per-token advantage is the sampled term log π_t(y_t) − log π_s(y_t); k > 0: at every
    # position the student sampled, the exact reverse KL over the teacher's k likeliest tokens plus
    # one bucket for the rest (k ≥ vocabulary: the full KL), needs an hf or vllm teacher
    kl_topk: int = 0
    prompts_per_step: int = 8
    group_size: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    backend: Literal["hf", "vllm"] = "hf"   # the student's sampling engine
    probe_prompts: int = 16             # per domain, for the teacher's score (score_gap); 0: off
    lr: float = 1e-4
    save_every: int = 25


def _sequences(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt+completion rows → padded ids, attention and a completion mask aligned with the
    next-token logprobs (position t predicts token t+1)."""
    L = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), L), dtype=torch.long)
    mask = torch.zeros((len(rows), L - 1))
    for b, (p, c) in enumerate(rows):
        ids[b, :len(p) + len(c)] = torch.tensor(p + c)
        attn[b, :len(p) + len(c)] = 1
        mask[b, len(p) - 1:len(p) - 1 + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attn, "mask": mask}


def _aligned(rows: list[tuple[list[int], list[int]]], values: list[list[float]], width: int) -> torch.Tensor:
    """Per-completion-token values placed where the mask of ``_sequences`` is 1."""
    out = torch.zeros((len(rows), width))
    for b, ((p, c), v) in enumerate(zip(rows, values)):
        if v:
            out[b, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(v, dtype=torch.float32)
    return out


def _aligned_topk(rows: list[tuple[list[int], list[int]]], top: list[tuple[list[list[int]], list[list[float]]]],
                  width: int) -> dict[str, torch.Tensor]:
    """The teachers' top-k ids and logprobs placed like ``_aligned``; other positions hold a uniform
    distribution over ids 0..k-1 (masked out of the loss, but finite)."""
    k = len(top[0][0][0])
    ids = torch.arange(k).expand(len(rows), width, k).clone()
    lps = torch.full((len(rows), width, k), -math.log(k))
    for b, ((p, c), (ti, tl)) in enumerate(zip(rows, top)):
        if c:
            ids[b, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(ti)
            lps[b, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(tl, dtype=torch.float32)
    return {"teacher_top_ids": ids, "teacher_top_logp": lps}


def probe_teacher_scores(cfg: DistillConfig, router: Router, envs: dict[str, Any], sizes: dict[str, int],
                         sampling: SamplingParams) -> dict[str, float]:
    """Each domain's teacher's mean verifier reward on ``probe_prompts`` problems of that domain
    (drawn from the mixture with a seed of their own), sampled like the student's rollouts."""
    from evalgym.rollouts import collect_many

    if cfg.probe_prompts <= 0:
        return {}
    rng = random.Random(cfg.seed * 7919 + 17)
    names = [n for n, w in cfg.envs.items() if w > 0]
    by_domain: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name in names:
        dom = envs[name].source.problem(0).domain
        k = cfg.probe_prompts
        by_domain[dom].extend((name, rng.randrange(sizes[name])) for _ in range(k))
    scores: dict[str, float] = {}
    for dom, items in by_domain.items():
        items = rng.sample(items, min(cfg.probe_prompts, len(items)))
        teacher = router.route(envs[items[0][0]].source.problem(items[0][1]))
        if teacher is None:
            continue
        res = collect_many(teacher.policy, [(envs[n], i) for n, i in items], n=1, sampling=sampling,
                           seed=cfg.seed + 99991)
        scores[dom] = res.mean_reward()
    return scores


def train_distill(cfg: DistillConfig, *, progress: bool = True) -> dict[str, Any]:
    from evalgym.envs.registry import resolve_id
    from evalgym.policies.hf import HFPolicy
    from evalgym.rollouts import collect_many
    from evalgym.trainers.sft import _tokenizer_of

    lo, hi = cfg.ratio_band
    if not 0 < lo <= 1 <= hi:
        raise EvalgymError(f"distill.ratio_band must satisfy 0 < low <= 1 <= high, got {cfg.ratio_band}")
    if not cfg.teachers and not cfg.default_teacher:
        raise EvalgymError("distill.teachers: name at least one teacher ({domain or env: model})")
    envs, sizes, world, rank = mixture_setup(cfg, "distill")

    router = build_router(cfg.teachers, unrouted=cfg.unrouted, default_teacher=cfg.default_teacher,
                          backend=cfg.teacher_backend, backend_kwargs=cfg.teacher_kwargs)
    student_tok = _tokenizer_of(cfg.model)
    check_compatible(student_tok, router.teachers(), student_name=cfg.model)
    if cfg.kl_topk and cfg.mode == "on_policy":
        for t in router.teachers():
            if not t.gives_topk:
                raise EvalgymError(f"distill.kl_topk: teacher {t.name} ({cfg.teacher_backend} backend) gives no top-k "
                                   "logprobs; use an hf or vllm teacher, or kl_topk: 0 (the sampled per-token KL)")
    routes = {}
    for name, env in envs.items():   # an unroutable env fails now (unrouted: error), not mid-run
        t = router.route(env.source.problem(0))
        routes[name] = t.name if t is not None else None
    sampling = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    teacher_scores = probe_teacher_scores(cfg, router, envs, sizes, sampling) if cfg.mode == "on_policy" else {}
    holder: dict[str, Any] = {}

    def student_policy(state: LoopState) -> Any:
        if cfg.backend == "hf":
            return HFPolicy.from_model(state.model, state.tokenizer, name=cfg.model)
        if "engine" not in holder:
            from evalgym.policies.vllm import VLLMPolicy
            holder["engine"] = VLLMPolicy(cfg.model, max_model_len=2048)
        holder["engine"].load_weights(state.model.state_dict())
        return holder["engine"]

    def make_batch(step: int, micro: int, state: LoopState) -> dict[str, Any]:
        k = step * cfg.grad_accum + micro
        items = pick_problems(cfg, sizes, k)[rank::world]   # type: ignore[arg-type]
        seed = cfg.seed * 1_000_003 + k
        if cfg.mode == "off_policy":
            return off_policy_batch(items, seed, step)
        model = state.model
        was_training = model.training
        model.eval()
        result = collect_many(student_policy(state), [(envs[n], i) for n, i in items], n=cfg.group_size,
                              sampling=sampling, seed=seed, policy_step=step)
        model.train(was_training)
        return on_policy_batch(result, state.tokenizer.pad_token_id)

    def on_policy_batch(result: Any, pad_id: int) -> dict[str, Any]:
        rewards = torch.tensor([[t.reward for t in g.trajectories] for g in result.groups], dtype=torch.float32)
        outcome = group_advantages(rewards) if cfg.alpha else torch.zeros_like(rewards)
        rows, teachers, adv, domains, rew = [], [], [], [], []
        skipped = 0
        for gi, g in enumerate(result.groups):
            teacher = router.route(g.problem)
            if teacher is None:
                skipped += len(g.trajectories)
                continue
            for ti, t in enumerate(g.trajectories):
                c = t.final.completion
                if not c.token_ids:
                    continue
                rows.append((list(c.prompt_token_ids), list(c.token_ids), list(c.logprobs)))
                teachers.append(teacher)
                adv.append(float(outcome[gi, ti]))
                domains.append(g.problem.domain)
                rew.append(t.reward)
        stats = {"reward": float(rewards.mean()) if rewards.numel() else 0.0,
                 "skipped_frac": skipped / max(1, rewards.numel())}
        if not rows:
            return {"input_ids": None, "stats": stats}
        teacher_lp: list[list[float]] = [[] for _ in rows]
        by_teacher: dict[int, list[int]] = defaultdict(list)
        for b, t in enumerate(teachers):
            by_teacher[id(t)].append(b)
        top: list[tuple[list[list[int]], list[list[float]]]] = [([], []) for _ in rows]
        for idx in by_teacher.values():
            reqs = [(rows[b][0], rows[b][1]) for b in idx]
            if cfg.kl_topk:   # one teacher pass gives its top k and the sampled tokens' logprobs
                for b, (ids, lps, own) in zip(idx, teachers[idx[0]].topk(reqs, cfg.kl_topk)):
                    top[b], teacher_lp[b] = (ids, lps), own
            else:
                for b, lp in zip(idx, teachers[idx[0]].logprobs(reqs)):
                    teacher_lp[b] = lp
        pc = [(p, c) for p, c, _ in rows]
        batch = _sequences(pc, pad_id)
        width = batch["mask"].shape[1]
        if cfg.kl_topk:
            batch.update(_aligned_topk(pc, top, width))
        batch.update(teacher_logp=_aligned(pc, teacher_lp, width),
                     behavior_logp=_aligned(pc, [lp for *_, lp in rows], width),
                     has_behavior=torch.tensor([bool(lp) for *_, lp in rows]),
                     outcome_adv=torch.tensor(adv), domains=domains, rewards=rew, stats=stats)
        return batch

    def off_policy_batch(items: list[tuple[str, int]], seed: int, step: int) -> dict[str, Any]:
        by_teacher: dict[int, list[tuple[str, int]]] = defaultdict(list)
        teacher_of: dict[int, Any] = {}
        skipped = 0
        for name, i in items:
            t = router.route(envs[name].source.problem(i))
            if t is None:
                skipped += cfg.group_size
                continue
            by_teacher[id(t)].append((name, i))
            teacher_of[id(t)] = t
        rows, rew, domains = [], [], []
        for tid, its in by_teacher.items():
            res = collect_many(teacher_of[tid].policy, [(envs[n], i) for n, i in its], n=cfg.group_size,
                               sampling=sampling, seed=seed, policy_step=step)
            for g in res.groups:
                for t in g.trajectories:
                    c = t.final.completion
                    if c.token_ids:
                        rows.append((list(c.prompt_token_ids), list(c.token_ids)))
                        rew.append(t.reward)
                        domains.append(g.problem.domain)
        stats: dict[str, float] = {"teacher_reward": sum(rew) / len(rew) if rew else 0.0,
                                   "skipped_frac": skipped / max(1, len(items) * cfg.group_size)}
        for d in sorted(set(domains)):
            rs = [r for r, dd in zip(rew, domains) if dd == d]
            stats[f"teacher_reward/{d}"] = sum(rs) / len(rs)
        if not rows:
            return {"input_ids": None, "stats": stats}
        return {**_sequences(rows, student_tok.pad_token_id), "stats": stats}

    def loss_fn(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        stats = batch["stats"]
        if batch["input_ids"] is None:
            zero = sum(p.sum() * 0.0 for p in model.parameters())
            return zero, {**stats, "tokens": 0.0}
        dev = next(model.parameters()).device
        ids, attn, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev), batch["mask"].to(dev)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        logp_all = torch.log_softmax(logits, -1)
        new_logp = logp_all.gather(-1, ids[:, 1:, None])[..., 0]
        if cfg.mode == "off_policy":
            return sft_loss(new_logp, mask), {**stats, "tokens": float(mask.sum())}
        student_lp = new_logp.detach()
        teacher_lp = batch["teacher_logp"].to(dev)
        behavior = batch["behavior_logp"].to(dev)
        no_engine_lp = ~batch["has_behavior"].to(dev)[:, None]   # backends without logprobs: nothing to mask
        in_band = torch.maximum(ratio_band_mask(student_lp, behavior, lo, hi), no_engine_lp.to(mask.dtype))
        used = mask * in_band
        outcome = cfg.alpha * batch["outcome_adv"].to(dev)[:, None]
        extra: dict[str, float] = {}
        if cfg.kl_topk:   # the exact (top-k) reverse KL at each visited position, plus the outcome term
            kl_tok = topk_reverse_kl(logp_all, batch["teacher_top_ids"].to(dev), batch["teacher_top_logp"].to(dev))
            loss, m = policy_loss(new_logp, student_lp, outcome * mask, used, aggregation="token")
            loss = loss + masked_mean(kl_tok, used)
            extra["kl_topk"] = float(masked_mean(kl_tok.detach(), mask))
        else:
            adv = distill_advantages(teacher_lp, student_lp) * mask + outcome
            loss, m = policy_loss(new_logp, student_lp, adv, used, aggregation="token")
        rkl = (student_lp - teacher_lp) * mask
        out = {**stats, **extra, "tokens": float(used.sum()), "kl": float(masked_mean(rkl, mask)),
               "masked_frac": float(1 - used.sum() / mask.sum().clamp(min=1)), "clip_fraction": m["clip_fraction"]}
        domains = batch["domains"]
        rewards = torch.tensor(batch["rewards"])
        for d in sorted(set(domains)):
            sel = torch.tensor([x == d for x in domains], device=dev)
            dm = mask[sel]
            out[f"reverse_kl/{d}"] = float(masked_mean(rkl[sel], dm))
            out[f"masked_frac/{d}"] = float(1 - used[sel].sum() / dm.sum().clamp(min=1))
            r = float(rewards[sel.cpu()].mean())
            out[f"reward/{d}"] = r
            if d in teacher_scores:
                out[f"score_gap/{d}"] = teacher_scores[d] - r
        return loss, out

    try:
        return run(cfg, make_batch=make_batch, loss_fn=loss_fn, tokenizer=student_tok,
                   extra_meta={"trainer": "distill", "mode": cfg.mode, "envs": {n: resolve_id(n) for n in envs},
                               "routes": routes, "teacher_scores": teacher_scores},
                   progress=progress)
    finally:
        router.close()
        if "engine" in holder:
            holder["engine"].close()
