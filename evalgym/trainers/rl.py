"""The one RL loop: sample → grade → advantages → ``minibatches × epochs`` clipped policy-gradient updates.

GRPO (``grpo.py``), on-policy distillation and MOPD, off-policy distillation (``distill.py``), RL on a
reward model's score (``grpo.py`` with ``reward_model``) and rejection sampling (``rs_sft.py``) are each an
:class:`Algorithm`: who samples (the student, or the teachers) and how trajectories become advantages
(``Row``s). Everything else is here, once:

1. each step draws ``prompts_per_step`` problems from the env mixture (a pure function of seed and step;
   several processes take their share) and the algorithm samples ``group_size`` trajectories of each;
2. a grade that timed out or crashed is data: its trajectory is masked out of the loss, counted per env
   (``grader_error_frac/<env>``), and the run stops with a clear error naming the env and the first error
   when an env's fraction stays above ``grader_error_max`` for ``grader_error_window`` steps;
3. the algorithm's rows become a ``TrainBatch`` (tokens, loss mask, the sampler's log-probs recorded at
   sampling time, per-token advantages);
4. the batch is split into ``minibatches`` of whole groups (reshuffled each of ``epochs`` passes); each
   makes one optimizer update with the clipped surrogate of ``losses.policy_loss``, the ratio taken
   against the trainer's log-probs at sampling time (``old``: for the first update of an on-policy batch
   exactly the new log-probs detached, so 1 × 1 is the plain on-policy step). The sampler's own log-probs
   correct the sampler/trainer mismatch (``tis_cap``, ``ratio_band``); ``beta`` adds the k3 KL to the
   run's start model. Distillation's per-token advantage adds ``teacher − old``; ``kl_topk`` adds the exact
   top-k reverse KL to the teacher.

Every policy log-prob (new, old, reference, the sampler's) is at ``policy_temperature(cfg)``: the sampling
temperature when ``tempered_logprobs`` (GRPO's default: the loss trains the policy the samples came from),
else 1 (distillation's default).
"""

from __future__ import annotations

import random
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.trainers.batch import Row, minibatch_rows, train_batch
from evalgym.trainers.config import RLConfig
from evalgym.trainers.loop import Trainer, dist_state
from evalgym.trainers.losses import masked_mean, policy_loss, ratio_band_mask, topk_reverse_kl
from evalgym.types import TrainBatch, Trajectory


