"""Checkpoints: ``run_dir/step_000100/`` with HF weights, optimizer, scheduler, RNG and data position,
``meta.json`` and ``trained_problems.json`` (content hashes of every problem the run trained on up to this
step, per env: with ``meta.json``'s ``parent`` link, evaluation computes the overlap of its eval problems
with everything a checkpoint's lineage saw); written to a temp folder and renamed into place, so a kill
never leaves a half checkpoint that resume would trust.

Every save appends a line to ``run_dir/events.jsonl`` (what ``evalgym watch`` follows); evaluating right
after a save in-process is the training loop's explicit ``after_save`` step, never a side effect of saving.
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
from pathlib import Path
from typing import Any

import torch

from evalgym.types import CheckpointRef, to_dict

STEP_DIR = re.compile(r"^step_(\d{6,})$")


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
                    keep_last: int | None = None, state_dict: dict[str, Any] | None = None,
                    trained: dict[str, set[str]] | None = None) -> CheckpointRef:
    """``state_dict``: the full weights when the model is sharded (gathered on every process); default: the
    model's own. ``optimizer``: an optimizer, or its (gathered) state dict. ``trained``: env id ->
    content hashes of the problems trained on so far (``trained_problems.json``)."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    final = run / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run))
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        optimizer_state = optimizer if isinstance(optimizer, dict) or optimizer is None else optimizer.state_dict()
        torch.save({"optimizer": optimizer_state,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": rng_state(), "data": data_state or {}, "step": step}, tmp / "trainer_state.pt")
        meta = {"step": step, "run_id": run_id or run.name, "parent": parent, "git_sha": git_sha(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
                "config": config.model_dump() if hasattr(config, "model_dump") else config, **(extra_meta or {})}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        write_trained(tmp, trained or {})
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
    return ref


TRAINED_FILE = "trained_problems.json"


def write_trained(folder: Path, trained: dict[str, set[str]]) -> None:
    """``{"format": 1, "count": N, "hashes": [sorted unique], "by_env": {env: n}, "per_env": {env: [hashes]}}``
    — compact enough for hundreds of thousands of problems (16 hex characters each)."""
    every = sorted(set().union(*trained.values())) if trained else []
    doc = {"format": 1, "count": len(every), "hashes": every,
           "by_env": {env: len(h) for env, h in sorted(trained.items())},
           "per_env": {env: sorted(h) for env, h in sorted(trained.items())}}
    (folder / TRAINED_FILE).write_text(json.dumps(doc, separators=(",", ":")))


def read_trained(folder: str | Path) -> dict[str, set[str]]:
    """Env id -> content hashes from a checkpoint's ``trained_problems.json`` (empty when it has none)."""
    path = Path(folder) / TRAINED_FILE
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return {env: set(h) for env, h in doc.get("per_env", {}).items()}


def gather_trained(trained: dict[str, set[str]]) -> dict[str, set[str]]:
    """The union over processes (each samples its own share of the problems); every process must call."""
    from accelerate.utils import gather_object

    out: dict[str, set[str]] = {}
    for part in gather_object([{k: sorted(v) for k, v in trained.items()}]):
        for env, hashes in part.items():
            out.setdefault(env, set()).update(hashes)
    return out


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / "trainer_state.pt", weights_only=False)
