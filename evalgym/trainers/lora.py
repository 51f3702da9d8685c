"""LoRA adapters (``peft``) for every trainer: ``lora: {r, alpha, dropout, target_modules}`` in any config.

    evalgym train grpo model=smollm2-135m lora.r=16 lora.alpha=32        # only the adapter trains
    evalgym model merge runs/grpo/step_000100 --out merged/              # base + adapter as one HF folder

What changes when ``lora`` is set (``Trainer`` calls these):

- :func:`apply_lora` wraps the loaded model in a ``PeftModel`` (the base frozen, low-rank ``A·B`` on the
  ``target_modules``; ``all-linear`` = every linear layer but the output head). The trainers keep training
  the HF model itself (``peft`` injects the adapter layers into it in place), so every scorer, the packing
  path, DDP and FSDP see an ordinary module. A ``target_modules`` entry that matches no module is an error
  naming the model's linear-layer names. A reward model also trains its new ``score`` head.
- The KL reference (``Trainer.reference``) is the same module with the adapter switched off
  (:class:`AdapterOff`): the base, which is the run's start model — no second copy in memory.
- A checkpoint holds the adapter (``adapter_model.safetensors`` + ``adapter_config.json`` naming the base
  folder) beside the tokenizer, trainer state and ``meta.json``. Resume loads the base and the adapter.
- Anything that takes a model takes an adapter checkpoint: ``evalgym.models.resolve_model`` merges it into
  its base once (:func:`merge_adapter`, cached under ``$EVALGYM_HOME/merged``), so HF policies, teachers,
  evaluation, lm-eval and a recipe stage's ``from`` load an ordinary folder. A later LoRA run from such a
  checkpoint trains a fresh adapter on the merged model (its KL reference is that merged start).
- Engines get the adapter, not the weights: a vLLM engine serves the base with ``enable_lora`` and takes
  each new adapter as a ``LoRARequest`` (no reload of the base); a Ray HF engine loads the adapter tensors
  into its own peft copy (:func:`adapter_state`). :func:`merged_state_dict` gives full merged weights for an
  engine that has no LoRA support.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.config import LoRAConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def linear_names(model: Any) -> list[str]:
    """Leaf names of the model's linear layers (what ``target_modules`` can name), output head excluded."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not head})


def _is_reward_model(model: Any) -> bool:
    return hasattr(model, "score") and not hasattr(model, "lm_head")


def apply_lora(model: Any, cfg: LoRAConfig) -> Any:
    """``model`` with a fresh adapter (a ``PeftModel``; its ``get_base_model()`` is ``model``, adapted)."""
    from peft import LoraConfig, get_peft_model

    names = linear_names(model)
    if cfg.target_modules != "all-linear":
        missing = [t for t in cfg.target_modules if t not in names]
        if missing:
            raise EvalgymError(f"lora.target_modules: {missing} match no linear layer of {type(model).__name__}; "
                               f"its linear layers are {names} (or use all-linear)")
    reward = _is_reward_model(model)
    targets = ([n for n in names if n != "score"] if cfg.target_modules == "all-linear" else list(cfg.target_modules))
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                          task_type="SEQ_CLS" if reward else "CAUSAL_LM", modules_to_save=["score"] if reward else None)
    return get_peft_model(model, peft_cfg)