class Algorithm(Protocol):
    """What an RL trainer supplies to :func:`train_rl`."""

    name: str

    def sample(self, trainer: Trainer, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        """A ``Rollout`` of ``group_size`` trajectories for each (env, index)."""

    def rows(self, trainer: Trainer, rollout: Any, valid: list[list[bool]]) -> tuple[list[Row], dict[str, float]]:
        """The rollout's trajectories as rows with advantages (``valid[g][i]`` False: a grader error, keep it
        out of the loss and out of any baseline), and the batch's own metrics."""

    def meta(self) -> dict[str, Any]:
        """What goes into every checkpoint's meta.json."""

    def close(self) -> None: ...


# -- problems ---------------------------------------------------------------------------------------------


def pick_problems(cfg: RLConfig, sizes: dict[str, int], step: int) -> list[tuple[str, int]]:
    """(env, index) pairs of one step: a pure function of (seed, step)."""
    rng = random.Random(cfg.seed * 1_000_003 + step)
    names = list(cfg.envs)
    chosen = rng.choices(names, weights=[cfg.envs[n] for n in names], k=cfg.prompts_per_step)
    return [(name, rng.randrange(sizes[name])) for name in chosen]


def mixture_setup(cfg: Any, section: str) -> tuple[dict[str, Any], dict[str, int], int, int]:
    """The envs of a mixture trainer's ``envs``/``env_kwargs`` (a bad kwarg names the field), their
    sizes, and this process's (world size, rank), checking ``prompts_per_step`` splits evenly."""
    from evalgym.rollouts import make_env

    envs = {}
    for name in cfg.envs:
        try:
            envs[name] = make_env(name, **dict(cfg.env_kwargs.get(name, {})))
        except (TypeError, ValueError) as e:
            raise EvalgymError(f"{section}.env_kwargs.{name}: {e}") from None
    ps = dist_state()
    world, rank = ps.num_processes, ps.process_index
    if cfg.prompts_per_step % world:
        raise EvalgymError(f"{section}.prompts_per_step {cfg.prompts_per_step} must be divisible by {world} processes")
    return envs, {n: e.source.size for n, e in envs.items()}, world, rank


def short_env(env_id: str) -> str:
    return env_id.split("/")[-1]


# -- grader errors ---------------------------------------------------------------------------------------


def trajectory_error(t: Trajectory) -> str | None:
    """The grader error of an episode (any turn's), or None when every grade ran to a decision."""
    return next((s.verdict.error for s in t.steps if s.verdict.error), None)


class GraderErrorWatch:
    """Counts grader errors per env each step; stops the run when an env's error fraction is above
    ``grader_error_max`` on each of the last ``grader_error_window`` steps."""

    def __init__(self, cfg: RLConfig):
        self.max, self.window = cfg.grader_error_max, cfg.grader_error_window
        self.recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window))
        self.first: dict[str, str] = {}

    def observe(self, rollout: Any) -> tuple[list[list[bool]], dict[str, float]]:
        valid: list[list[bool]] = []
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for g in rollout.groups:
            env = short_env(g.problem.env_id)
            row = []
            for t in g.trajectories:
                err = trajectory_error(t)
                row.append(err is None)
                counts[env][1] += 1
                if err is not None:
                    counts[env][0] += 1
                    self.first.setdefault(env, f"{g.problem.id}: {err}")
            valid.append(row)
        stats = {"grader_errors": float(sum(c[0] for c in counts.values()))}
        for env, (bad, total) in counts.items():
            frac = bad / max(total, 1)
            stats[f"grader_error_frac/{env}"] = frac
            self.recent[env].append(frac)
        return valid, stats

    def check(self, trainer: Trainer) -> None:
        """Every process must call (the decision is taken on the fractions of all of them)."""
        over = [env for env, fr in self.recent.items() if len(fr) == self.window and min(fr) > self.max]
        if trainer.world > 1:
            from accelerate.utils import gather_object
            over = sorted({e for part in gather_object([over]) for e in part})
        if over:
            env = over[0]
            raise EvalgymError(
                f"{trainer.name}: grader errors on {env} above {self.max:.0%} of its samples for {self.window} "
                f"steps in a row (last {list(self.recent[env]) if env in self.recent else '?'}); the first: "
                f"{self.first.get(env, 'on another process')}. Fix the grader (e.g. install the sandbox) or raise "
                "grader_error_max")


# -- sampling helpers ------------------------------------------------------------------------------------


