"""Contamination, checked rather than assumed: the overlap of an evaluation's problems with everything a
checkpoint's lineage trained on.

    info = contamination("runs/mopd-2026/student/step_000040", eval_hashes)
    info["overlap"]            # eval problems that some stage of the lineage trained on (0: held out)

A trainer writes ``trained_problems.json`` into every checkpoint (the sorted content hashes of every problem
the run has trained on up to that step) and ``meta.json["parent"]``, the checkpoint (or model name) the run
started from. The lineage of a checkpoint is that chain of parents, across recipe stages; its trained set is
the union of the manifests along it, all envs together (a problem trained on through one env and evaluated
through another, e.g. ``retry-arithmetic`` and ``arithmetic``, counts). Teachers of a distillation stage are
not in the lineage: the student never trained on their problems, only on its own samples.

``overlap`` is None (unknown) when a checkpoint of the lineage has no manifest (saved by an older evalgym):
the score cannot be called held out. A plain model (``tiny``, a hub id) has an empty lineage: overlap 0 with
everything evalgym trained, which says nothing about its pretraining data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

TRAINED_FILE = "trained_problems.json"       # written by evalgym.trainers.checkpoint
MAX_DEPTH = 64


def _meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _resolve_parent(parent: str, child: Path) -> Path | None:
    """The parent checkpoint folder: as written, else relative to the child's output folders."""
    p = Path(parent)
    candidates = [p] if p.is_absolute() else [p, child.parent / p, child.parent.parent / p, child.parent.parent.parent / p]
    return next((c.resolve() for c in candidates if (c / "meta.json").is_file()), None)


def lineage(checkpoint: str | Path) -> list[Path]:
    """The checkpoint and its ancestors (through ``meta.json`` parent links), nearest first; empty for a
    plain model."""
    out: list[Path] = []
    here = Path(checkpoint)
    if not (here / "meta.json").is_file():
        return out
    here = here.resolve()
    while here is not None and here not in out and len(out) < MAX_DEPTH:
        out.append(here)
        meta = _meta(here) or {}
        parent = meta.get("parent")
        here = _resolve_parent(str(parent), here) if isinstance(parent, str) and parent else None
    return out


@lru_cache(maxsize=256)
def _trained(folder: str, mtime_ns: int) -> frozenset[str]:
    doc = json.loads((Path(folder) / TRAINED_FILE).read_text())
    return frozenset(doc.get("hashes") or ())


def trained_hashes(checkpoint: str | Path) -> tuple[set[str] | None, list[dict[str, Any]]]:
    """(union of the content hashes the lineage trained on, or None when a link has no manifest;
    one entry per link: path, trained count, whether it has a manifest)."""
    union: set[str] | None = set()
    links = []
    for folder in lineage(checkpoint):
        path = folder / TRAINED_FILE
        if path.is_file():
            hashes = _trained(str(folder), path.stat().st_mtime_ns)
            links.append({"checkpoint": str(folder), "trained": len(hashes)})
            if union is not None:
                union |= hashes
        else:
            links.append({"checkpoint": str(folder), "trained": None})
            union = None
    return union, links


def contamination(checkpoint: str | Path, eval_hashes: Sequence[str]) -> dict[str, Any]:
    """How many of the evaluation's problems (content hashes) the checkpoint's lineage trained on."""
    distinct = set(eval_hashes)
    trained, links = trained_hashes(checkpoint)
    out: dict[str, Any] = {"eval_problems": len(distinct), "lineage": links}
    if trained is None:
        missing = [link["checkpoint"] for link in links if link["trained"] is None]
        out.update(overlap=None, fraction=None, trained_problems=None,
                   reason=f"no {TRAINED_FILE} in {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        return out
    n = len(distinct & trained)
    out.update(overlap=n, fraction=n / len(distinct) if distinct else 0.0, trained_problems=len(trained))
    if not links:
        out["reason"] = "a plain model: no evalgym training recorded (its pretraining data is not known here)"
    return out
