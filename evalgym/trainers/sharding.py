"""Sharded training: FSDP2 (``torch.distributed.fsdp.fully_shard``) over every process, and the DeepSpeed
configs evalgym writes for ``accelerate launch --use_deepspeed``.

FSDP (``fsdp: true``, or ``accelerate launch --use_fsdp``): parameters, gradients and AdamW state are split
over the processes. Each transformer block (the model's ``_no_split_modules`` classes) is its own FSDP unit,
then the whole model; with bf16 mixed precision the units compute in bf16 and reduce gradients in fp32.
accelerate 1.x treats ``--use_fsdp`` on a machine without GPUs as plain DDP (silently); evalgym then applies
FSDP2 itself, which runs on gloo, so the same code path is tested on CPU that runs on GPUs. Checkpoints hold
the full weights and the full optimizer state (gathered with ``torch.distributed.checkpoint.state_dict``),
so a sharded run resumes on any number of processes, and its checkpoints load anywhere.

Every process must call the same collectives in the same order: under FSDP each forward is one, so the
trainers run the same number of forwards on every process (see ``rl.update_on_batch``).

DeepSpeed: :func:`deepspeed_config` writes a ZeRO-2/3 config with every ``auto`` resolved from the trainer
config (micro-batch, accumulation, clipping, precision), for ``accelerate launch --use_deepspeed
--deepspeed_config_file``. DeepSpeed needs CUDA here: on a machine without GPUs a DeepSpeed launch is refused
up front (accelerate would otherwise fall back to DDP without saying so).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from evalgym.errors import EvalgymError


def requested(cfg: Any) -> str | None:
    """"fsdp", "deepspeed" or None: what the config or the launcher asked for."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "deepspeed"
    if getattr(cfg, "fsdp", False) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    return None


def check_launch(cfg: Any) -> None:
    """Refuse, before any model loads, a sharding this machine cannot run."""
    if requested(cfg) == "deepspeed" and not torch.cuda.is_available():
        raise EvalgymError("DeepSpeed needs CUDA GPUs and this machine has none (accelerate would silently run DDP "
                           "instead); launch without --use_deepspeed, or use fsdp=true (FSDP2 runs on CPU/gloo)")


def block_classes(model: Any) -> set[str]:
    names = set(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise EvalgymError(f"fsdp: {type(model).__name__} names no transformer block class (_no_split_modules)")
    return names


def shard(module: torch.nn.Module, inner: Any, precision: str) -> torch.nn.Module:
    """FSDP2 over all processes: each block of ``inner`` (the HF model), then ``module`` (its wrapper)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mesh = init_device_mesh(device, (dist.get_world_size(),))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype else MixedPrecisionPolicy()
    blocks = block_classes(inner)
    for sub in inner.modules():
        if type(sub).__name__ in blocks:
            fully_shard(sub, mesh=mesh, mp_policy=mp)
    fully_shard(module, mesh=mesh, mp_policy=mp)
    return module


def is_sharded(module: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def set_gradient_sync(module: Any, sync: bool) -> None:
    module.set_requires_gradient_sync(sync)


def full_model_state(module: Any, *, everywhere: bool = False) -> dict[str, Any]:
    """The full weights (keys without the wrapper's ``model.`` prefix): on rank 0 only (CPU copies), or on
    every process (``everywhere``, e.g. to refresh a sampling replica). Every process must call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    full = {k.removeprefix("model."): v for k, v in full.items()}
    inner = getattr(module, "model", module)
    if getattr(getattr(inner, "config", None), "tie_word_embeddings", False):
        full.pop("lm_head.weight", None)   # the embedding's own tensor: saving it twice breaks the tie on load
    return full


def full_optimizer_state(module: Any, optimizer: Any) -> dict[str, Any]:
    """The full AdamW state keyed by parameter names (rank 0 holds it). Every process must call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(module: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Shard a full optimizer state (as saved by :func:`full_optimizer_state`) into this process's optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def deepspeed_config(cfg: Any, world_size: int, stage: int = 2, micro_batch_size: int | None = None) -> dict[str, Any]:
    """A DeepSpeed ZeRO config with nothing left ``auto``: DeepSpeed's ``auto`` values are filled by
    accelerate from a prepared dataloader, which evalgym's trainers do not use, so they are resolved here."""
    if stage not in (2, 3):
        raise EvalgymError(f"deepspeed: ZeRO stage must be 2 or 3, got {stage}")
    batch = getattr(cfg, "batch_size", None) or getattr(cfg, "prompts_per_step", 1) * getattr(cfg, "group_size", 1)
    micro = micro_batch_size or max(1, batch // (cfg.grad_accum * world_size))
    precision = cfg.mixed_precision if cfg.mixed_precision != "auto" else "bf16"
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": 5e8}
    if stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True, stage3_prefetch_bucket_size=5e8,
                    stage3_param_persistence_threshold=1e6)
    return {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": cfg.grad_accum,
            "train_batch_size": micro * cfg.grad_accum * world_size, "gradient_clipping": cfg.max_grad_norm or 0.0,
            "bf16": {"enabled": precision == "bf16"}, "fp16": {"enabled": precision == "fp16"},
            "zero_optimization": zero, "steps_per_print": 10**9, "wall_clock_breakdown": False}