class StudentSampler:
    """The trained model as a rollout engine: ``hf`` samples with the trainer's weights in memory; ``vllm``
    gets the new weights pushed before each step's sampling."""

    def __init__(self, cfg: RLConfig):
        self.cfg = cfg
        self.engine: Any = None
        self.sync_s: float | None = None    # the last weight push into the vllm engine
        self.adapters: Any = None           # LoRA: the folders the engine loads adapters from

    def policy(self, trainer: Trainer) -> Any:
        from evalgym.policies.hf import HFPolicy

        model = trainer.sampling_model()
        if self.cfg.backend == "hf":
            return HFPolicy.from_model(model, trainer.tokenizer, name=self.cfg.model)
        if self.engine is None:
            from evalgym.models import resolve_model
            from evalgym.policies.vllm import VLLMPolicy
            lora = self.cfg.lora
            self.engine = VLLMPolicy(resolve_model(self.cfg.model), max_model_len=2048, enable_lora=lora is not None,
                                     max_lora_rank=lora.r if lora else None, logprobs=sampling_of(self.cfg).logprobs)
        t0 = time.perf_counter()
        if trainer.peft is not None:   # LoRA: the adapter (megabytes) as a LoRARequest; the base stays loaded
            from evalgym.trainers.lora import save_engine_adapter
            self.adapters = trainer.run_dir / ".engine_adapters"
            self.engine.load_adapter(save_engine_adapter(trainer.peft, self.adapters, trainer.step))
        else:
            self.engine.load_weights(model.state_dict())
        self.sync_s = time.perf_counter() - t0
        return self.engine

    def collect(self, trainer: Trainer, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        from evalgym.rollouts import collect_many

        policy = self.policy(trainer)
        model = trainer.sampling_model() if self.cfg.backend == "hf" and not trainer.sharded else None
        was_training = model.training if model is not None else False
        if model is not None:
            model.eval()
        try:
            return collect_many(policy, items, n=self.cfg.group_size, sampling=sampling_of(self.cfg), seed=seed,
                                policy_step=step)
        finally:
            if model is not None:
                model.train(was_training)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.adapters is not None:
            import shutil
            shutil.rmtree(self.adapters, ignore_errors=True)


def policy_temperature(cfg: RLConfig) -> float:
    """The temperature of the policy the loss trains: the sampling temperature with ``tempered_logprobs``
    (greedy sampling: 1), else 1."""
    return cfg.temperature if cfg.tempered_logprobs and cfg.temperature > 0 else 1.0


def sampling_of(cfg: RLConfig) -> SamplingParams:
    """The rollouts' sampling; the engine records each token's log-prob under the distribution the trainer
    trains (``tempered_logprobs``: the sampling distribution; else the model's own)."""
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                          logprobs="sampled" if cfg.tempered_logprobs else "model")


# -- the update ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """A micro-batch: a slice of the batch with the log-probs computed before the updates began."""

    batch: TrainBatch
    old_BT: torch.Tensor | None        # trainer's log-probs at sampling time (None: 1 × 1, new.detach())
    ref_BT: torch.Tensor | None        # the start model's (KL), None when beta is 0
    num_tokens: float                  # the minibatch's loss tokens over all processes / processes
    num_seqs: float
    scale: float = 1.0                 # 0: a stand-in forward that keeps this process in step with the others


def _forward(scorer: Any, b: TrainBatch, dev: torch.device, topk: bool, temperature: float) -> Any:
    return scorer(b.tokens_BL.to(dev), b.attention_BL.to(dev), b.loss_mask_BT.to(dev), share_prompts=True,
                  topk_ids_BTK=b.teacher_top_ids_BTK.to(dev) if topk else None, temperature=temperature)


def _dummy(pad_id: int, like: TrainBatch | None) -> TrainBatch:
    """A one-row batch whose loss is multiplied by 0: a process with nothing to train on still runs the same
    forwards as the others (DDP buffer broadcasts and FSDP all-gathers are collectives)."""
    z = torch.zeros((1, 1))
    k = like.teacher_top_ids_BTK.shape[-1] if like is not None and like.teacher_top_ids_BTK is not None else 0
    return TrainBatch(tokens_BL=torch.full((1, 2), pad_id, dtype=torch.long), attention_BL=torch.ones((1, 2), dtype=torch.long),
                      loss_mask_BT=torch.ones((1, 1)), behavior_logp_BT=z, has_behavior_B=torch.tensor([False]),
                      advantages_BT=z, group_B=torch.tensor([-1]),
                      teacher_logp_BT=z if like is not None and like.teacher_logp_BT is not None else None,
                      teacher_top_ids_BTK=torch.zeros((1, 1, k), dtype=torch.long) if k else None,
                      teacher_top_logp_BTK=torch.full((1, 1, k), -float(k)) if k else None,
                      labels={name: ("",) for name in (like.labels if like is not None else {})})


def _max_over_processes(trainer: Trainer, n: int) -> int:
    if trainer.world == 1:
        return n
    t = trainer.accelerator.reduce(torch.tensor([float(n)], device=trainer.device), reduction="max")
    return int(t.item())


