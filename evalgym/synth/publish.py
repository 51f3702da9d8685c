"""Publishing a synthetic dataset: Hugging Face ``datasets`` on disk, parquet and JSONL, and a dataset card
that says how it was made.

    claim(out_dir, cfg)                         # before anything runs: refuse a folder of another config
    publish(out_dir, cfg, {"sft": rows, "dpo": pairs}, card)

The folder (``OUT``):

    dataset_dict.json, sft/, dpo/, rl/     ``datasets.load_from_disk(OUT)`` (a DatasetDict, one split per shape);
                                           ``OUT/sft`` alone is a Dataset: what trainers take as ``data: OUT/sft``
                                           (``data: OUT`` when it holds one shape)
    sft.parquet, sft.jsonl, ...            the same rows as parquet and JSONL
    README.md                              the dataset card: pipeline config, teachers and their checkpoints,
                                           verifier versions, counts after each stage, contamination report,
                                           content hash (YAML front matter for the hub, Markdown for people)
    synth.json                             the card as JSON (``evalgym.synth.publish.read_card(OUT)``)
    report.json                            everything dropped and why: contamination hits, duplicates, bad
                                           prompt rows, teacher failures, judge failures (with examples)
    meta.json                              written last: the dataset is complete (a recipe stage is done)
    work/                                  generation shards and the run's config, for resuming

``content_hash`` is a hash of every published row in order: two folders with the same hash hold the same
data. A folder that exists with another config is refused unless ``overwrite`` (which deletes it first).
``push_to_hub`` uploads the DatasetDict and the card where a hub is reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.synth.config import SynthConfig

CARD_FORMAT = 1
WORK = "work"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def claim(out_dir: Path, cfg: SynthConfig) -> str:
    """Take ``out_dir`` for this config: ``new``, ``resume`` (same config: finished shards are reused) or
    ``done`` (already published with this config). Another config's folder is refused unless ``overwrite``."""
    wanted = cfg.card_config()
    wanted.pop("push_to_hub", None)
    saved = out_dir / WORK / "config.json"
    if out_dir.exists() and any(out_dir.iterdir()):
        before = json.loads(saved.read_text()) if saved.is_file() else None
        if cfg.overwrite:
            shutil.rmtree(out_dir)
        elif before is None:
            raise EvalgymError(f"out: {out_dir} exists and is not an evalgym synth folder; choose another "
                               "folder or pass --overwrite (overwrite=true) to replace it")
        elif before != wanted:
            changed = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
            raise EvalgymError(f"out: {out_dir} holds a dataset made with another config (differs in: "
                               f"{', '.join(changed)}); pass --overwrite (overwrite=true) to replace it")
        elif (out_dir / "meta.json").is_file():
            return "done"
    state = "resume" if saved.is_file() else "new"
    _write_atomic(saved, json.dumps(wanted, indent=1, sort_keys=True))
    return state


def content_hash(shapes: dict[str, list[dict[str, Any]]]) -> str:
    h = hashlib.sha256()
    for name in sorted(shapes):
        h.update(f"\x1e{name}\x1e".encode())
        for row in shapes[name]:
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            h.update(b"\n")
    return h.hexdigest()[:16]


def model_provenance(name: str) -> dict[str, Any]:
    """What a card records of a model: its name, folder, and for an evalgym checkpoint its step, run, parent
    and git sha; a sha256 of its weights files."""
    from evalgym.models import resolve_model

    out: dict[str, Any] = {"model": name}
    try:
        path = Path(resolve_model(name))
    except EvalgymError as exc:
        return {**out, "error": str(exc)}
    if not path.is_dir():
        return {**out, "hub_id": str(path)}
    out["path"] = str(path)
    meta = path / "meta.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        out["checkpoint"] = {k: m.get(k) for k in ("step", "run_id", "parent", "git_sha")}
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    out["weights_sha256"] = h.hexdigest()[:16]
    return out


def publish(out_dir: Path, cfg: SynthConfig, shapes: dict[str, list[dict[str, Any]]], card: dict[str, Any],
            report: dict[str, Any]) -> dict[str, Any]:
    """Write the dataset, its exports and its card into ``out_dir``; returns the card (with its hash)."""
    import datasets

    datasets.disable_progress_bars()
    empty = [k for k, rows in shapes.items() if not rows]
    if empty:
        card.setdefault("warnings", []).append(f"no rows for shape(s) {empty}: left out of the dataset")
    shapes = {k: rows for k, rows in shapes.items() if rows}
    card = {"format": CARD_FORMAT, **card, "content_hash": content_hash(shapes),
            "rows": {k: len(v) for k, v in shapes.items()}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out_dir / "meta.json").unlink(missing_ok=True)
    tmp = out_dir / ".publish-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if shapes:
        dd = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in shapes.items()})
        dd.save_to_disk(str(tmp))
        for name, ds in dd.items():
            ds.to_parquet(str(tmp / f"{name}.parquet"))
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for row in shapes[name]:
                    f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        for old in ("sft", "dpo", "rl"):      # shapes of an earlier publish of this config that are gone now
            for p in (out_dir / old, out_dir / f"{old}.parquet", out_dir / f"{old}.jsonl"):
                if old not in shapes and p.exists():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        for entry in tmp.iterdir():
            target = out_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    shutil.rmtree(tmp, ignore_errors=True)
    _write_atomic(out_dir / "report.json", json.dumps(report, indent=1, ensure_ascii=False, default=str))
    _write_atomic(out_dir / "synth.json", json.dumps(card, indent=1, ensure_ascii=False, default=str))
    _write_atomic(out_dir / "README.md", render_card(card))
    _write_atomic(out_dir / "meta.json", json.dumps({"kind": "evalgym-synth-dataset", "content_hash": card["content_hash"],
                                                     "rows": card["rows"], "created": card["created"]}, indent=1))
    if cfg.push_to_hub:
        push(out_dir, cfg.push_to_hub)
    return card


