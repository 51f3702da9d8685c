"""The training loop every trainer shares: accelerate, checkpoints with exact resume, metrics.

A trainer supplies two functions:

    make_batch(step, micro, state) -> batch   # deterministic in (seed, step, micro); may sample rollouts
    loss_fn(model, batch) -> (loss, metrics)

and the loop owns the rest: devices and processes (``accelerate launch`` gives DDP; one process
otherwise), the optimizer and schedule, gradient clipping, ``run_dir/metrics.jsonl``, a progress bar,
and checkpoints every ``save_every`` steps. If ``run_dir`` holds checkpoints, the run resumes from the
last one (weights, optimizer, scheduler, RNG, step) and continues exactly as if never stopped. A resume
under a config that differs from the checkpoint's outside ``RESUMABLE_CHANGES`` (how long to run, how
often to save or log, where the run dir now is) is refused, naming the fields: a different lr or dataset
would otherwise silently continue someone else's run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, set_rng_state
from evalgym.trainers.config import TrainConfig

RESUMABLE_CHANGES = frozenset({"steps", "save_every", "keep_last", "log_every", "run_dir"})  # a run dir may move


def check_resume_config(cfg: TrainConfig, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` under ``cfg`` if they differ outside ``RESUMABLE_CHANGES``."""
    saved = json.loads((Path(checkpoint) / "meta.json").read_text()).get("config")
    if not isinstance(saved, dict):
        return
    now = json.loads(json.dumps(cfg.model_dump(), default=str))
    diff = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in diff)
        raise EvalgymError(f"{cfg.run_dir}: holds {Path(checkpoint).name} of a run with another config ({shown}); "
                           f"resume with the same config (only {', '.join(sorted(RESUMABLE_CHANGES))} may "
                           "differ) or use a new run_dir")


@dataclass
class LoopState:
    step: int = 0
    tokens: int = 0
    data: dict[str, Any] = field(default_factory=dict)   # trainer's own position (epoch, offset...)
    model: Any = None        # the model being trained (unwrapped), for trainers that sample from it
    tokenizer: Any = None


def dist_state() -> Any:
    """accelerate's process state, CPU-aware: on a machine without GPUs, a plain ``PartialState()``
    under a multi-process launch reports one process (it does not look for gloo); ``cpu=True`` makes
    it MULTI_CPU. Must be the first accelerate state created in the process."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_model(name: str, dtype: str = "auto") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from evalgym.models import resolve_model
    from evalgym.policies.hf import _dtype

    hf_logging.disable_progress_bar()
    path = resolve_model(name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype, device))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def lr_factor(cfg: TrainConfig, s: int) -> float:
    """The learning rate's multiplier at optimizer step ``s`` (0-based): linear warmup over
    ``warmup_steps``, then constant or a cosine decay reaching 0 at ``steps``."""
    warm = max(cfg.warmup_steps, 0)
    if warm and s < warm:
        return (s + 1) / warm
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warm) / span)))
    return 1.0


def run(cfg: TrainConfig, *, make_batch: Callable[[int, int, LoopState], Any],
        loss_fn: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]],
        model: Any = None, tokenizer: Any = None, on_step: Callable[[int, Any, dict], None] | None = None,
        extra_meta: dict[str, Any] | None = None, progress: bool = True,
        load_fn: Callable[[str, str], tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """Train ``cfg.steps`` optimizer steps; returns the last metrics and the final checkpoint."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=cfg.grad_accum)
    run_dir = Path(cfg.run_dir)
    resume = latest_checkpoint(run_dir)
    state = LoopState()
    parent = cfg.model
    if resume is not None:
        check_resume_config(cfg, resume)
        model, tokenizer = (load_fn or load_model)(str(resume), cfg.dtype)
        parent = str(resume)
    elif model is None:
        model, loaded_tok = load_model(cfg.model, cfg.dtype)
        tokenizer = tokenizer or loaded_tok
    set_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, cfg))
    if resume is not None:
        saved = load_trainer_state(resume)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        state = LoopState(step=saved["step"], tokens=saved["data"].get("_tokens", 0), data=saved["data"])
    model.train()
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = lambda: accelerator.unwrap_model(model)  # noqa: E731
    state.model, state.tokenizer = unwrapped(), tokenizer
    metrics_path = run_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {run_dir.name}", unit="step", dynamic_ncols=True)
    last: dict[str, Any] = {}
    ref = None
    t_last = time.perf_counter()
    while state.step < cfg.steps:
        logs: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = make_batch(state.step, micro, state)
            with accelerator.accumulate(model):
                loss, m = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    logs["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            for k, v in {"loss": float(loss.detach()), **m}.items():
                logs[k] = logs.get(k, 0.0) + v / cfg.grad_accum
        state.step += 1
        state.tokens += int(logs.get("tokens", 0) * cfg.grad_accum)
        now = time.perf_counter()
        logs.update(step=state.step, lr=scheduler.get_last_lr()[0], step_s=now - t_last,
                    tokens_per_s=logs.get("tokens", 0) * cfg.grad_accum / max(now - t_last, 1e-9))
        t_last = now
        if not all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
            raise FloatingPointError(f"non-finite metrics at step {state.step}: {logs}")
        last = logs
        if accelerator.is_main_process:
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(logs) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{logs[k]:.3g}" for k in ("loss", "reward", "kl", "tokens_per_s") if k in logs})
        if on_step is not None:
            on_step(state.step, unwrapped(), logs)
        if state.step % cfg.save_every == 0 or state.step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                ref = save_checkpoint(run_dir, state.step, model=unwrapped(), tokenizer=tokenizer,
                                      optimizer=optimizer, scheduler=scheduler,
                                      data_state={**state.data, "_tokens": state.tokens}, config=cfg,
                                      parent=parent, keep_last=cfg.keep_last,
                                      extra_meta={**(extra_meta or {}), "world_size": accelerator.num_processes})
            accelerator.wait_for_everyone()
    if bar is not None:
        bar.close()
    return {"metrics": last, "checkpoint": ref, "model": unwrapped(), "tokenizer": tokenizer,
            "world_size": accelerator.num_processes, "process_index": accelerator.process_index}