@torch.no_grad()
def logprobs_of(trainer: Trainer, scorer: Any, batch: TrainBatch | None, rows_per_pass: int = 64,
                collective: bool = True, temperature: float = 1.0) -> torch.Tensor | None:
    """``[B, T]`` log-probs of the batch's sampled tokens under ``scorer`` at ``temperature`` (no gradient), in
    row chunks; with ``collective`` every process runs as many passes as the busiest one."""
    size = batch.size if batch is not None else 0
    chunks = [torch.arange(lo, min(lo + rows_per_pass, size)) for lo in range(0, size, rows_per_pass)]
    passes = _max_over_processes(trainer, len(chunks)) if collective else len(chunks)
    parts = []
    for k in range(passes):
        sub = batch.select(chunks[k]) if k < len(chunks) else _dummy(trainer.tokenizer.pad_token_id, batch)
        with trainer.autocast():
            out = _forward(scorer, sub, trainer.device, topk=False, temperature=temperature).float().cpu()
        if k < len(chunks):
            full = torch.zeros((sub.size, batch.loss_mask_BT.shape[1]))
            full[:, :out.shape[1]] = out
            parts.append(full)
    return torch.cat(parts) if parts else None


def _cut(t: torch.Tensor | None, rows: torch.Tensor, width: int) -> torch.Tensor | None:
    return None if t is None else t[rows][:, :width]


def tis_cap_of(cfg: RLConfig) -> float | None:
    """The truncation of the behaviour importance weight: ``tis_cap``, or 2 for asynchronous runs
    (``max_staleness`` >= 1: samples from older weights) unless ``stale_correction`` is off."""
    if cfg.tis_cap:
        return cfg.tis_cap
    return 2.0 if cfg.max_staleness and cfg.stale_correction else None


def make_loss(cfg: RLConfig, topk: bool) -> Callable[[Any, Slice], tuple[torch.Tensor, dict[str, float]]]:
    cap = tis_cap_of(cfg)
    temperature = policy_temperature(cfg)

    def loss_fn(module: Any, s: Slice) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = _loss(module, s)
        return loss * s.scale, metrics

    def _loss(module: Any, s: Slice) -> tuple[torch.Tensor, dict[str, float]]:
        b = s.batch
        dev = next(module.parameters()).device
        out = _forward(module, b, dev, topk, temperature)
        new, top, rest = out if topk else (out, None, None)
        mask = b.loss_mask_BT.to(dev)
        old = s.old_BT.to(dev) if s.old_BT is not None else new.detach()
        behavior = b.behavior_logp_BT.to(dev)
        has = b.has_behavior_B.to(dev)[:, None]
        used = mask
        if cfg.ratio_band is not None:   # rows without sampler log-probs have nothing to compare
            band = ratio_band_mask(old, behavior, *cfg.ratio_band)
            used = mask * torch.where(has, band, torch.ones_like(band))
        adv = b.advantages_BT.to(dev)
        teacher = b.teacher_logp_BT.to(dev) if b.teacher_logp_BT is not None else None
        if teacher is not None:
            adv = adv + (teacher - old) * mask
        tis_behavior = torch.where(has, behavior, old) if cap else None
        loss, m = policy_loss(new, old, adv, used, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                              ratio_level=cfg.ratio_level, aggregation=cfg.aggregation, max_tokens=cfg.max_tokens,
                              ref_logp=s.ref_BT.to(dev) if s.ref_BT is not None else None, beta=cfg.beta,
                              behavior_logp=tis_behavior, tis_cap=cap or 2.0,
                              num_tokens=s.num_tokens, num_seqs=s.num_seqs)
        metrics = {**m, "tokens": float(used.sum()), "masked_frac": float(1 - used.sum() / mask.sum().clamp(min=1)),
                   "nll": float(-masked_mean(new.detach(), used))}
        if tis_behavior is not None:   # how far the sampler's policy was from the one the ratio is taken against
            metrics["behavior_weight"] = float(masked_mean(torch.exp(old - tis_behavior).clamp(max=cap), used))
        if topk:
            kl_tok = topk_reverse_kl(top, rest, b.teacher_top_logp_BTK.to(dev))
            loss = loss + (kl_tok * used).sum() / s.num_tokens
            metrics["kl_topk"] = float(masked_mean(kl_tok.detach(), mask))
        if teacher is not None:
            rkl = (old - teacher) * mask
            metrics["teacher_kl"] = float(masked_mean(rkl, mask))
            for d in sorted(set(b.labels.get("domain", ())) - {""}):
                sel = torch.tensor([x == d for x in b.labels["domain"]], device=dev)
                metrics[f"reverse_kl/{d}"] = float(masked_mean(rkl[sel], mask[sel]))
                metrics[f"masked_frac/{d}"] = float(1 - used[sel].sum() / mask[sel].sum().clamp(min=1))
        return loss, metrics
    return loss_fn


