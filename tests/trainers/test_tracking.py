"""Experiment trackers for real: TensorBoard's event files read back (the scalars of metrics.jsonl, a table of
sampled completions per step, the evaluation scores of the results store after a save); wandb, mlflow and
trackio in their offline/local modes read back from their own files; a tracker that is not installed is
refused before any model loads, naming the pip extra."""

from __future__ import annotations

import importlib.abc
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from tests.trainers._verifiers import DigitShare


def _grpo(tiny_path, run_dir, **kw):
    base = dict(model=tiny_path, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}},
                steps=2, prompts_per_step=4, group_size=2, max_tokens=10, lr=1e-2, save_every=2, seed=3,
                run_dir=str(run_dir))
    return GRPOConfig(**{**base, **kw})


def _metrics(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_the_metrics_the_samples_and_the_evaluation_scores(tmp_path, tiny_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from evalgym.benchmarks.evaluate_ckpt import CheckpointEvaluator, EvalSpec
    from evalgym.benchmarks.store import ResultsStore

    run = tmp_path / "run"
    with ResultsStore(tmp_path / "results.sqlite") as store:
        evaluator = CheckpointEvaluator(EvalSpec(tasks=["evalgym_arithmetic"], limit=4, max_tokens=8), store)
        train_grpo(_grpo(tiny_path, run, report_to=["tensorboard"]), progress=False, after_save=evaluator)
        evaluator.close()
        scores = [r for r in store.rows() if r.step == 2]
    assert scores, "the evaluator stored nothing"
    logdirs = list((run / "tracking" / "tensorboard").rglob("events.out.tfevents.*"))
    assert logdirs
    acc = EventAccumulator(str(logdirs[0].parent), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    rows = _metrics(run)
    for key in ("reward", "loss", "kl", "tokens_per_s"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[key] for r in rows], rel=1e-6)
    for r in scores:   # every score of this run's evaluation, at its checkpoint's step
        ev = acc.Scalars(f"eval/{r.task}/{r.metric}")
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in ev] == [(2, r.value)]
    tables = acc.Tensors("completions/text_summary")
    assert [t.step for t in tables] == [1, 2]
    text = tables[0].tensor_proto.string_val[0].decode()
    lines = text.splitlines()
    assert lines[0] == "| prompt | completion | reward | verdict |" and len(lines) == 2 + 4   # a row per prompt
    rewards = [float(line.split(" | ")[-2]) for line in lines[2:]]
    assert all(0.0 <= x <= 1.0 for x in rewards)


def test_wandb_mlflow_and_trackio_offline(tmp_path, tiny_path, monkeypatch):
    """The three other trackers in one run, each local: wandb's offline run summary, mlflow's file store
    (metric history and the samples table artifact), trackio's SQLite: the same scalars as metrics.jsonl."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    import trackio.sqlite_storage as trackio_storage
    import trackio.utils as trackio_utils
    monkeypatch.setattr(trackio_utils, "TRACKIO_DIR", tmp_path / "trackio")   # it reads the env var at import
    monkeypatch.setattr(trackio_storage, "TRACKIO_DIR", tmp_path / "trackio")
    run = tmp_path / "run"
    train_grpo(_grpo(tiny_path, run, report_to=["wandb", "mlflow", "trackio"]), progress=False)
    rows = _metrics(run)

    (offline,) = list((run / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    history: dict[int, dict] = {}
    for rec in _wandb_records(offline):
        if rec.WhichOneof("record_type") == "history":
            history.setdefault(rec.history.step.num, {}).update(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    assert sorted(history) == [1, 2]
    for r in rows:
        assert history[r["step"]]["reward"] == pytest.approx(r["reward"]) and history[r["step"]]["loss"] == r["loss"]
        assert history[r["step"]]["completions/_type"] == "table-file" and history[r["step"]]["completions/nrows"] == 4

    import mlflow
    client = mlflow.tracking.MlflowClient(tracking_uri=(run / "tracking" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("evalgym-grpo")
    (mrun,) = client.search_runs([exp.experiment_id])
    history = client.get_metric_history(mrun.info.run_id, "reward")
    assert [(h.step, h.value) for h in history] == [(r["step"], pytest.approx(r["reward"])) for r in rows]
    artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id, "completions")}
    assert artifacts == {"completions/step_000001.json", "completions/step_000002.json"}

    db = trackio_storage.SQLiteStorage.get_project_db_path("evalgym-grpo")
    assert db.is_file() and str(db).startswith(str(tmp_path / "trackio"))
    with sqlite3.connect(db) as con:
        logged = [json.loads(m) for (m,) in con.execute("SELECT metrics FROM metrics ORDER BY step")]
    rewards = [m["reward"] for m in logged if "reward" in m]
    assert rewards == pytest.approx([r["reward"] for r in rows])


def _wandb_records(path: Path) -> list:
    """The records of a wandb offline run file (wandb's LevelDB-style log: a 7-byte header, 32 KiB blocks,
    each record a 7-byte header (crc, length, type: 1 full, 2 first, 3 middle, 4 last) and a protobuf)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, out, block = 7, b"", [], 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        n, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (n == 0 and kind == 0):   # the rest of a block is padding
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


class _Hide(importlib.abc.MetaPathFinder):
    """Makes a package uninstalled for this process (as on a machine without it)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r}")
        return None


def test_a_tracker_that_is_not_installed_names_its_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "meta_path", [_Hide("wandb"), *sys.meta_path])
    for mod in [m for m in sys.modules if m == "wandb" or m.startswith("wandb.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(EvalgymError, match=r"report_to: \['wandb'\] not installed: pip install 'evalgym\[wandb\]'"):
        load_config(GRPOConfig, None, ["model=/nonexistent", f"run_dir={tmp_path / 'r'}", "report_to=[wandb]"])
    assert not (tmp_path / "r").exists()
