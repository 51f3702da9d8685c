"""Trainer configs: pydantic models loaded from YAML with ``key=value`` overrides.

    cfg = load_config(SFTConfig, "sft.yaml", ["lr=1e-4", "steps=200"])

Unknown keys and wrong types are errors that name the field (and the file), never silently ignored.
Overrides take dotted keys (``sampling.temperature=0.7``) and YAML values (``envs=[a, b]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from evalgym.errors import EvalgymError


class TrainConfig(BaseModel):
    """What every trainer shares."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "tiny"                 # a built-in name, a folder (e.g. a previous stage's checkpoint) or hub id
    run_dir: str = "runs/run"
    seed: int = 0
    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"   # after warmup; cosine decays to 0 at `steps`
    batch_size: int = 8                 # sequences per optimizer step (all processes together)
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    save_every: int = 50                # checkpoint every N steps (and at the end)
    keep_last: int | None = None        # keep only the last N checkpoints (None: all)
    log_every: int = 1
    dtype: str = "auto"                 # float32 on CPU, bfloat16 on GPU


C = TypeVar("C", bound=BaseModel)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` → (key, the value read as YAML; text that is not YAML stays a string)."""
    if "=" not in item:
        raise EvalgymError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise EvalgymError(f"override {key}: {p} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    data: dict[str, Any] = {}
    where = "overrides"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise EvalgymError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise EvalgymError(f"config file {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise EvalgymError(f"config file {path}: expected a mapping of fields, got {type(loaded).__name__}")
        data = loaded or {}
    for item in overrides:
        set_dotted(data, *parse_override(item))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise EvalgymError(f"{cls.__name__} ({where}): {problems}") from None