def _global(trainer: Trainer, value: float) -> float:
    if trainer.world == 1:
        return value
    t = trainer.accelerator.reduce(torch.tensor([value], device=trainer.device), reduction="sum")
    return float(t.item())


def update_on_batch(trainer: Trainer, cfg: RLConfig, batch: TrainBatch | None, ref: Any, step: int) -> dict[str, float]:
    """``minibatches × epochs`` optimizer updates on one rollout batch (the same number on every process: a
    process whose share is empty contributes a zero loss; an update with no token anywhere is skipped)."""
    topk = batch is not None and batch.teacher_top_ids_BTK is not None
    loss_fn = make_loss(cfg, topk)
    temperature = policy_temperature(cfg)
    old = logprobs_of(trainer, trainer.module, batch, temperature=temperature) if cfg.updates_per_step > 1 else None
    # a LoRA run's reference is the sharded module itself under FSDP: its forwards are collectives
    shared_ref = trainer.sharded and trainer.peft is not None
    ref_lp = (logprobs_of(trainer, ref, batch, collective=shared_ref, temperature=temperature)
              if ref is not None and (batch is not None or shared_ref) else None)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step) if cfg.minibatches > 1 else None
    pad = trainer.tokenizer.pad_token_id
    logs: dict[str, float] = {}
    updates = 0
    for _epoch in range(cfg.epochs):
        parts = minibatch_rows(batch, cfg.minibatches, gen) if batch is not None else []
        parts = parts + [torch.zeros(0, dtype=torch.long)] * (cfg.minibatches - len(parts))
        for rows in parts:
            local_tokens = float(batch.loss_mask_BT[rows].sum()) if len(rows) else 0.0
            total = _global(trainer, local_tokens)
            if total == 0:   # nothing to learn anywhere; the schedule still counts the planned update
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                    trainer.scheduler.step()
                continue
            seqs = _global(trainer, float(len(rows)))
            chunks = list(torch.tensor_split(rows, min(cfg.grad_accum, len(rows)))) if len(rows) else []
            micros: list[Slice] = []
            for chunk in chunks:
                micro = batch.select(chunk)
                width = micro.loss_mask_BT.shape[1]
                micros.append(Slice(micro, _cut(old, chunk, width), _cut(ref_lp, chunk, width),
                                    total / trainer.world, seqs / trainer.world))
            for _ in range(_max_over_processes(trainer, len(micros)) - len(micros)):
                micros.append(Slice(_dummy(pad, batch), None, None, 1.0, 1.0, scale=0.0))
            m = trainer.update(micros, loss_fn, weights=[s.scale for s in micros])
            updates += 1
            for k, v in m.items():
                logs[k] = logs.get(k, 0.0) + v
    out = {k: v / max(updates, 1) for k, v in logs.items() if k != "tokens"}
    out["tokens"] = float(batch.loss_mask_BT.sum()) if batch is not None else 0.0
    out["updates"] = float(updates)
    return out


# -- the loop --------------------------------------------------------------------------------------------


