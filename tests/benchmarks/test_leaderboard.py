"""Leaderboards: the primary-metric, interval, flag and recipe logic against hand-computed values (each
stage measured against the stage it started from); contamination marks, stored errors and samples pages;
the Markdown table; the CLI; and the HTML page opened in real headless Chromium (DOM dump + a screenshot
whose pixels are checked for the table highlight and the plot colours)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalgym.benchmarks.leaderboard import (CheckpointKey, baseline, build_board, held_out, interval, primary_metric,
                                            to_markdown, write_leaderboard)
from evalgym.benchmarks.leaderboard_html import BEST_BG, FLAG_COLOR, RUN_COLORS, to_html
from evalgym.benchmarks.store import ResultRow, ResultsStore
from evalgym.cli import main
from evalgym.errors import EvalgymError
from tests.benchmarks.board_data import SCORES, TASKS, make_store

CHROMIUM = "/usr/bin/chromium"


def _r(run, step, value, lo=None, hi=None, task="t", metric="exact_match", **manifest):
    return ResultRow(run, f"{run}/step_{step}", step, task, metric, value, None, lo, hi, 100, manifest)


# -- logic ----------------------------------------------------------------------------------------

def test_primary_metric_preference():
    assert primary_metric(["mean@4", "exact_match", "acc"]) == "exact_match"
    assert primary_metric(["exact_match,flexible-extract", "exact_match,strict-match"]) == "exact_match,strict-match"
    assert primary_metric(["acc,none", "acc_norm,none"]) == "acc,none"
    assert primary_metric(["inst_level_strict_acc", "prompt_level_strict_acc"]) == "prompt_level_strict_acc"
    assert primary_metric(["zeta", "bleu"]) == "bleu"


def test_interval_sources():
    assert interval(_r("a", 1, 0.5, 0.4, 0.6)) == (0.4, 0.6)
    lo, hi = interval(ResultRow("a", "c", 1, "t", "m", 0.5, stderr=0.1))
    assert lo == pytest.approx(0.5 - 0.196, abs=1e-3) and hi == pytest.approx(0.5 + 0.196, abs=1e-3)
    assert interval(_r("a", 1, 0.5)) is None


def test_flags_hand_computed():
    rows = [_r("a", 1, 0.50, 0.45, 0.55),      # below best (0.80) by more than its interval: flagged
            _r("a", 2, 0.80, 0.75, 0.85),      # the run's best
            _r("a", 3, 0.70, 0.60, 0.79),      # high 0.79 < 0.80: flagged, after the best: a regression
            _r("a", 4, 0.72, 0.60, 0.80),      # high == best: inside the interval, not flagged
            _r("a", 5, 0.10),                  # no interval: noise unknown, not flagged
            _r("b", 1, 0.20, 0.15, 0.25),      # run b's own best: other runs do not count
            _r("b", 2, 0.19, 0.10, 0.30)]
    board = build_board(rows)
    got = {(f.key.run, f.key.step): (f.regression, f.best.step, f.bound) for f in board.flags}
    assert got == {("a", 1): (False, 2, 0.55), ("a", 3): (True, 2, 0.79)}
    assert board.best == {"t": 0.80} and board.is_best(CheckpointKey("a", "a/step_2", 2), "t")

    # lower is better: the best is the minimum; flagged when its LOW edge is above the best
    low = build_board([_r("a", 1, 0.30, 0.25, 0.35, higher_is_better=False),
                       _r("a", 2, 0.10, 0.05, 0.15, higher_is_better=False),
                       _r("a", 3, 0.14, 0.09, 0.19, higher_is_better=False)])
    assert [(f.key.step, f.bound) for f in low.flags] == [(1, 0.25)] and low.best == {"t": 0.10}


def test_board_from_store_rows(tmp_path):
    with ResultsStore(make_store(tmp_path / "s.sqlite")) as store:
        board = build_board(store.rows())
    assert board.tasks == list(TASKS)
    assert board.metrics == {"evalgym_arithmetic": "exact_match", "gsm8k": "exact_match,strict-match",
                             "ifeval": "prompt_level_strict_acc"}
    assert [(k.run, k.step) for k in board.keys] == [
        ("baseline", None), ("mopd/grpo", 300), ("mopd/grpo", 400), ("mopd/grpo", 500),
        ("mopd/sft", 0), ("mopd/sft", 100), ("mopd/sft", 200)]
    assert board.best == {"evalgym_arithmetic": 0.71, "gsm8k": 0.26, "ifeval": 0.30}
    regressions = [(f.key.run, f.key.step, f.task) for f in board.flags if f.regression]
    assert regressions == [("mopd/grpo", 500, "evalgym_arithmetic")]
    # recipe: stages by stage_index; each stage's final (highest-step) checkpoint per task
    assert [(s.recipe, s.name, s.run) for s in board.stages] == [("mopd", "sft", "mopd/sft"),
                                                                ("mopd", "grpo", "mopd/grpo")]
    assert {t: (k.step, r.value) for t, (k, r) in board.stages[1].final.items()} == {
        "evalgym_arithmetic": (500, 0.40), "gsm8k": (500, 0.26), "ifeval": (500, 0.26)}


def test_recipe_stage_order_falls_back_to_time():
    rows = [_r("late", 1, 0.5, recipe="r", time="2026-02-01T00:00:00+00:00"),
            _r("early", 1, 0.4, recipe="r", time="2026-01-01T00:00:00+00:00"),
            _r("solo", 1, 0.3)]                                       # no recipe: not in the comparison
    assert [s.run for s in build_board(rows).stages] == ["early", "late"]


def test_each_stage_is_measured_against_its_start():
    """A recipe with a shared start: two experts from sft, a student from sft; the delta of expert-countdown is
    against sft (its `from`), not against expert-math (the row above)."""
    def stage(name, index, start, value, refs=()):
        return _r(f"m/{name}", 10, value, value - 0.05, value + 0.05, recipe="m", stage=name, stage_index=index,
                  **({"from": start} if start else {}), refs=list(refs))
    rows = [_r("m/base", None, 0.10, 0.05, 0.15, recipe="m", stage="base", stage_index=0),
            stage("sft", 1, "base", 0.50), stage("expert-math", 2, "sft", 0.70),
            stage("expert-countdown", 3, "sft", 0.55),
            stage("student", 4, "sft", 0.65, refs=("expert-math", "expert-countdown"))]
    board = build_board(rows)
    got = {s.name: (baseline(board, s).name, round(s.final["t"][1].value - baseline(board, s).final["t"][1].value, 2))
           for s in board.stages if baseline(board, s)}
    assert got == {"sft": ("base", 0.40), "expert-math": ("sft", 0.20), "expert-countdown": ("sft", 0.05),
                   "student": ("sft", 0.15)}
    assert board.stages[-1].refs == ("expert-math", "expert-countdown")
    md = to_markdown(board)
    # a change is bold when the start's value lies outside the stage's interval: +0.05 sits on its edge
    # ([0.50, 0.60] holds sft's 0.50), +0.20 is beyond it
    assert "| m | expert-countdown | sft | m/expert-countdown | 0.55 [0.50, 0.60] (+0.05) @ 10 |" in md
    assert "| m | expert-math | sft | m/expert-math | 0.70 [0.65, 0.75] **(+0.20)** @ 10 |" in md
    page = to_html(board)
    assert "(+0.05 vs sft)" in page and "(-0.15 vs" not in page
    # one chart per recipe and task: the stages with one checkpoint are reference bands
    assert page.count("<svg") == 1 and page.count('<rect class="ref"') == 5


def test_contamination_and_errors_are_shown(tmp_path):
    from evalgym.benchmarks.store import EvalError

    clean = _r("a", 1, 0.5, 0.4, 0.6, contamination={"overlap": 0, "eval_problems": 10})
    dirty = _r("a", 2, 0.9, 0.8, 0.95, contamination={"overlap": 7, "eval_problems": 10})
    unknown = _r("b", 1, 0.3, 0.2, 0.4, contamination={"overlap": None, "reason": "no trained_problems.json in x"})
    err = EvalError("b", "b/step_2", 2, "t", "RuntimeError: engine died", {}, "b", "s", "e1")
    board = build_board([clean, dirty, unknown], [err])
    assert (held_out(clean), held_out(dirty), held_out(unknown)) == (True, False, None)
    md = to_markdown(board)
    assert "| a | step_2 | 2 | **0.90 [0.80, 0.95]** ⚠ not held out |" in md
    assert "- a step_2 on t: ⚠ not held out: 7/10 trained on" in md
    assert "? overlap unknown" in md and "| b | step_2 | 2 | error: RuntimeError: engine died |" in md
    assert "## Errors" in md and "engine died" in to_html(board)


def test_markdown_table():
    rows = [_r("a", 1, 0.42, 0.35, 0.49), _r("a", 2, 0.90, 0.85, 0.95),
            _r("a|b", 3, 0.5, task="u", metric="pass@1")]
    md = to_markdown(build_board(rows))
    lines = md.splitlines()
    table = lines[lines.index("| run | checkpoint | step | t (exact_match) | u (pass@1) |"):][:5]
    assert table == ["| run | checkpoint | step | t (exact_match) | u (pass@1) |",
                     "|---|---|---|---|---|",
                     "| a | step_1 | 1 | 0.42 [0.35, 0.49] ▼ | — |",
                     "| a | step_2 | 2 | **0.90 [0.85, 0.95]** | — |",
                     "| a\\|b | step_3 | 3 | — | **0.50** |"]
    assert "- a step_1 on t: 0.42 (interval high 0.49) vs the run's best 0.90 at step_2 — below best" in md
    assert "## Recipe comparison" not in md
    with pytest.raises(EvalgymError, match="no results"):
        build_board([])


def test_write_and_cli(tmp_path, capsys):
    store = make_store(tmp_path / "s.sqlite")
    out = tmp_path / "out"
    assert main(["leaderboard", "--store", f"sqlite:///{store}", "--runs", "mopd/grpo,baseline",
                 "--tasks", "gsm8k", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == ["baseline", "mopd/grpo"] and summary["tasks"] == ["gsm8k"]
    assert summary["checkpoints"] == 4 and summary["flags"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.html", "leaderboard.md"]   # no temp files left
    md = (out / "leaderboard.md").read_text()
    assert "| mopd/grpo | step_000500 | 500 | **0.26 [0.22, 0.30]** |" in md and "mopd/sft" not in md
    assert main(["leaderboard", "--store", str(store), "--runs", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no results for run(s) ['nope']" in err and "runs there: ['baseline', 'mopd/grpo', 'mopd/sft']" in err
    assert main(["leaderboard", "--store", str(tmp_path / "missing.sqlite"), "--out", str(out)]) == 2
    assert "missing.sqlite: no such file" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()          # a reader never creates a store
    helped = subprocess.run([sys.executable, "-m", "evalgym.cli", "leaderboard", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "--store" in helped.stdout and "--json" in helped.stdout


def test_html_is_self_contained_and_escaped():
    hostile = "<script>alert('x')</script>&\""
    board = build_board([_r(hostile, 1, 0.5, 0.4, 0.6, task="t<b>"), _r(hostile, 2, 0.9, 0.85, 0.95, task="t<b>",
                                                                         model=hostile, recipe=hostile)])
    page = to_html(board)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in page
    for external in ("src=", "href=", "url(", "@import", "<link", "https://"):
        assert external not in page                       # (samples links, relative, only when samples exist)
    assert page.count("http://") == page.count('xmlns="http://www.w3.org/2000/svg"') == 1


# -- the page in a real browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(f"{CHROMIUM} is missing but installable here: run `bash scripts/system-deps.sh` "
                    "(`make test` does)")
    pytest.skip(f"*** {CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
                "the leaderboard page was NOT checked in a browser ***")


def _browse(chromium: str, page: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           "--window-size=1400,2000", *mode, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _colour_counts(png: Path, colours: dict[str, str], tol: int = 6) -> dict[str, int]:
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1400, 2000)
    hist = img.getcolors(maxcolors=1 << 24)
    counts = {}
    for name, hexcode in colours.items():
        want = tuple(int(hexcode[i:i + 2], 16) for i in (1, 3, 5))
        counts[name] = sum(n for n, rgb in hist if max(abs(a - b) for a, b in zip(rgb, want)) <= tol)
    counts["non-white"] = sum(n for n, rgb in hist if min(rgb) < 235)
    counts["distinct"] = len(hist)
    return counts


@pytest.mark.timeout(300)
def test_page_renders_in_headless_chromium(tmp_path, chromium):
    store = make_store(tmp_path / "s.sqlite")
    summary = write_leaderboard(store, tmp_path / "out")
    page = Path(summary["html"])

    dom = _browse(chromium, page, tmp_path, "--dump-dom").stdout
    assert '<table class="board" id="scores">' in dom
    assert '0.71 <span class="ci">[0.67, 0.75]</span>' in dom            # the best arithmetic cell, rendered
    assert dom.count('<td class="num best') == 3                           # one best per task column
    stepped_runs = len(SCORES)     # one chart per task for the recipe (a line per stage), one for the baseline run
    assert dom.count("<svg") == 2 * len(TASKS)
    assert dom.count('<path class="line"') == dom.count('<polygon class="band"') == len(TASKS) * stepped_runs
    assert dom.count('<rect class="ref"') == len(TASKS)            # the baseline: one level per task
    assert dom.count("<li>") == summary["flags"] > 0
    assert '<table id="recipes">' in dom and '<table id="provenance">' in dom

    shot = tmp_path / "shot.png"
    _browse(chromium, page, tmp_path, f"--screenshot={shot}")
    colours = {"grpo line": RUN_COLORS[1], "sft line": RUN_COLORS[2], "best cell": BEST_BG, "flag": FLAG_COLOR}
    counts = _colour_counts(shot, colours)
    assert counts["distinct"] > 200 and counts["non-white"] > 0.03 * 1400 * 2000, counts   # not blank
    assert counts["best cell"] > 3 * 1000, counts       # three highlighted table cells (~150x25 px each)
    assert counts["grpo line"] > 1200 and counts["sft line"] > 1200, counts  # ~1900 px; ~850 without lines
    assert counts["flag"] > 200, counts                 # ▼ markers and the red rings round flagged points

    # the same check on a page without the table and plots must fail: it can tell them apart
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body><h1>evalgym leaderboard</h1></body></html>")
    _browse(chromium, blank, tmp_path, f"--screenshot={shot}")
    control = _colour_counts(shot, colours)
    assert all(control[name] == 0 for name in colours), control
