"""Experiment trackers beside ``metrics.jsonl``: ``report_to: [tensorboard, wandb, mlflow, trackio]``.

    evalgym train grpo report_to='[tensorboard, wandb]'      # then: tensorboard --logdir runs/grpo/tracking

Every tracker is accelerate's own (``accelerate.tracking``), started on the main process, and local by
default — nothing needs an account or a network:

- tensorboard: event files in ``run_dir/tracking/tensorboard``;
- wandb: ``WANDB_MODE=offline`` unless set (``wandb sync run_dir/tracking/wandb/...`` uploads it later);
- mlflow: ``MLFLOW_TRACKING_URI`` or a local file store at ``run_dir/tracking/mlruns``;
- trackio: its local SQLite under ``TRACKIO_DIR`` (default ``run_dir/tracking/trackio``, when trackio is
  first imported here).

What goes there: every scalar the step writes to ``metrics.jsonl`` (same names, same step), the resolved
config as hyperparameters, a table per step of sampled completions (RL trainers: prompt, completion,
reward, verdict details; distillation adds the sample's teacher KL), and the scores of every evaluation in
the results store of this run that appear after a save (``eval/<task>/<metric>`` at the checkpoint's step).
(mlflow names ``a/b`` as ``a.b``: its file store
cannot hold a metric ``a`` beside ``a/b``.) A tracker whose package is missing is refused by the config (``TrainConfig.report_to``) before any model
loads, naming the pip extra. Tables go to tensorboard as markdown text (``completions`` tag), to wandb as a
``wandb.Table``, to mlflow as a JSON artifact (``mlflow.log_table``), to trackio as a ``trackio.Table``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TABLE_COLUMNS = ("prompt", "completion", "reward", "verdict", "teacher_kl")


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _flat_config(cfg: Any) -> dict[str, Any]:
    """Hyperparameters as trackers take them: str/int/float/bool values, nested fields dotted."""
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, (str, int, float, bool)):
            out[prefix] = v
        else:
            out[prefix] = json.dumps(v, default=str)[:250]
    walk("", json.loads(json.dumps(cfg.model_dump(), default=str)))
    return out


class Tracking:
    """The trackers of one run (main process only; other processes get an empty one)."""

    def __init__(self, cfg: Any, run_dir: str | Path, *, name: str, enabled: bool = True):
        self.trackers: list[Any] = []
        self.run_dir = Path(run_dir)
        self.run_id = str(self.run_dir.resolve())
        self.logged_evals: set[str] = set()
        if not enabled or not cfg.report_to:
            return
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, TrackioTracker, WandBTracker

        root = self.run_dir / "tracking"
        root.mkdir(parents=True, exist_ok=True)
        run_name = self.run_dir.name
        for kind in cfg.report_to:
            if kind == "tensorboard":
                t = TensorBoardTracker(run_name, root / "tensorboard")
            elif kind == "wandb":
                os.environ.setdefault("WANDB_MODE", "offline")
                os.environ.setdefault("WANDB_SILENT", "true")
                t = WandBTracker(f"evalgym-{name}", name=run_name, dir=str(root), reinit="finish_previous")
            elif kind == "mlflow":
                import mlflow

                if not os.environ.get("MLFLOW_TRACKING_URI"):
                    # a local file store (mlflow-skinny has no SQLite store; MLflow 3 asks for this opt-in)
                    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                    mlflow.set_tracking_uri((root / "mlruns").resolve().as_uri())
                t = MLflowTracker(experiment_name=f"evalgym-{name}", run_name=run_name)
            else:
                os.environ.setdefault("TRACKIO_DIR", str(root / "trackio"))
                t = TrackioTracker(f"evalgym-{name}", name=run_name, auto_log_cpu=False, auto_log_gpu=False)
            t.start()
            self.trackers.append(t)
        hparams = _flat_config(cfg)
        for t in self.trackers:
            try:
                t.store_init_configuration(hparams if t.name != "tensorboard" else
                                           {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))})
            except Exception:  # noqa: BLE001 - hyperparameters are a courtesy; a tracker's quirk never stops training
                pass

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def log(self, values: Mapping[str, Any], step: int) -> None:
        """The step's scalars (what metrics.jsonl holds), under the same names."""
        scalars = _scalars(values)
        for t in self.trackers:
            t.log(_named_for(t, scalars), step=step)

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], step: int) -> None:
        """One table of ``rows`` (dicts with the ``TABLE_COLUMNS`` keys they have) at ``step``."""
        if not rows or not self.trackers:
            return
        columns = [c for c in TABLE_COLUMNS if any(c in r for r in rows)]
        data = [[_cell(r.get(c)) for c in columns] for r in rows]
        for t in self.trackers:
            if t.name == "tensorboard":
                t.tracker.add_text(name, _markdown(columns, data), global_step=step)
                t.tracker.flush()
            elif t.name == "wandb":
                t.log_table(name, columns=columns, data=data, step=step)
            elif t.name == "mlflow":
                import mlflow

                mlflow.log_table({c: [row[i] for row in data] for i, c in enumerate(columns)},
                                 artifact_file=f"{name}/step_{step:06d}.json")
            elif t.name == "trackio":
                import trackio

                t.log({name: trackio.Table(columns=columns, data=data)}, step=step)

    def log_evaluations(self, store: Any) -> int:
        """Scores of this run's evaluations in ``store`` (a ``ResultsStore``) not logged yet, as
        ``eval/<task>/<metric>`` at each checkpoint's step. Returns how many were logged."""
        if not self.trackers or store is None:
            return 0
        fresh = [r for r in store.rows() if r.run_id == self.run_id and r.eval_id + r.metric not in self.logged_evals]
        by_step: dict[int, dict[str, float]] = {}
        for r in fresh:
            self.logged_evals.add(r.eval_id + r.metric)
            by_step.setdefault(int(r.step or 0), {})[f"eval/{r.task}/{r.metric}"] = float(r.value)
        for step, values in sorted(by_step.items()):
            for t in self.trackers:
                t.log(_named_for(t, values), step=step)
        return len(fresh)

    def close(self) -> None:
        for t in self.trackers:
            try:
                t.finish()
            except Exception:  # noqa: BLE001 - closing one tracker must not keep the others open
                pass
        self.trackers = []