def train_rl(cfg: RLConfig, algorithm: Algorithm, *, progress: bool = True,
             after_save: Callable[[Any], None] | None = None, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Train ``cfg.steps`` rollout batches with ``algorithm``; returns the last metrics and checkpoint."""
    from evalgym.envs.registry import resolve_id

    envs, sizes, world, rank = mixture_setup(cfg, algorithm.name)
    trainer = Trainer(cfg, name=algorithm.name, model=model, tokenizer=tokenizer,
                      updates_per_step=cfg.updates_per_step, progress=progress, after_save=after_save,
                      extra_meta={"envs": {n: resolve_id(n) for n in envs}, **algorithm.meta()})
    ref = trainer.reference() if cfg.beta else None
    watch = GraderErrorWatch(cfg)
    rollouts = None
    try:
        if cfg.max_staleness is not None:   # engines in their own processes (evalgym/trainers/async_rl.py)
            from evalgym.trainers.async_rl import AsyncRollouts
            rollouts = AsyncRollouts(cfg, trainer, envs, sizes, algorithm)
        while trainer.step < cfg.steps:
            step = trainer.step
            items = pick_problems(cfg, sizes, step)[rank::world]
            t0 = time.perf_counter()
            if rollouts is not None:
                rollout, async_stats = rollouts.take(step)
            else:
                rollout, async_stats = algorithm.sample(trainer, [(envs[n], i) for n, i in items],
                                                        cfg.seed * 1_000_003 + step, step), {}
                sync_s = getattr(getattr(algorithm, "sampler", None), "sync_s", None)
                if sync_s is not None:
                    async_stats["engine_sync_s"] = sync_s
            t1 = time.perf_counter()
            valid, err_stats = watch.observe(rollout)
            rows, stats = algorithm.rows(trainer, rollout, valid)
            if trainer.tracking:   # the step's sampled completions as a table (main process's share)
                from evalgym.trainers.tracking import completion_rows
                trainer.tracking.table("completions", completion_rows(rollout, rows), step + 1)
            trainer.record_problems(g.problem for g in rollout.groups)
            batch = train_batch(rows, trainer.tokenizer.pad_token_id, stats)
            logs = update_on_batch(trainer, cfg, batch, ref, step)
            t2 = time.perf_counter()
            if rollouts is not None and step + 1 < cfg.steps:   # new weights for the engines (taken between batches)
                async_stats["publish_s"] = rollouts.publish(step + 1)
            trainer.end_step({**stats, **err_stats, **logs, **async_stats, "sample_s": t1 - t0, "update_s": t2 - t1,
                              "samples": float(sum(len(g.trajectories) for g in rollout.groups))})
            watch.check(trainer)
    finally:
        if rollouts is not None:
            rollouts.close()
        algorithm.close()
    return trainer.close()


def rollout_stats(rollout: Any, rewards: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
    """Reward mean/std, truncation rate and per-env reward of a rollout (``rewards`` replaces the verifier's)."""
    trajs = [t for g in rollout.groups for t in g.trajectories]
    r = torch.tensor([x for row in rewards for x in row] if rewards is not None else [t.reward for t in trajs],
                     dtype=torch.float32)
    stats = {"reward": float(r.mean()) if len(r) else 0.0, "reward_std": float(r.std(unbiased=False)) if len(r) else 0.0,
             "verifier_reward": float(sum(t.reward for t in trajs) / max(len(trajs), 1)),
             "truncation_rate": float(sum(t.truncated for t in trajs) / max(len(trajs), 1))}
    for env_id, d in rollout.stats.per_env.items():
        stats[f"reward/{short_env(env_id)}"] = d["mean_reward"]
    # episode metrics an env reports (agentic: turns, tool_calls, tool_errors, tool_time_s, ...), averaged
    # over the episodes that report each, as the evaluation driver's episode_<name>
    names = sorted({k for t in trajs for k in t.metrics})
    for k in names:
        vals = [float(t.metrics[k]) for t in trajs if k in t.metrics]
        stats[f"episode_{k}"] = sum(vals) / len(vals)
    return stats
