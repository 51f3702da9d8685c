"""On-policy distillation from one teacher or many (MOPD), and off-policy distillation as its baseline: two
advantage functions for the one RL loop (``rl.py``).

``mode: on_policy`` — the student samples ``group_size`` completions of ``prompts_per_step`` problems from a
mixture of envs; each trajectory is routed by its env/domain to its teacher (``teachers: {domain or env:
model}``), which scores the student's exact tokens (every assistant turn of a multi-turn episode: the same
token sequence). The per-token advantage is ``log π_teacher(y_t) − log π_student(y_t)`` with the student's
log-prob at sampling time (stop-gradient), plus ``alpha`` times the outcome reward's group-normalized
advantage (``alpha: 0`` is pure distillation). Tokens whose trainer/sampler probability ratio leaves
``ratio_band`` are masked (an engine such as vLLM samples with slightly different numerics). With ``kl_topk:
k`` the loss adds the exact reverse KL at every position the student visited, over the teacher's k likeliest
tokens plus one bucket for all others (one teacher pass returns them; k ≥ vocabulary is the full KL), in
place of the sampled per-token term (hf and vllm teachers; vllm needs ``max_logprobs ≥ k``).

``mode: off_policy`` — the teachers sample the same number of completions of the same problems and the
student learns them (advantage 1 on every teacher token: with 1 × 1 updates exactly SFT on teacher samples;
no verifier filtering, which would be rejection sampling). With ``data: PATH`` the teachers' samples come from
disk instead (an ``evalgym synth`` dataset's ``sft`` split, JSONL or parquet chat rows) and the student learns
them as SFT (the checkpoint's trainer is ``sft``); no teacher is loaded.

Logged per domain: ``reverse_kl/<domain>`` (mean over the student's tokens of log π_s − log π_t, a sampled
estimate of KL(π_s ‖ π_t)), ``score_gap/<domain>`` (the teacher's verifier score on probe problems of the
domain, measured once at the start, minus the student's reward this step), ``masked_frac/<domain>`` and
``reward/<domain>``; ``teacher_kl`` is the overall reverse KL.

    evalgym train distill --config mopd.yaml \\
        teachers='{math: runs/expert-math/step_000040, countdown: runs/expert-cd/step_000040}'
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from evalgym.errors import EvalgymError
from evalgym.teachers import Router, build_router, check_compatible
from evalgym.trainers.batch import EpisodeTokens, Row, episode_tokens
from evalgym.trainers.config import RLConfig
from evalgym.trainers.losses import group_advantages
from evalgym.trainers.rl import StudentSampler, rollout_stats, sampling_of, short_env, train_rl


class DistillConfig(RLConfig):
    teachers: dict[str, str] = {}       # domain ("math"), env id or short env name -> teacher model
    unrouted: Literal["error", "skip", "default"] = "error"
    default_teacher: str | None = None
    teacher_backend: Literal["hf", "vllm", "openai"] = "hf"
    teacher_kwargs: dict[str, Any] = {}  # passed to the teacher backend (e.g. base_url for openai)
    mode: Literal["on_policy", "off_policy"] = "on_policy"
    alpha: float = Field(0.0, ge=0)     # weight of the outcome advantage mixed into the per-token one
    ratio_band: tuple[float, float] | None = (0.5, 2.0)
    tempered_logprobs: bool = False   # the student's untempered log-probs against the untempered teacher's
    # 0: the per-token advantage is the sampled term log π_t(y_t) − log π_s(y_t); k > 0: at every position the
    # student sampled, the exact reverse KL over the teacher's k likeliest tokens plus one bucket for the rest
    # (k ≥ vocabulary: the full KL), needs an hf or vllm teacher
    kl_topk: int = Field(0, ge=0)
    group_size: int = Field(4, ge=1)
    probe_prompts: int = Field(16, ge=0)   # per domain, for the teacher's score (score_gap); 0: off
    lr: float = Field(1e-4, gt=0)
    save_every: int = Field(25, ge=1)
    # off_policy only: the teachers' samples already made (an `evalgym synth` folder's sft split, JSONL or
    # parquet chat rows) instead of sampling the teachers here; the student learns them as SFT, a batch of
    # prompts_per_step x group_size rows a step, and no teacher is loaded
    data: str | None = None

    @model_validator(mode="after")
    def _mode_fields(self) -> DistillConfig:
        if self.mode == "off_policy":   # fields only the on-policy objective reads: refused, never ignored
            for name in ("alpha", "kl_topk"):
                if getattr(self, name):
                    raise ValueError(f"{name}: {getattr(self, name)} is an on-policy setting; mode is off_policy")
        elif self.data is not None:
            raise ValueError(f"data: {self.data!r} is a set of teacher samples made beforehand, i.e. off-policy "
                             "distillation; on-policy distillation scores the student's own samples (set mode: "
                             "off_policy, or drop data)")
        return self


def probe_teacher_scores(cfg: DistillConfig, router: Router, envs: dict[str, Any], sizes: dict[str, int]) -> dict[str, float]:
    """Each domain's teacher's mean verifier reward on ``probe_prompts`` problems of that domain (drawn
    from the mixture with a seed of their own), sampled like the student's rollouts."""
    from evalgym.rollouts import collect_many

    if cfg.probe_prompts <= 0:
        return {}
    rng = random.Random(cfg.seed * 7919 + 17)
    by_domain: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name in (n for n, w in cfg.envs.items() if w > 0):
        dom = envs[name].source.problem(0).domain
        by_domain[dom].extend((name, rng.randrange(sizes[name])) for _ in range(cfg.probe_prompts))
    scores: dict[str, float] = {}
    for dom, items in by_domain.items():
        items = rng.sample(items, min(cfg.probe_prompts, len(items)))
        teacher = router.route(envs[items[0][0]].source.problem(items[0][1]))
        if teacher is not None:
            res = collect_many(teacher.policy, [(envs[n], i) for n, i in items], n=1, sampling=sampling_of(cfg),
                               seed=cfg.seed + 99991)
            scores[dom] = res.mean_reward()
    return scores


