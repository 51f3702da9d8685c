"""Checkpoints: ``run_dir/step_000100/`` with HF weights, optimizer, scheduler, RNG and data position,
and ``meta.json``; written to a temp folder and renamed into place, so a kill never leaves a half
checkpoint that resume would trust.

Every save appends a line to ``run_dir/events.jsonl`` and calls the in-process subscribers
(``subscribe(fn)``): the evaluation loop listens either way (in-process, or by watching the file).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evalgym.types import CheckpointRef, to_dict

STEP_DIR = re.compile(r"^step_(\d{6,})$")
_SUBSCRIBERS: list[Callable[[CheckpointRef], None]] = []


def subscribe(fn: Callable[[CheckpointRef], None]) -> Callable[[], None]:
    """Call ``fn(ref)`` after every checkpoint saved in this process; returns an unsubscribe."""
    _SUBSCRIBERS.append(fn)
    return lambda: _SUBSCRIBERS.remove(fn) if fn in _SUBSCRIBERS else None


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def rng_state() -> dict[str, Any]:
    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (those with meta.json), oldest first."""
    run = Path(run_dir)
    if not run.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run.iterdir() if (m := STEP_DIR.match(p.name)) and (p / "meta.json").exists()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    dirs = step_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(run_dir: str | Path, step: int, *, model: Any, tokenizer: Any, optimizer: Any = None,
                    scheduler: Any = None, data_state: dict[str, Any] | None = None, config: Any = None,
                    parent: str | None = None, run_id: str | None = None, extra_meta: dict[str, Any] | None = None,
                    keep_last: int | None = None, state_dict: dict[str, Any] | None = None) -> CheckpointRef:
    """``state_dict``: the full weights when the model is sharded (FSDP / DeepSpeed ZeRO-3 gather them
    with ``accelerator.get_state_dict`` on every process); default: the model's own."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    final = run / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run))
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        torch.save({"optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": rng_state(), "data": data_state or {}, "step": step}, tmp / "trainer_state.pt")
        meta = {"step": step, "run_id": run_id or run.name, "parent": parent, "git_sha": git_sha(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
                "config": config.model_dump() if hasattr(config, "model_dump") else config, **(extra_meta or {})}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ref = CheckpointRef(path=str(final), step=step, run_id=meta["run_id"], parent=parent)
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"event": "checkpoint", **to_dict(ref)}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if keep_last:
        for old in step_dirs(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    for fn in list(_SUBSCRIBERS):
        fn(ref)
    return ref


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / "trainer_state.pt", weights_only=False)
