"""Leaderboards from the results store: a Markdown table and one self-contained HTML page.

    evalgym leaderboard --out reports/               # all runs in runs/results.sqlite
    evalgym leaderboard --store other.sqlite --runs a,b --tasks gsm8k,math500 --out reports/ --json

    from evalgym.benchmarks.leaderboard import build_board, to_markdown, write_leaderboard
    board = build_board(ResultsStore(path, create=False).rows())
    board.flags                                       # checkpoints well below their run's best

What is shown. Rows are checkpoints (run, checkpoint, step), columns are tasks, each task scored by
its *primary metric*: the first of ``PRIMARY_METRICS`` the task has (lm-eval filter suffixes such as
``exact_match,strict-match`` count as their base name; unfiltered, then ``none``, then ``strict-match``
win), else its first metric by name. A cell is ``value [low, high]``: the stored confidence interval,
else value ±1.96 stderr, else no interval. Higher is better unless the rows' manifests say ``higher_is_better: false``.
The best value of each column is marked (bold in Markdown, green in HTML).

Flags. A checkpoint is flagged on a task when it falls below its run's best checkpoint on that task by
more than its own interval: ``high < best.value`` (for lower-is-better metrics, ``low > best.value``),
i.e. the best score lies outside the checkpoint's interval. Without an interval nothing is flagged
(the noise is unknown). A flag *after* the best step is a regression; before it, the run had not got
there yet.

Recipe comparison. Runs whose manifests name a ``recipe`` are grouped by it; each run is a stage
(``manifest["stage"]``, else the run name), ordered by ``manifest["stage_index"]`` when every stage has
one, else by first-seen ``time``; a stage's cell is its final (highest-step) checkpoint on the task, and
its change is measured against the stage it started from (``manifest["from"]``; the row above only
when the manifest does not say).

Held out. A score whose manifest carries a contamination check (``manifest["contamination"]``: the
overlap of its problems with everything the checkpoint's lineage trained on) is held out when the overlap
is 0; an overlap > 0 marks the cell "not held out" (⚠, with the count), an unknown overlap "?".

Errors. Evaluations that failed are passed in (``errors``) and shown in their cell and in a list.
Several evaluations of one (checkpoint, task) under different settings: the latest one is shown.
"""

from __future__ import annotations

import html as _html
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from evalgym.benchmarks.store import DEFAULT_STORE, EvalError, ResultRow, ResultsStore
from evalgym.errors import EvalgymError

PRIMARY_METRICS = ("exact_match", "pass@1", "acc", "prompt_level_strict_acc", "acc_norm", "f1", "mean@1")
PRIMARY_FILTERS = ("", "none", "strict-match")    # lm-eval filter suffixes, preferred first
Z95 = 1.959963984540054
PROVENANCE_KEYS = ("model", "git_sha", "lm_eval_version", "sampling", "seed", "backend", "time")


@dataclass(frozen=True)
class CheckpointKey:
    """A leaderboard row: one checkpoint of one run (``step`` None for a plain model)."""

    run: str
    checkpoint: str
    step: int | None

    @property
    def label(self) -> str:
        return self.checkpoint.rstrip("/").rsplit("/", 1)[-1] or self.checkpoint


@dataclass(frozen=True)
class Flag:
    """``key`` scores below its run's best on ``task`` by more than its interval."""

    key: CheckpointKey
    task: str
    value: float
    bound: float            # the interval edge nearest the best (high, or low when lower is better)
    best: CheckpointKey
    best_value: float

    @property
    def regression(self) -> bool:
        """The flagged checkpoint comes after the run's best one (the run got worse)."""
        return self.key.step is not None and self.best.step is not None and self.key.step > self.best.step


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe (a run) and its final checkpoint per task."""

    recipe: str
    name: str
    run: str
    final: dict[str, tuple[CheckpointKey, ResultRow]]
    start: str | None = None                 # the stage it started from ("base", a stage), if known
    refs: tuple[str, ...] = ()               # stages its config names (a student's teachers)


@dataclass
class Board:
    """Everything the Markdown and HTML views show, computed once from the store's rows."""

    tasks: list[str]
    metrics: dict[str, str]                                  # task -> primary metric
    keys: list[CheckpointKey]                                # rows, by run then step
    cells: dict[tuple[CheckpointKey, str], ResultRow]        # (row, task) -> primary-metric row
    higher_is_better: dict[str, bool]
    best: dict[str, float]                                   # task -> best value in the column
    flags: list[Flag] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    errors: dict[tuple[CheckpointKey, str], EvalError] = field(default_factory=dict)
    sampled: set[str] = field(default_factory=set)          # eval ids whose samples page is written

    def cell(self, key: CheckpointKey, task: str) -> ResultRow | None:
        return self.cells.get((key, task))

    def error(self, key: CheckpointKey, task: str) -> EvalError | None:
        return self.errors.get((key, task))

    def is_best(self, key: CheckpointKey, task: str) -> bool:
        row = self.cell(key, task)
        return row is not None and row.value == self.best[task]

    def flag(self, key: CheckpointKey, task: str) -> Flag | None:
        return self._flag_index.get((key, task))

    @cached_property
    def _flag_index(self) -> dict[tuple[CheckpointKey, str], Flag]:
        return {(f.key, f.task): f for f in self.flags}

    def provenance(self, key: CheckpointKey) -> dict[str, Any]:
        """The manifest fields of the checkpoint's most recent row (any task)."""
        latest = self._latest.get(key)
        if latest is None:
            return {}
        return {k: latest.manifest[k] for k in PROVENANCE_KEYS if k in latest.manifest}

    @cached_property
    def _latest(self) -> dict[CheckpointKey, ResultRow]:
        latest: dict[CheckpointKey, ResultRow] = {}
        for (key, _), row in self.cells.items():
            if key not in latest or str(row.manifest.get("time", "")) > str(latest[key].manifest.get("time", "")):
                latest[key] = row
        return latest