def _scored(ep: EpisodeTokens) -> tuple[list[int], list[int]]:
    """(prompt ids, everything after) — what a teacher scores; its values line up with ``ids[p:]``."""
    p = ep.first_sampled
    return list(ep.ids[:p]), list(ep.ids[p:])


class Distill:
    name = "distill"

    def __init__(self, cfg: DistillConfig, router: Router, teacher_scores: dict[str, float], routes: dict[str, Any]):
        self.cfg, self.router, self.teacher_scores, self.routes = cfg, router, teacher_scores, routes
        self.sampler = StudentSampler(cfg)

    def sample(self, trainer: Any, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        if self.cfg.mode == "on_policy":
            return self.sampler.collect(trainer, items, seed, step)
        return self._teacher_rollout(items, seed, step)

    def _teacher_rollout(self, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        """Off-policy: each problem sampled by its own teacher; one Rollout in the items' order."""
        from evalgym.rollouts import Rollout, RolloutStats, collect_many

        by_teacher: dict[int, list[int]] = defaultdict(list)
        teacher_of: dict[int, Any] = {}
        skipped: list[int] = []
        for k, (env, i) in enumerate(items):
            t = self.router.route(env.source.problem(i))
            if t is None:
                skipped.append(k)
                continue
            by_teacher[id(t)].append(k)
            teacher_of[id(t)] = t
        groups: dict[int, Any] = {}
        stats = RolloutStats()
        for tid, ks in by_teacher.items():
            res = collect_many(teacher_of[tid].policy, [items[k] for k in ks], n=self.cfg.group_size,
                               sampling=sampling_of(self.cfg), seed=seed, policy_step=step)
            groups.update(zip(ks, res.groups))
            for env_id, d in res.stats.per_env.items():
                agg = stats.per_env.setdefault(env_id, {"trajectories": 0, "reward_sum": 0.0, "correct": 0})
                for key in ("trajectories", "reward_sum", "correct"):
                    agg[key] += d[key]
        for d in stats.per_env.values():
            d["mean_reward"] = d["reward_sum"] / max(d["trajectories"], 1)
        out = Rollout(groups=[groups[k] for k in sorted(groups)], stats=stats)
        out.skipped = len(skipped)   # type: ignore[attr-defined]
        return out

    def rows(self, trainer: Any, rollout: Any, valid: list[list[bool]]) -> tuple[list[Row], dict[str, float]]:
        stats = rollout_stats(rollout)
        if self.cfg.mode == "off_policy":
            rows = []
            for gi, g in enumerate(rollout.groups):
                for t in g.trajectories:   # the teacher's tokens, learned as they are (SFT)
                    ep = episode_tokens(t)
                    rows.append(Row(EpisodeTokens(ep.ids, ep.sampled, ep.logprobs, False), advantage=1.0, group=gi,
                                    labels={"env": short_env(g.problem.env_id), "domain": g.problem.domain}))
            stats["teacher_reward"] = stats.pop("reward")
            for d in {g.problem.domain for g in rollout.groups}:
                rs = [t.reward for g in rollout.groups if g.problem.domain == d for t in g.trajectories]
                stats[f"teacher_reward/{d}"] = sum(rs) / len(rs)
            stats["skipped_frac"] = getattr(rollout, "skipped", 0) / max(self.cfg.prompts_per_step, 1)
            return rows, stats
        return self._on_policy_rows(rollout, valid, stats)

    def _on_policy_rows(self, rollout: Any, valid: list[list[bool]], stats: dict[str, float]) -> tuple[list[Row], dict[str, float]]:
        cfg = self.cfg
        rows: list[Row] = []
        teachers: list[Any] = []
        skipped = 0
        for gi, g in enumerate(rollout.groups):
            teacher = self.router.route(g.problem)
            r = torch.tensor([t.reward for t in g.trajectories], dtype=torch.float32)
            outcome = group_advantages(r[None])[0] if cfg.alpha else torch.zeros_like(r)
            for ti, t in enumerate(g.trajectories):
                ep = episode_tokens(t)
                use = teacher is not None and valid[gi][ti] and ep.num_sampled > 0
                skipped += teacher is None
                rows.append(Row(ep, advantage=cfg.alpha * float(outcome[ti]), group=gi, train=use,
                                labels={"env": short_env(g.problem.env_id), "domain": g.problem.domain}))
                teachers.append(teacher if use else None)
        by_teacher: dict[int, list[int]] = defaultdict(list)
        for b, t in enumerate(teachers):
            if t is not None:
                by_teacher[id(t)].append(b)
        for idx in by_teacher.values():
            teacher = teachers[idx[0]]
            reqs = [_scored(rows[b].episode) for b in idx]
            if cfg.kl_topk:   # one teacher pass gives its top k and the sampled tokens' log-probs
                for b, (ids, lps, own) in zip(idx, teacher.topk(reqs, cfg.kl_topk)):
                    p = rows[b].episode.first_sampled
                    rows[b].teacher_logp = [0.0] * p + list(own)
                    rows[b].teacher_top_ids = [[0] * len(ids[0])] * p + ids
                    rows[b].teacher_top_logp = [[0.0] * len(ids[0])] * p + lps
            else:
                for b, lp in zip(idx, teacher.logprobs(reqs)):
                    rows[b].teacher_logp = [0.0] * rows[b].episode.first_sampled + list(lp)
        stats["skipped_frac"] = skipped / max(len(rows), 1)
        for d in {g.problem.domain for g in rollout.groups}:
            rs = [t.reward for g in rollout.groups if g.problem.domain == d for t in g.trajectories]
            stats[f"reward/{d}"] = sum(rs) / len(rs)
            if d in self.teacher_scores:
                stats[f"score_gap/{d}"] = self.teacher_scores[d] - stats[f"reward/{d}"]
        return rows, stats

    def meta(self) -> dict[str, Any]:
        return {"trainer": "distill", "mode": self.cfg.mode, "routes": self.routes,
                "teacher_scores": self.teacher_scores}

    def close(self) -> None:
        self.router.close()
        self.sampler.close()


def _distill_from_data(cfg: DistillConfig, *, progress: bool, after_save: Any) -> dict[str, Any]:
    """Off-policy distillation from teacher samples on disk: SFT on those rows (the same objective as
    ``mode: off_policy`` sampling the teachers itself), with this config's shared training fields."""
    from evalgym.trainers.config import TrainConfig
    from evalgym.trainers.sft import SFTConfig, train_sft

    shared = {k: getattr(cfg, k) for k in TrainConfig.model_fields}
    sft = SFTConfig(**shared, data=cfg.data, batch_size=cfg.prompts_per_step * cfg.group_size,
                    max_len=max(512, 4 * cfg.max_tokens))
    return train_sft(sft, progress=progress, after_save=after_save)


def train_distill(cfg: DistillConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    from evalgym.trainers.rl import mixture_setup
    from evalgym.trainers.sft import tokenizer_of

    if cfg.data is not None:
        return _distill_from_data(cfg, progress=progress, after_save=after_save)
    if not cfg.teachers and not cfg.default_teacher:
        raise EvalgymError("distill.teachers: name at least one teacher ({domain or env: model})")
    envs, sizes, _world, _rank = mixture_setup(cfg, "distill")
    router = build_router(cfg.teachers, unrouted=cfg.unrouted, default_teacher=cfg.default_teacher,
                          backend=cfg.teacher_backend, backend_kwargs=cfg.teacher_kwargs)
    try:
        student_tok = tokenizer_of(cfg.model)
        check_compatible(student_tok, router.teachers(), student_name=cfg.model)
        if cfg.kl_topk and cfg.mode == "on_policy":
            for t in router.teachers():
                if not t.gives_topk:
                    raise EvalgymError(f"distill.kl_topk: teacher {t.name} ({cfg.teacher_backend} backend) gives no "
                                       "top-k logprobs; use an hf or vllm teacher, or kl_topk: 0 (the sampled "
                                       "per-token KL)")
        routes = {}
        for name, env in envs.items():   # an unroutable env fails now (unrouted: error), not mid-run
            t = router.route(env.source.problem(0))
            routes[name] = t.name if t is not None else None
        scores = probe_teacher_scores(cfg, router, envs, sizes)
    except BaseException:
        router.close()
        raise
    return train_rl(cfg, Distill(cfg, router, scores, routes), progress=progress, after_save=after_save,
                    tokenizer=student_tok)
