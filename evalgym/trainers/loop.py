"""What every trainer's process shares: devices and precision, the optimizer and its schedule, exact resume,
checkpoints, metrics, and the supervised loop.

``Trainer`` owns one training process: ``accelerate`` (one process, or DDP / FSDP under ``accelerate
launch``), the model in float32 with bf16 autocast where the hardware has it (``dtype`` /
``mixed_precision``), AdamW, a learning-rate schedule that is a function of optimizer updates only (so a
2-process run follows the 1-process trace), gradient accumulation over micro-batches, ``run_dir/
metrics.jsonl`` (reduced across processes), checkpoints every ``save_every`` steps with the problems
trained on, and exact resume: if ``run_dir`` holds checkpoints, the run continues from the last one
(weights, optimizer, scheduler, RNG, step, data position) as if never stopped. A resume under a config
that differs outside ``RESUMABLE_FIELDS`` is refused, naming the fields.

Two loops are built on it: :func:`run` here (supervised trainers: one batch of rows per optimizer step)
and ``evalgym.trainers.rl.train_rl`` (RL: one rollout batch, then ``minibatches × epochs`` updates).

``after_save(ref)`` is called right after each checkpoint (main process, RNG state kept): evaluation after
a save is an explicit step of the loop, not a side effect of saving.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.checkpoint import (latest_checkpoint, load_trainer_state, read_trained, rng_state,
                                         save_checkpoint, set_rng_state)
from evalgym.trainers.config import RESUMABLE_FIELDS, TrainConfig, with_new_defaults

SUMMED_METRICS = frozenset({"tokens", "samples", "grader_errors"})   # added over processes; others averaged


def check_resume_config(cfg: TrainConfig, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` under ``cfg`` if they differ outside ``RESUMABLE_FIELDS``."""
    saved = json.loads((Path(checkpoint) / "meta.json").read_text()).get("config")
    if not isinstance(saved, dict):
        return
    now = json.loads(json.dumps(cfg.model_dump(), default=str))
    saved = with_new_defaults(type(cfg), saved)   # a field added since reads as its default (an older run resumes)
    diff = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_FIELDS and saved.get(k) != now.get(k))
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in diff)
        raise EvalgymError(f"{cfg.run_dir}: holds {Path(checkpoint).name} of a run with another config ({shown}); "
                           f"resume with the same config (only {', '.join(sorted(RESUMABLE_FIELDS))} may "
                           "differ) or use a new run_dir")


def dist_state() -> Any:
    """accelerate's process state, CPU-aware: on a machine without GPUs, a plain ``PartialState()``
    under a multi-process launch reports one process (it does not look for gloo); ``cpu=True`` makes
    it MULTI_CPU. Must be the first accelerate state created in the process."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


PARAM_DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model(name: str, dtype: str = "auto") -> tuple[Any, Any]:
    """A causal LM for training: parameters in float32 unless ``dtype`` asks for pure low precision."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from evalgym.models import resolve_model

    hf_logging.disable_progress_bar()
    path = resolve_model(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=PARAM_DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def resolve_mixed_precision(cfg: TrainConfig) -> str:
    """``mixed_precision: auto`` → bf16 autocast on a GPU that supports it, else none."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and cfg.dtype in ("auto", "float32"):
        return "bf16"
    return "no"


def _allow_precision(precision: str) -> None:
    """accelerate keeps one process-wide state; a later trainer in the same single process (a recipe, a
    test) may ask for another mixed precision: start that state afresh (the process group, if any, stays)."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision and AcceleratorState().num_processes == 1:
        AcceleratorState._reset_state()


def lr_factor(cfg: TrainConfig, u: int, updates_per_step: int = 1) -> float:
    """The learning rate's multiplier at optimizer update ``u`` (0-based): linear warmup over
    ``warmup_steps``, then constant or a cosine decay reaching 0 at ``steps`` (steps and warmup count
    training steps; an RL step makes ``updates_per_step`` updates)."""
    warm = cfg.warmup_steps * updates_per_step
    if warm and u < warm:
        return (u + 1) / warm
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps * updates_per_step - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (u - warm) / span)))
    return 1.0


@dataclass
class LoopState:
    step: int = 0
    tokens: int = 0
    data: dict[str, Any] = field(default_factory=dict)   # trainer's own position (epoch, offset...)
    trained: dict[str, set[str]] = field(default_factory=dict)   # env id -> content hashes trained on


