"""Running a recipe: its stages in order, every checkpoint evaluated, a leaderboard at the end.

    evalgym run                                       # mopd-2026 on SmolLM2-135M-Instruct, into runs/
    evalgym run instructgpt --out runs scale=0.1 eval.limit=16
    summary = run_recipe(load_recipe("r1"), out="runs")
    summary["report"]                                 # runs/r1/report/leaderboard.md

What lands under ``out``:

    results.sqlite          one row per (run, checkpoint, task, metric); a stage's run is <recipe>/<stage>
    <recipe>/recipe.yaml    the recipe as run (overrides applied, references resolved)
    <recipe>/<stage>/       the stage's run_dir: stage.yaml (its trainer config), step_XXXXXX/, events.jsonl, metrics.jsonl
    <recipe>/report/        leaderboard.md and leaderboard.html, stages compared side by side

Evaluation. The base model is evaluated once, as stage 0 (``base``); then every checkpoint of every
policy stage, on the recipe's ``eval`` tasks (env tasks on each env's evaluation split, disjoint from
the training split the stages draw from): right after it is saved (the trainer's ``after_save`` step;
the loop puts its RNG state back afterwards, so evaluating does not change training), and once more
after the stage for any checkpoint that has no rows yet (one saved just before a kill, or a stage
trained by ``launch``). Rows carry ``recipe``, ``stage``, ``stage_index``, ``from`` (the stage it
started from), ``refs`` (stages its config names, e.g. a student's teachers) and ``step`` in their
manifest; the leaderboard orders stages by ``stage_index`` and measures each against its ``from``.
Every score also carries its contamination check: the overlap of its problems with everything the
checkpoint's lineage trained on. An ``rm`` stage's checkpoints are reward models, not policies: they
are not evaluated (its training metrics are in its metrics.jsonl).

Resume. A stage whose final checkpoint exists is skipped; an unfinished one resumes from its last
checkpoint (the trainers resume exactly), and evaluation skips what the store already has: rerun the
same command after a kill. A stage folder written with a different config (other than its step
counts) is an error, never silently reused.

``launch`` runs each stage as ``<launch> -m evalgym.cli train <trainer> --config <stage.yaml>``, e.g.
``accelerate launch --multi_gpu --num_processes 8`` for several GPUs; evaluation stays in this process.
"""

from __future__ import annotations

import gc
import importlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from evalgym.errors import EvalgymError
from evalgym.recipes.spec import DATA_STAGES, PlannedStage, Recipe, plan, resolved, stage_refs, trainer_table
# config fields that may change between runs of one stage folder (a longer run resumes the shorter one): the
# trainers' own list, so a stage folder and its checkpoints agree on what a resume may change
from evalgym.trainers.config import RESUMABLE_FIELDS, with_new_defaults


def _log(msg: str) -> None:
    print(f"[evalgym run] {msg}", file=sys.stderr, flush=True)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def stage_state(stage: PlannedStage) -> str:
    """``done`` (final checkpoint there), ``partial`` (some checkpoints: training resumes) or ``new``;
    raises if the folder holds a run of another config."""
    from evalgym.trainers.checkpoint import latest_checkpoint, step_dirs

    saved = stage.run_dir / "stage.yaml"
    if saved.exists():
        before = with_new_defaults(type(stage.config), yaml.safe_load(saved.read_text()) or {})
        now = stage.config.model_dump(mode="json")
        changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                   if k not in RESUMABLE_FIELDS and before.get(k) != now.get(k)]
        if changed:
            raise EvalgymError(f"stage {stage.name}: {stage.run_dir} holds a run of another config ("
                               f"{'; '.join(changed)}); delete that folder or use another --out")
    if (stage.final / "meta.json").exists():
        return "done"
    latest = latest_checkpoint(stage.run_dir)
    if latest is None:
        return "new"
    steps = [int(p.name.split("_")[1]) for p in step_dirs(stage.run_dir)]
    if max(steps) > stage.config.steps:
        raise EvalgymError(f"stage {stage.name}: {stage.run_dir} has checkpoints up to step {max(steps)} but the "
                           f"stage asks for {stage.config.steps} steps; delete that folder or use another --out")
    return "partial"