def interval(row: ResultRow) -> tuple[float, float] | None:
    """The row's 95% interval: the stored one, else value ± 1.96 stderr, else None."""
    if row.ci_low is not None and row.ci_high is not None:
        return row.ci_low, row.ci_high
    if row.stderr is not None:
        return row.value - Z95 * row.stderr, row.value + Z95 * row.stderr
    return None


def beyond(row: ResultRow, start: ResultRow) -> bool:
    """A stage's change counts as shown when the value it started from lies outside its 95 % interval."""
    ci = interval(row)
    return ci is not None and not ci[0] <= start.value <= ci[1]


def primary_metric(metrics: Iterable[str]) -> str:
    """The metric a task is ranked by: the first of PRIMARY_METRICS present, else the first by name."""
    def rank(metric: str) -> tuple[int, int, str]:
        base, _, filt = metric.partition(",")
        pref = PRIMARY_METRICS.index(base) if base in PRIMARY_METRICS else len(PRIMARY_METRICS)
        return pref, PRIMARY_FILTERS.index(filt) if filt in PRIMARY_FILTERS else len(PRIMARY_FILTERS), metric
    return min(metrics, key=rank)


def fmt_cell(row: ResultRow) -> str:
    """``0.42 [0.35, 0.49]`` (or ``0.42`` without an interval)."""
    ci = interval(row)
    return f"{row.value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def held_out(row: ResultRow) -> bool | None:
    """True: checked, no overlap with training; False: overlap > 0; None: not checked or unknown."""
    c = row.manifest.get("contamination")
    if not isinstance(c, dict) or not isinstance(c.get("overlap"), int):
        return None
    return c["overlap"] == 0


def contamination_note(row: ResultRow) -> str:
    """``""`` when held out; ``"⚠ not held out: 7/10 trained on"``; ``"? overlap unknown: ..."``."""
    c = row.manifest.get("contamination")
    if not isinstance(c, dict):
        return ""
    if isinstance(c.get("overlap"), int):
        return "" if c["overlap"] == 0 else f"⚠ not held out: {c['overlap']}/{c.get('eval_problems')} trained on"
    return f"? overlap unknown: {c.get('reason', 'not checked')}"


def _later(a: ResultRow, b: ResultRow) -> bool:
    return str(a.manifest.get("time", "")) >= str(b.manifest.get("time", ""))


def build_board(rows: Sequence[ResultRow], errors: Sequence[EvalError] = ()) -> Board:
    """The leaderboard of ``rows`` (any runs, tasks, metrics) and failed evaluations ``errors``. Raises
    EvalgymError when both are empty."""
    if not rows and not errors:
        raise EvalgymError("leaderboard: no results to show")
    by_task: dict[str, set[str]] = {}
    for r in rows:
        by_task.setdefault(r.task, set()).add(r.metric)
    tasks = sorted(set(by_task) | {e.task for e in errors})
    metrics = {t: primary_metric(by_task[t]) if t in by_task else "—" for t in tasks}
    cells: dict[tuple[CheckpointKey, str], ResultRow] = {}
    higher: dict[str, bool] = {t: True for t in tasks}
    for r in rows:
        if r.metric == metrics[r.task]:
            at = (CheckpointKey(r.run, r.checkpoint, r.step), r.task)
            if at not in cells or _later(r, cells[at]):
                cells[at] = r
            if r.manifest.get("higher_is_better") is False:
                higher[r.task] = False
    failed = {(CheckpointKey(e.run, e.checkpoint, e.step), e.task): e for e in errors}
    keys = sorted({k for k, _ in cells} | {k for k, _ in failed},
                  key=lambda k: (k.run, k.step is not None, k.step or 0, k.checkpoint))
    pick = {t: (max if higher[t] else min) for t in tasks}
    best = {t: pick[t]((r.value for (_, task), r in cells.items() if task == t), default=float("nan")) for t in tasks}
    board = Board(tasks, metrics, keys, cells, higher, best, errors=failed)
    board.flags = find_flags(board)
    board.stages = recipe_stages(board)
    return board