def _named_for(tracker: Any, values: dict[str, float]) -> dict[str, float]:
    """mlflow's file store keeps a metric as a file named after it: ``reward`` and ``reward/arithmetic-v1``
    would be a file and a folder of one name, so mlflow gets ``reward.arithmetic-v1``; the others as is."""
    if tracker.name != "mlflow":
        return values
    return {k.replace("/", "."): v for k, v in values.items()}


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (int, float, str)):
        return v
    return json.dumps(v, default=str, sort_keys=True)


def _markdown(columns: Sequence[str], data: Sequence[Sequence[Any]]) -> str:
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", "<br>")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(x) for x in row) + " |" for row in data]
    return "\n".join(lines)


def completion_rows(rollout: Any, rows: Sequence[Any] | None = None, limit: int = 16) -> list[dict[str, Any]]:
    """The table of one RL step: the first sample of each group (``limit`` rows at most), with the
    distillation teacher's KL of the sample (mean over its tokens of log π_sampler − log π_teacher) when the
    algorithm's ``rows`` carry teacher log-probs."""
    out: list[dict[str, Any]] = []
    k = 0
    for g in rollout.groups:
        for i, t in enumerate(g.trajectories):
            row = rows[k + i] if rows is not None and k + i < len(rows) else None
            if i == 0 and len(out) < limit:
                final = t.final
                prompt = next((m.content for m in reversed(final.messages) if m.role == "user"), "")
                item = {"prompt": prompt, "completion": final.completion.text, "reward": float(t.reward),
                        "verdict": {"correct": final.verdict.correct, "error": final.verdict.error,
                                    **dict(final.verdict.details or {})}}
                if row is not None and getattr(row, "teacher_logp", None) is not None:
                    ep = row.episode
                    diffs = [ep.logprobs[j] - row.teacher_logp[j] for j in range(len(ep.ids)) if ep.sampled[j]]
                    item["teacher_kl"] = sum(diffs) / max(len(diffs), 1)
                out.append(item)
        k += len(g.trajectories)
    return out