class Trainer:
    """One training process: build with a config, call :meth:`update` once per optimizer step and
    :meth:`end_step` once per training step; :meth:`close` at the end. ``wrap`` turns the loaded model into
    the module that is trained (``CausalLMScorer`` for language models; its forward is the loss's forward,
    so DDP/FSDP see one forward per backward)."""

    def __init__(self, cfg: TrainConfig, *, name: str, model: Any = None, tokenizer: Any = None,
                 load_fn: Callable[[str, str], tuple[Any, Any]] | None = None,
                 wrap: Callable[[Any], torch.nn.Module] | None = None, updates_per_step: int = 1,
                 extra_meta: dict[str, Any] | None = None, progress: bool = True,
                 after_save: Callable[[Any], None] | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from evalgym.logprobs import CausalLMScorer
        from evalgym.trainers import sharding

        sharding.check_launch(cfg)
        self.cfg, self.name, self.after_save = cfg, name, after_save
        self.extra_meta = extra_meta or {}
        precision = resolve_mixed_precision(cfg)
        _allow_precision(precision)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)
        if cfg.dtype in ("bfloat16", "float16"):
            warnings.warn(f"{name}.dtype {cfg.dtype}: parameters and AdamW state in {cfg.dtype} with no float32 "
                          "master copy; updates smaller than the weight's precision (lr 1e-6 on a weight of 1 needs "
                          "~2^-20, bf16 has 2^-8) are lost. Use dtype auto (float32 + bf16 autocast) unless memory "
                          "forces this", stacklevel=2)
        self.run_dir = Path(cfg.run_dir)
        resume = latest_checkpoint(self.run_dir)
        self.state = LoopState()
        self.parent = cfg.model
        load = load_fn or load_model
        self.peft: Any = None        # the PeftModel of a LoRA run (its base model, adapted, is what trains)
        if resume is not None:
            check_resume_config(cfg, resume)
            self.parent = json.loads((resume / "meta.json").read_text()).get("parent") or cfg.model
        if resume is not None and not cfg.lora:
            model, tokenizer = load(str(resume), cfg.dtype)
        elif model is None:
            model, loaded_tok = load(cfg.model, cfg.dtype)
            tokenizer = tokenizer or loaded_tok
        self.tokenizer = tokenizer
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        set_seed(cfg.seed)
        if cfg.lora:    # the base (the run's start model, after any resume) frozen; the adapter trains
            from evalgym.trainers import lora

            self.peft = lora.load_adapter(model, resume) if resume is not None else lora.apply_lora(model, cfg.lora)
            model = self.peft.get_base_model()
        model.train()
        module = (wrap or CausalLMScorer)(model)
        # FSDP2 is applied here, not by accelerate (which ignores --use_fsdp without GPUs): one code path
        self.sharded = sharding.requested(cfg) == "fsdp" and self.accelerator.num_processes > 1
        if self.sharded:
            module = sharding.shard(module.to(self.accelerator.device), model, precision)
        params = [p for p in module.parameters() if p.requires_grad] if cfg.lora else module.parameters()
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Not handed to accelerate: its prepared scheduler steps once per process per update.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, cfg,
                                                                              updates_per_step=updates_per_step))
        if resume is not None:
            saved = load_trainer_state(resume)
            if self.sharded:
                sharding.load_optimizer_state(module, optimizer, saved["optimizer"])
            else:
                optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            self.state = LoopState(step=saved["step"], tokens=saved["data"].get("_tokens", 0),
                                   data={k: v for k, v in saved["data"].items() if k != "_tokens"},
                                   trained=read_trained(resume))
        if self.sharded:
            self.module, self.optimizer = module, optimizer
        else:
            self.module, self.optimizer = self.accelerator.prepare(module, optimizer)
        self._replica: Any = None
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        from evalgym.trainers.tracking import Tracking

        self.tracking = Tracking(cfg, self.run_dir, name=name, enabled=self.is_main)   # report_to
        self.bar = None
        if progress and self.is_main:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=cfg.steps, initial=self.state.step, desc=f"train {self.run_dir.name}",
                            unit="step", dynamic_ncols=True)
        self.checkpoint: Any = None
        self.last: dict[str, Any] = {}
        self._t_last = time.perf_counter()
        self._ref: Any = None

    # -- what trainers read ---------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def model(self) -> Any:
        """The language model being trained, unwrapped (sharded under FSDP: see :meth:`sampling_model`)."""
        inner = self.module if self.sharded else self.accelerator.unwrap_model(self.module)
        return getattr(inner, "model", inner)

    def sampling_model(self) -> Any:
        """A model with the current full weights to sample from: the trained model itself, or under FSDP a
        replica refreshed from the gathered weights (every process must call)."""
        if not self.sharded:
            return self.model
        from evalgym.trainers import sharding

        full = sharding.full_model_state(self.module, everywhere=True)
        if self._replica is None:
            self._replica, _ = load_model(self.cfg.model, self.cfg.dtype)
            if self.cfg.lora:   # same adapter layout, so the gathered names fit
                from evalgym.trainers.lora import apply_lora
                self._replica = apply_lora(self._replica, self.cfg.lora).get_base_model()
            self._replica.to(self.device).eval()
        self._replica.load_state_dict({k: v.to(self.device) for k, v in full.items()}, strict=False)
        return self._replica

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def autocast(self) -> Any:
        return self.accelerator.autocast()

    def reference(self) -> Any:
        """The run's start model (``cfg.model``, whatever was resumed since), frozen, as a scorer: the
        KL reference. Loaded once; a LoRA run's is the trained model with its adapter off (no second copy)."""
        if self._ref is None and self.peft is not None:
            from evalgym.logprobs import CausalLMScorer
            from evalgym.trainers.lora import AdapterOff

            # sharded: through the FSDP module (every process calls it); else the bare scorer (DDP's forward
            # would broadcast buffers, a collective the other processes do not join)
            self._ref = AdapterOff(self.peft, self.module if self.sharded else CausalLMScorer(self.model))
        if self._ref is None:
            from evalgym.logprobs import CausalLMScorer

            ref, _ = load_model(self.cfg.model, self.cfg.dtype)
            self._ref = CausalLMScorer(ref.to(self.device).eval().requires_grad_(False))
        return self._ref

    def record_problems(self, problems: Iterable[Any]) -> None:
        """Remember what this step trained on (content hashes per env), for the checkpoint's manifest."""
        from evalgym.types import content_hash

        for p in problems:
            self.state.trained.setdefault(p.env_id, set()).add(content_hash(p))

    # -- one optimizer update ---------------------------------------------------------------------------

    def update(self, micros: Sequence[Any], loss_fn: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]],
               weights: Sequence[float] | None = None) -> dict[str, float]:
        """Forward/backward every micro-batch (gradients synchronised across processes on the last only),
        then one clipped optimizer step and one scheduler step. ``loss_fn(module, micro)`` → (loss, metrics);
        each loss is scaled by its weight (default ``1/len(micros)``): weights that sum to 1 make the update
        the gradient of the weighted mean. Returns metrics averaged over the micro-batches (by weight)."""
        n = len(micros)
        if n == 0:
            raise EvalgymError(f"{self.name}: an update needs at least one micro-batch")
        weights = list(weights) if weights is not None else [1.0 / n] * n
        logs: dict[str, float] = {}
        for i, micro in enumerate(micros):
            if self.sharded:
                self.module.set_requires_gradient_sync(i == n - 1)
                sync = nullcontext()
            else:
                sync = nullcontext() if i == n - 1 else self.accelerator.no_sync(self.module)
            with sync:
                loss, m = loss_fn(self.module, micro)
                self.accelerator.backward(loss * weights[i])
            logs["loss"] = logs.get("loss", 0.0) + float(loss.detach()) * weights[i]   # the objective's value
            share = weights[i] / max(sum(weights), 1e-12)
            for k, v in m.items():
                logs[k] = logs.get(k, 0.0) + (v if k in SUMMED_METRICS else v * share)
        if self.cfg.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.max_grad_norm)
            logs["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logs

    # -- the end of a training step -----------------------------------------------------------------------

    def end_step(self, logs: dict[str, Any]) -> None:
        """Count the step; reduce ``logs`` over processes; write metrics; save (and ``after_save``) when due."""
        self.state.step += 1
        now = time.perf_counter()
        logs = self.reduce(logs)
        self.state.tokens += int(logs.get("tokens", 0))
        logs.update(step=self.state.step, lr=self.scheduler.get_last_lr()[0], step_s=now - self._t_last,
                    tokens_per_s=logs.get("tokens", 0) / max(now - self._t_last, 1e-9))
        self._t_last = now
        bad = {k: v for k, v in logs.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise FloatingPointError(f"{self.name}: non-finite metrics at step {self.state.step}: {bad}")
        self.last = logs
        if self.is_main:
            if self.state.step % self.cfg.log_every == 0 or self.state.step == self.cfg.steps:
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(logs) + "\n")
                self.tracking.log(logs, self.state.step)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix({k: f"{logs[k]:.3g}" for k in ("loss", "reward", "kl", "tokens_per_s") if k in logs})
        if self.state.step % self.cfg.save_every == 0 or self.state.step == self.cfg.steps:
            self.save()

    def reduce(self, logs: dict[str, Any]) -> dict[str, Any]:
        """One process: as is. Several: each key summed (``SUMMED_METRICS``) or averaged over the processes
        that report it (per-env keys exist only where that env was sampled)."""
        if self.world == 1:
            return dict(logs)
        from accelerate.utils import gather_object

        every = gather_object([dict(logs)])
        out: dict[str, Any] = {}
        for k in sorted({k for d in every for k in d}):
            vals = [d[k] for d in every if k in d and isinstance(d[k], (int, float))]
            if vals:
                out[k] = float(sum(vals)) if k in SUMMED_METRICS else float(sum(vals) / len(vals))
        return out

    def save(self) -> None:
        from evalgym.trainers import sharding
        from evalgym.trainers.checkpoint import gather_trained

        self.accelerator.wait_for_everyone()
        trained = gather_trained(self.state.trained) if self.world > 1 else self.state.trained
        state_dict, optimizer_state = None, None
        if self.sharded:     # full weights and optimizer state, gathered onto the main process
            state_dict = sharding.full_model_state(self.module)
            optimizer_state = sharding.full_optimizer_state(self.module, self.optimizer)
        if self.is_main:
            if self.peft is not None and state_dict is not None:   # the adapter's names inside the PeftModel
                state_dict = {f"base_model.model.{k}": v for k, v in state_dict.items()}
            self.checkpoint = save_checkpoint(
                self.run_dir, self.state.step, model=self.peft if self.peft is not None else self.model,
                tokenizer=self.tokenizer,
                optimizer=optimizer_state if self.sharded else self.optimizer,
                scheduler=self.scheduler, data_state={**self.state.data, "_tokens": self.state.tokens},
                config=self.cfg, parent=self.parent, keep_last=self.cfg.keep_last, trained=trained,
                state_dict=state_dict,
                extra_meta={"trainer": self.name, **self.extra_meta, "world_size": self.world, "sharded": self.sharded,
                            "mixed_precision": resolve_mixed_precision(self.cfg)})
        self.accelerator.wait_for_everyone()
        if self.is_main and self.after_save is not None and self.checkpoint is not None:
            saved = rng_state()          # whatever evaluation does, training goes on as if nothing ran
            try:
                self.after_save(self.checkpoint)
                # an evaluator that writes a results store (CheckpointEvaluator): its scores go to the trackers
                self.tracking.log_evaluations(getattr(self.after_save, "store", None))
            finally:
                set_rng_state(saved)

    def close(self) -> dict[str, Any]:
        if self.bar is not None:
            self.bar.close()
        self.tracking.close()
        return {"metrics": self.last, "checkpoint": self.checkpoint, "model": self.model, "tokenizer": self.tokenizer,
                "peft": self.peft,
                "world_size": self.world, "process_index": self.rank}


def run(cfg: TrainConfig, *, name: str, make_batch: Callable[[int, int, LoopState], Any],
        loss_fn: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]], model: Any = None,
        tokenizer: Any = None, wrap: Callable[[Any], torch.nn.Module] | None = None,
        extra_meta: dict[str, Any] | None = None, progress: bool = True,
        load_fn: Callable[[str, str], tuple[Any, Any]] | None = None,
        after_save: Callable[[Any], None] | None = None,
        micro_weights: Callable[[list[Any]], list[float]] | None = None) -> dict[str, Any]:
    """The supervised loop: each step, ``grad_accum`` micro-batches ``make_batch(step, micro, state)``, one
    update (``micro_weights`` weighs their losses, default equal), ``cfg.steps`` steps."""
    trainer = Trainer(cfg, name=name, model=model, tokenizer=tokenizer, load_fn=load_fn, wrap=wrap,
                      extra_meta=extra_meta, progress=progress, after_save=after_save)
    while trainer.step < cfg.steps:
        micros = [make_batch(trainer.step, k, trainer.state) for k in range(cfg.grad_accum)]
        logs = trainer.update(micros, loss_fn, micro_weights(micros) if micro_weights else None)
        trainer.end_step(logs)
    return trainer.close()