def read_card(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / "synth.json"
    if not path.is_file():
        raise EvalgymError(f"{out_dir}: no synth.json (not a published evalgym synth dataset)")
    return json.loads(path.read_text())


def push(out_dir: Path, repo_id: str) -> None:
    """Upload the DatasetDict and the card to the hub (``repo_id``)."""
    import datasets

    try:
        dd = datasets.load_from_disk(str(out_dir))
        dd.push_to_hub(repo_id)
        from huggingface_hub import HfApi

        HfApi().upload_file(path_or_fileobj=str(out_dir / "README.md"), path_in_repo="README.md", repo_id=repo_id,
                            repo_type="dataset")
    except Exception as exc:  # noqa: BLE001 - offline, no token, no such org: the files stay on disk
        raise EvalgymError(f"push_to_hub {repo_id}: {type(exc).__name__}: {str(exc)[:300]} (the dataset is complete "
                           f"on disk at {out_dir}; push it later with datasets.load_from_disk(...).push_to_hub)") from None


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_card(card: dict[str, Any]) -> str:
    """The README.md dataset card: YAML front matter (hub metadata) and Markdown."""
    import yaml

    front = {"pretty_name": card.get("name") or "evalgym synthetic data", "tags": ["synthetic", "evalgym"],
             "configs": [{"config_name": k, "data_files": f"{k}.parquet"} for k in card["rows"]],
             "evalgym": {"content_hash": card["content_hash"], "format": card["format"]}}
    cfg = card["config"]
    counts = card.get("counts", {})
    contam = card.get("contamination", {})
    parts = [f"---\n{yaml.safe_dump(front, sort_keys=False)}---", f"# {front['pretty_name']}",
             f"Synthetic data made by `evalgym synth` on {card['created']}. Content hash `{card['content_hash']}`; "
             f"rows: {', '.join(f'{k} {v}' for k, v in card['rows'].items()) or 'none'}.",
             "## Counts after each stage", _table([[k, v] for k, v in counts.items()], ["stage", "count"]),
             "## Teachers", _table([[t.get("route", ""), t["model"], t.get("path", t.get("hub_id", "")),
                                     json.dumps(t.get("checkpoint")) if t.get("checkpoint") else "",
                                     t.get("weights_sha256", "")] for t in card.get("teachers", [])],
                                    ["route", "model", "path", "checkpoint", "weights sha256"]),
             "## Verifiers", _table([[v["verifier"], v["version"], v.get("samples", "")] for v in card.get("verifiers", [])],
                                    ["verifier", "version", "samples graded"]),
             "## Contamination",
             f"Checked against {contam.get('index', {}).get('docs', 0)} eval docs ({contam.get('index', {}).get('n')}-gram "
             f"windows, exact normalized text, content hashes, procedural eval splits). Dropped: "
             f"{contam.get('dropped', 0)}.",
             _table([[k, v] for k, v in (contam.get("by_reason") or {}).items()], ["reason", "rows dropped"]),
             _table([[k, v] for k, v in (contam.get("index", {}).get("sources") or {}).items()], ["eval source", "docs"]),
             "Not checked (unavailable here): " + (", ".join(f"{s['source']} ({s['reason'][:80]})"
                                                          for s in contam.get("index", {}).get("not_checked", [])) or "none"),
             "## Failures and drops", "```json\n" + json.dumps(card.get("failures", {}), indent=1, default=str)[:6000] + "\n```",
             "## Pipeline config", "```yaml\n" + yaml.safe_dump(cfg, sort_keys=False) + "```",
             "## Load it", "```python\nimport datasets\nds = datasets.load_from_disk(PATH)       # DatasetDict: "
             + ", ".join(card["rows"]) + "\n```\nTrainers: `data: PATH/sft` (sft), `data: PATH/dpo` (dpo, rm); "
             "rows name `env_id` and `hash`, so checkpoints list them in trained_problems.json."]
    return "\n\n".join(parts) + "\n"