def load_adapter(model: Any, folder: str | Path, *, trainable: bool = True) -> Any:
    """``model`` (the base) with the adapter saved in ``folder``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


class AdapterOff(torch.nn.Module):
    """A scorer of the base: ``inner(...)`` run with the adapter of ``peft_model`` switched off (the KL
    reference of a LoRA run, sharing every base weight with the trained model)."""

    def __init__(self, peft_model: Any, inner: torch.nn.Module):
        super().__init__()
        self.peft_model, self.inner = peft_model, inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.peft_model.disable_adapter():
            return self.inner(*args, **kwargs)


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def adapter_state(peft_model: Any) -> dict[str, torch.Tensor]:
    """The adapter's tensors only (what an engine with the same base needs), detached CPU copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def set_adapter_state(peft_model: Any, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise EvalgymError(f"adapter weights do not fit the engine's adapter: unexpected {list(unexpected)[:5]}")


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Full weights with every adapter folded in (``W + alpha/r · B·A``), under the base model's own names,
    computed without touching the model (``merge_adapter``/``unmerge`` would drift the base by rounding)."""
    from peft.tuners.lora import LoraLayer

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    out: dict[str, torch.Tensor] = {}
    for name, mod in inner.named_modules():
        if isinstance(mod, LoraLayer) and hasattr(mod, "base_layer"):
            w = mod.base_layer.weight.detach()
            for adapter in mod.active_adapters:
                if adapter in mod.lora_A:
                    w = w + mod.get_delta_weight(adapter).detach().to(w.dtype)
            out[f"{name}.weight"] = w.cpu()
            if getattr(mod.base_layer, "bias", None) is not None:
                out[f"{name}.bias"] = mod.base_layer.bias.detach().cpu()
    skip = ("lora_", ".base_layer.", "modules_to_save", "original_module")
    for k, v in inner.state_dict().items():
        if not any(s in k for s in skip) and k not in out:
            out[k] = v.detach().cpu()
    return out


def save_engine_adapter(peft_model: Any, root: str | Path, version: int, keep: int = 3) -> str:
    """The adapter as a folder an engine loads (vLLM's ``LoRARequest``): ``root/v{version}``, keeping the
    newest ``keep`` (an engine may still be reading the one before)."""
    import shutil

    root = Path(root)
    folder = root / f"v{version:06d}"
    peft_model.save_pretrained(folder)
    for old in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("v"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return str(folder)


# -- adapter checkpoints as models ----------------------------------------------------------------------


def is_adapter_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / ADAPTER_CONFIG).is_file() and not (p / "config.json").is_file()


def adapter_base(folder: str | Path) -> str:
    cfg = json.loads((Path(folder) / ADAPTER_CONFIG).read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise EvalgymError(f"{folder}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return str(base)


def adapter_rank(folder: str | Path) -> int:
    return int(json.loads((Path(folder) / ADAPTER_CONFIG).read_text()).get("r", 16))


def merge_adapter(folder: str | Path, out: str | Path) -> Path:
    """Base + the adapter in ``folder`` folded into one ordinary HF folder at ``out`` (with the tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from evalgym.models import _atomic_dir, resolve_model

    folder = Path(folder)
    if not is_adapter_dir(folder):
        raise EvalgymError(f"{folder}: not an adapter checkpoint (no {ADAPTER_CONFIG}, or a full model folder)")
    base = resolve_model(adapter_base(folder))
    seq_cls = json.loads((folder / ADAPTER_CONFIG).read_text()).get("task_type") == "SEQ_CLS"
    if seq_cls:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = load_adapter(model, folder, trainable=False).merge_and_unload()
    tok_src = folder if (folder / "tokenizer_config.json").is_file() else Path(base)
    tokenizer = AutoTokenizer.from_pretrained(tok_src)
    if seq_cls:
        merged.config.pad_token_id = tokenizer.pad_token_id

    def write(tmp: Path) -> None:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "evalgym_merged.json").write_text(json.dumps({"adapter": str(folder.resolve()), "base": base}))

    return _atomic_dir(Path(out), write)


def merged_path(folder: str | Path) -> Path:
    """Where ``resolve_model`` keeps the merge of an adapter checkpoint: keyed by the adapter's bytes and its
    base, so a rewritten checkpoint is merged again."""
    from evalgym.models import home

    folder = Path(folder).resolve()
    h = hashlib.sha256(str(folder).encode())
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        f = folder / name
        if f.is_file():
            h.update(f.read_bytes())
    return home() / "merged" / h.hexdigest()[:16]


def resolve_adapter(folder: str | Path) -> str:
    """The merged folder of an adapter checkpoint, built on first use."""
    out = merged_path(folder)
    if not (out / "config.json").is_file():
        merge_adapter(folder, out)
    return str(out)