class Evaluator:
    """Evaluates checkpoints on the recipe's tasks into the store, skipping what is there."""

    def __init__(self, recipe: Recipe, store_path: Path, *, progress: bool = True):
        self.recipe, self.store_path, self.progress = recipe, store_path, progress

    def run_name(self, stage: str) -> str:
        return f"{self.recipe.name}/{stage}"

    def checkpoint(self, path: str, step: int | None, stage: PlannedStage | None) -> int:
        """Evaluate one checkpoint (a folder, or the base model's name; ``stage`` None: the base model);
        returns rows written. A failed task is stored with its error (the leaderboard shows it) and logged."""
        from evalgym.benchmarks.evaluate_ckpt import EvaluationFailed, evaluate_checkpoint

        spec = self.recipe.eval
        name = stage.name if stage else "base"
        manifest = {"recipe": self.recipe.name, "stage": name, "stage_index": stage.index if stage else 0,
                    "from": stage.start if stage else None, "refs": stage_refs(self.recipe, name) if stage else [],
                    "step": step, "model": path, "backend": self.recipe.backend}
        try:
            return evaluate_checkpoint(path, spec.tasks, store=str(self.store_path), run=self.run_name(name),
                                       step=step, manifest=manifest, limit=spec.limit, num_samples=spec.num_samples,
                                       max_tokens=spec.max_tokens, env_kwargs=spec.env_kwargs, seed=spec.seed,
                                       temperature=spec.temperature, backend=self.recipe.backend,
                                       progress=self.progress)
        except EvaluationFailed as exc:
            _log(f"  evaluating {path}: {exc}")
            return sum(1 for _ in exc.rows)

    def sweep(self, stage: PlannedStage) -> int:
        """Evaluate every checkpoint of ``stage`` (oldest first)."""
        from evalgym.trainers.checkpoint import step_dirs

        return sum(self.checkpoint(str(p), int(p.name.split("_")[1]), stage) for p in step_dirs(stage.run_dir))


def train_stage(stage: PlannedStage, *, progress: bool, launch: str | None,
                after_save: Callable[[Any], None] | None, threads: int | None = None) -> None:
    """Train one stage: in this process, calling ``after_save(ref)`` after each checkpoint (the trainers'
    explicit evaluation step), or under ``launch`` (evaluation then follows the stage: see ``sweep``)."""
    module_name, _, fn_name = trainer_table()[stage.trainer]
    config_file = stage.run_dir / "stage.yaml"
    if launch and stage.trainer not in DATA_STAGES:   # a data stage (synth) runs here: nothing to distribute
        cmd = [*shlex.split(launch), "-m", "evalgym.cli", "train", stage.trainer, "--config", str(config_file)]
        beside = Path(sys.executable).parent / cmd[0]     # the venv's own `accelerate`, when it is not on PATH
        if not shutil.which(cmd[0]) and beside.is_file():
            cmd[0] = str(beside)
        elif not shutil.which(cmd[0]):
            raise EvalgymError(f"--launch {launch!r}: command {cmd[0]!r} not found")
        if not progress:
            cmd.append("--quiet")
        _log(f"  $ {shlex.join(cmd)}")
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        if subprocess.run(cmd, env=env).returncode != 0:
            raise EvalgymError(f"stage {stage.name}: `{shlex.join(cmd)}` failed (see its output above); rerun "
                               "`evalgym run` to resume from its last checkpoint")
        return

    def hook(ref: Any) -> None:
        assert after_save is not None
        try:
            after_save(ref)
        except Exception as exc:  # noqa: BLE001 - training goes on; the sweep after the stage retries
            _log(f"  evaluating {ref.path} failed ({type(exc).__name__}: {exc}); retried after the stage")

    train = getattr(importlib.import_module(module_name), fn_name)
    result = train(stage.config, progress=progress, after_save=hook if after_save is not None else None)
    if result.get("checkpoint") is None:
        raise EvalgymError(f"stage {stage.name}: the trainer returned no checkpoint")
    del result
    gc.collect()