def find_flags(board: Board) -> list[Flag]:
    """Checkpoints below their run's best by more than their interval (see the module docstring)."""
    flags = []
    for task in board.tasks:
        up = board.higher_is_better[task]
        for run in dict.fromkeys(k.run for k in board.keys):
            scored = [(k, board.cells[(k, task)]) for k in board.keys if k.run == run and (k, task) in board.cells]
            if len(scored) < 2:
                continue
            best_key, best_row = (max if up else min)(scored, key=lambda kr: kr[1].value)
            for key, row in scored:
                ci = interval(row)
                if key == best_key or ci is None:
                    continue
                bound = ci[1] if up else ci[0]
                if (bound < best_row.value) if up else (bound > best_row.value):
                    flags.append(Flag(key, task, row.value, bound, best_key, best_row.value))
    return flags


def recipe_stages(board: Board) -> list[Stage]:
    """The stages of every recipe, recipes by name, stages in order (see the module docstring)."""
    runs: dict[str, dict[str, Any]] = {}
    for (key, task), row in board.cells.items():
        info = runs.setdefault(key.run, {"recipe": None, "stage": None, "index": None, "time": None, "from": None,
                                         "refs": None})
        m = row.manifest
        for field_, mkey in (("recipe", "recipe"), ("stage", "stage"), ("index", "stage_index"), ("from", "from"),
                             ("refs", "refs")):
            if info[field_] is None and m.get(mkey) is not None:
                info[field_] = m[mkey]
        if m.get("time") is not None and (info["time"] is None or str(m["time"]) < info["time"]):
            info["time"] = str(m["time"])
    stages = []
    for recipe in sorted({str(i["recipe"]) for i in runs.values() if i["recipe"] is not None}):
        members = [(run, i) for run, i in runs.items() if i["recipe"] is not None and str(i["recipe"]) == recipe]
        if all(isinstance(i["index"], (int, float)) and not isinstance(i["index"], bool) for _, i in members):
            members.sort(key=lambda ri: (ri[1]["index"], ri[0]))
        else:
            members.sort(key=lambda ri: (ri[1]["time"] or "", ri[0]))
        for run, info in members:
            final = {}
            for task in board.tasks:
                scored = [k for k in board.keys if k.run == run and (k, task) in board.cells]
                if scored:
                    last = max(scored, key=lambda k: (k.step is not None, k.step or 0))
                    final[task] = (last, board.cells[(last, task)])
            stages.append(Stage(recipe, str(info["stage"] or run), run, final,
                                None if info["from"] is None else str(info["from"]), tuple(info["refs"] or ())))
    return stages


def baseline(board: Board, stage: Stage) -> Stage | None:
    """The stage ``stage`` is measured against: the one it started from, else (no ``from`` recorded) the
    recipe's previous stage."""
    same = [s for s in board.stages if s.recipe == stage.recipe]
    if stage.start is not None:
        return next((s for s in same if s.name == stage.start), None)
    i = same.index(stage)
    return same[i - 1] if i > 0 else None


# -- Markdown -------------------------------------------------------------------------------------

def _md(text: Any) -> str:
    return _html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


SAMPLES_DIR = "samples"


def samples_link(board: Board, row: ResultRow) -> str | None:
    """The page of the row's per-sample records (relative to the report), when it was written."""
    return f"{SAMPLES_DIR}/{row.eval_id}.html" if row.eval_id and row.eval_id in board.sampled else None


def _md_cell(board: Board, key: CheckpointKey, task: str) -> str:
    row = board.cell(key, task)
    if row is None:
        err = board.error(key, task)
        return f"error: {_md(err.error[:80])}" if err else "—"
    text = _md(fmt_cell(row))
    if board.is_best(key, task):
        text = f"**{text}**"
    if board.flag(key, task):
        text += " ▼"
    note = contamination_note(row)
    if note:
        text += f" {_md(note.split(':')[0])}"
    link = samples_link(board, row)
    return text + (f" [samples]({link})" if link else "")