def run_recipe(recipe: Recipe, out: str | Path = "runs", *, progress: bool = True,
               launch: str | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe`` under ``out``; returns a summary with the report paths."""
    import torch

    stages = plan(recipe, out)                # every problem surfaces before anything runs
    out_dir = Path(out).resolve()
    recipe_dir = out_dir / recipe.name
    states = {s.name: stage_state(s) for s in stages}
    write_atomic(recipe_dir / "recipe.yaml", yaml.safe_dump(resolved(recipe, out), sort_keys=False))
    threads = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    try:
        return _run(recipe, stages, states, out_dir, progress=progress, launch=launch)
    finally:
        torch.set_num_threads(threads)


def _run(recipe: Recipe, stages: list[PlannedStage], states: dict[str, str], out_dir: Path, *, progress: bool,
         launch: str | None) -> dict[str, Any]:
    from evalgym.benchmarks.leaderboard import write_leaderboard

    recipe_dir = out_dir / recipe.name
    evaluator = Evaluator(recipe, out_dir / "results.sqlite", progress=progress)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    _log(f"{recipe.name}: {len(stages)} stages -> {recipe_dir}")
    t0 = time.perf_counter()
    evaluator.checkpoint(recipe.model, None, None)
    timings["base"] = time.perf_counter() - t0
    for s in stages:
        t0 = time.perf_counter()
        head = f"stage {s.index}/{len(stages)} {s.name} ({s.trainer} from {s.start})"
        if states[s.name] == "done":
            _log(f"{head}: done before, skipped ({s.final})")
        else:
            _log(f"{head}{': resuming' if states[s.name] == 'partial' else ''} -> {s.run_dir}")
            write_atomic(s.run_dir / "stage.yaml", yaml.safe_dump(s.config.model_dump(mode="json"), sort_keys=False))
            on_save = (lambda ref, s=s: evaluator.checkpoint(ref.path, ref.step, s)) if s.is_policy else None
            train_stage(s, progress=progress, launch=launch, after_save=on_save, threads=recipe.threads)
            if not (s.final / "meta.json").exists():
                raise EvalgymError(f"stage {s.name}: training ended without its final checkpoint {s.final}")
        if s.is_policy:
            evaluator.sweep(s)
        timings[s.name] = time.perf_counter() - t0

    runs = [evaluator.run_name("base")] + [evaluator.run_name(s.name) for s in stages if s.is_policy]
    board = write_leaderboard(out_dir / "results.sqlite", recipe_dir / "report", runs=runs)
    return {"recipe": recipe.name, "out": str(recipe_dir), "store": str(out_dir / "results.sqlite"),
            "report": board["markdown"], "html": board["html"], "stages": [s.name for s in stages],
            "trained": [s.name for s in stages if states[s.name] != "done"],
            "skipped": [s.name for s in stages if states[s.name] == "done"],
            "wall_s": {k: round(v, 1) for k, v in timings.items()}, "total_s": round(time.perf_counter() - t_start, 1)}


def comparison_table(store: str | Path, recipe: str) -> list[dict[str, Any]]:
    """Each stage's final checkpoint per task (primary metric), in stage order, with the stage it is
    measured against (its ``from``), from the store; ``ci``: each task's 95 % interval, ``beyond``: whether
    the value the stage started from lies outside it (the stage's effect is shown)."""
    from evalgym.benchmarks.leaderboard import baseline, beyond, build_board, interval
    from evalgym.benchmarks.store import ResultsStore

    with ResultsStore(store, create=False) as db:
        rows = [r for r in db.rows() if r.manifest.get("recipe") == recipe]
    out = []
    board = build_board(rows)
    for s in board.stages:
        steps = [k.step for k, _ in s.final.values() if k.step is not None]
        ref = baseline(board, s)
        out.append({"stage": s.name, "from": ref.name if ref else None, "step": max(steps) if steps else None,
                    **{t: round(row.value, 3) for t, (_, row) in s.final.items()},
                    "ci": {t: interval(row) for t, (_, row) in s.final.items()},
                    "beyond": {t: beyond(row, ref.final[t][1]) for t, (_, row) in s.final.items()
                               if ref is not None and t in ref.final}})
    return out


COMPARISON_KEYS = ("stage", "from", "step", "ci", "beyond")   # the rest of a comparison row: one value per task


def comparison_tasks(rows: list[dict[str, Any]]) -> list[str]:
    """The task columns of :func:`comparison_table`'s rows."""
    return [k for k in rows[0] if k not in COMPARISON_KEYS] if rows else []


def comparison_cell(rows: list[dict[str, Any]], row: dict[str, Any], task: str, digits: int = 3) -> str:
    """``value [low, high] (+change *)``: the change from the stage it started from, ``*`` when beyond the
    stage's 95 % interval; ``—`` when the stage has no score for the task."""
    if row.get(task) is None:
        return "—"
    ci = row["ci"].get(task)
    text = f"{row[task]:.{digits}f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    start = next((r for r in rows if r["stage"] == row["from"]), None) if row["from"] else None
    if start is not None and start.get(task) is not None:
        text += f" ({row[task] - start[task]:+.{digits}f}{' *' if row['beyond'].get(task) else ''})"
    return text