def to_markdown(board: Board) -> str:
    head = ["run", "checkpoint", "step", *(f"{t} ({board.metrics[t]})" for t in board.tasks)]
    lines = ["# evalgym leaderboard", "",
             "Cells: primary metric `value [low, high]` (95% interval). **Bold**: best in the column. "
             "▼: below its run's best by more than its interval (see Flags). ⚠ not held out: the checkpoint's "
             "training saw some of these problems; ? overlap unknown.", "",
             "| " + " | ".join(map(_md, head)) + " |", "|" + "---|" * len(head)]
    for key in board.keys:
        cells = [_md_cell(board, key, task) for task in board.tasks]
        step = "—" if key.step is None else str(key.step)
        lines.append("| " + " | ".join([_md(key.run), _md(key.label), step, *cells]) + " |")
    lines += ["", "## Flags", ""]
    lines += [f"- {_md(describe_flag(f))}" for f in board.flags] or ["None."]
    tainted = [(k, t, r) for (k, t), r in board.cells.items() if held_out(r) is not True]
    if tainted:
        lines += ["", "## Not held out", ""]
        lines += [f"- {_md(k.run)} {_md(k.label)} on {_md(t)}: {_md(contamination_note(r) or 'not checked')}"
                  for k, t, r in tainted]
    if board.errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {_md(k.run)} {_md(k.label)} on {_md(t)}: {_md(e.error)}" for (k, t), e in board.errors.items()]
    if board.stages:
        lines += ["", "## Recipe comparison", "",
                  "Each stage's final checkpoint; (±) its change from the stage it started from, **bold** when "
                  "beyond the stage's 95 % interval (the start's value lies outside it).", "",
                  "| recipe | stage | from | run | " + " | ".join(_md(t) for t in board.tasks) + " |",
                  "|" + "---|" * (4 + len(board.tasks))]
        for s in board.stages:
            ref = baseline(board, s)
            cells = []
            for t in board.tasks:
                if t not in s.final:
                    cells.append("—")
                    continue
                key, row = s.final[t]
                delta = ""
                if ref and t in ref.final:
                    d = f"({row.value - ref.final[t][1].value:+.2f})"
                    delta = f" **{d}**" if beyond(row, ref.final[t][1]) else f" {d}"
                cells.append(_md(fmt_cell(row)) + delta + _md(f" @ {key.step}"))
            start = s.start or (ref.name if ref else "—")
            lines.append("| " + " | ".join([_md(s.recipe), _md(s.name), _md(start), _md(s.run), *cells]) + " |")
    return "\n".join(lines) + "\n"


def describe_flag(f: Flag) -> str:
    kind = "regression" if f.regression else "below best"
    edge = "high" if f.bound >= f.value else "low"
    return (f"{f.key.run} {f.key.label} on {f.task}: {f.value:.2f} (interval {edge} {f.bound:.2f}) vs the run's "
            f"best {f.best_value:.2f} at {f.best.label} — {kind}")


# -- writing --------------------------------------------------------------------------------------

def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: a reader never sees half a page."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_leaderboard(store: str | os.PathLike = DEFAULT_STORE, out: str | os.PathLike = "leaderboard",
                      runs: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``out/leaderboard.md`` and ``out/leaderboard.html`` from the store; return a summary."""
    from evalgym.benchmarks.leaderboard_html import to_html

    from evalgym.benchmarks.leaderboard_html import samples_page

    with ResultsStore(store, create=False) as db:
        rows = db.rows(runs=runs, tasks=tasks)
        errors = db.errors(runs=runs, tasks=tasks)
        known_runs = db.runs()
        have_runs, have_tasks = {r.run for r in rows} | {e.run for e in errors}, {r.task for r in rows} | {e.task for e in errors}
        for what, wanted, have in (("run", runs, have_runs), ("task", tasks, have_tasks)):
            missing = [w for w in (wanted or ()) if w not in have]
            if missing:
                raise EvalgymError(f"leaderboard: no results for {what}(s) {missing} in {db.path}"
                                   + (f"; runs there: {known_runs}" if what == "run" else ""))
        if not rows and not errors:
            raise EvalgymError(f"leaderboard: no results in {db.path}")
        board = build_board(rows, errors)
        out_dir = Path(out)
        try:
            (out_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvalgymError(f"leaderboard --out {out_dir}: {exc.strerror}") from None
        pages = 0
        for (key, task), row in board.cells.items():
            records = db.samples(row.eval_id) if row.eval_id else []
            if records:
                write_text_atomic(out_dir / f"{SAMPLES_DIR}/{row.eval_id}.html", samples_page(row, records))
                board.sampled.add(row.eval_id)
                pages += 1
    md, page = out_dir / "leaderboard.md", out_dir / "leaderboard.html"
    if not pages:
        (out_dir / SAMPLES_DIR).rmdir()
    write_text_atomic(md, to_markdown(board))
    write_text_atomic(page, to_html(board, source=str(db.path)))
    return {"markdown": str(md), "html": str(page), "runs": sorted({k.run for k in board.keys}),
            "checkpoints": len(board.keys), "tasks": board.tasks, "metrics": board.metrics,
            "flags": len(board.flags), "errors": len(board.errors), "sample_pages": pages,
            "not_held_out": sum(held_out(r) is False for r in board.cells.values())}
