"""`evalgym eval` and the checkpoint loop, for real: the CLI killed with SIGKILL mid-way and rerun skips
the tasks already stored, while a changed setting makes a new evaluation; a short SFT run of the tiny
model evaluated after every save (the trainer's ``after_save`` step), with its per-sample records and a
contamination check that reads 0 for held-out problems and counts them when training drew the eval split;
an `evalgym watch` process evaluating the checkpoints a training process writes meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalgym.benchmarks.evaluate_ckpt import CheckpointEvaluator, EvalSpec
from evalgym.benchmarks.store import ResultsStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TQDM_DISABLE": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "evalgym.cli", *args]


def _tasks(store_path: Path, run: str) -> dict[str, dict[str, dict]]:
    """checkpoint -> task -> metric -> row, from a fresh reader."""
    out: dict[str, dict[str, dict]] = {}
    with ResultsStore(store_path) as store:
        for r in store.rows(runs=[run]):
            out.setdefault(r.checkpoint, {}).setdefault(r.task, {})[r.metric] = r
    return out


def test_eval_killed_and_rerun_skips_stored_tasks(tiny_path, tmp_path):
    store = tmp_path / "results.sqlite"
    cmd = _cli("eval", "--model", tiny_path, "--tasks", "evalgym_arithmetic,evalgym_linear-equations", "--limit", "6",
               "--max-tokens", "200", "--threads", "1", "--store", str(store), "--run", "r")
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists() and "evalgym_arithmetic" in _tasks(store, "r").get(tiny_path, {}):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"eval ended before it could be killed: {proc.communicate()[1].decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _tasks(store, "r")[tiny_path]
    assert set(first) == {"evalgym_arithmetic"}, "killed after the first task: the second must not be stored"
    assert {"acc", "reward", "grader_errors"} <= set(first["evalgym_arithmetic"])

    done = subprocess.run(cmd + ["--json"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evalgym_arithmetic: already in the store, skipped" in done.stderr
    assert "evalgym_linear-equations: 3 rows recorded" in done.stderr
    after = _tasks(store, "r")[tiny_path]
    assert set(after) == {"evalgym_arithmetic", "evalgym_linear-equations"}
    for metric, row in first["evalgym_arithmetic"].items():  # untouched by the rerun
        assert after["evalgym_arithmetic"][metric].manifest["time"] == row.manifest["time"]
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(p["task"], p["metric"]) for p in printed} == {(t, m) for t, ms in after.items() for m in ms}
    row = after["evalgym_linear-equations"]["acc"]
    assert row.n == 6 and row.ci_low is not None and row.ci_high is not None and row.step is None
    m = row.manifest
    assert m["model"] == tiny_path and m["lm_eval_version"] and m["verifier"] == "math" and m["backend"] == "hf"
    assert m["sampling"]["max_tokens"] == 200 and m["limit"] == 6 and m["task_version"] == 1 and m["time"]
    assert m["split"] == "eval" and m["contamination"]["overlap"] == 0

    # another setting (--limit) is another evaluation: new rows, the old ones kept
    other = subprocess.run(cmd[:cmd.index("--limit") + 1] + ["5"] + cmd[cmd.index("--limit") + 2:],
                           cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert other.returncode == 0, other.stderr[-3000:]
    assert "already in the store" not in other.stderr
    with ResultsStore(store) as db:
        accs = [r for r in db.rows(runs=["r"], tasks=["evalgym_arithmetic"]) if r.metric == "acc"]
    assert sorted(r.n for r in accs) == [5, 6] and len({r.settings_hash for r in accs}) == 2


def test_one_model_under_two_run_names_is_two_evaluations(tiny_path, tmp_path):
    """Two recipes' stage-0 base (or ``--run a`` then ``--run b``) evaluate one plain model: each run name
    gets its own evaluation and finds its own rows; the second was once skipped as already stored under the
    first name, leaving it with no rows (a recipe's leaderboard then failed: no results for 'llama3/base')."""
    from evalgym.benchmarks.evaluate_ckpt import evaluate_model

    spec = EvalSpec(tasks=["evalgym_arithmetic"], limit=2, max_tokens=4, threads=1)
    seen: list[tuple[str, str]] = []
    with ResultsStore(tmp_path / "results.sqlite") as store:
        first = evaluate_model(tiny_path, spec, store=store, run="instructgpt/base")
        second = evaluate_model(tiny_path, spec, store=store, run="llama3/base",
                                on_task=lambda task, status, rows: seen.append((task, status)))
        assert seen == [("evalgym_arithmetic", "done")]
        assert {r.run for r in first} == {"instructgpt/base"} and {r.run for r in second} == {"llama3/base"}
        assert store.runs() == ["instructgpt/base", "llama3/base"]
        # a rerun under either name skips and returns that name's own rows, the same scores
        again = evaluate_model(tiny_path, spec, store=store, run="llama3/base",
                               on_task=lambda task, status, rows: seen.append((task, status)))
        assert seen[-1] == ("evalgym_arithmetic", "skipped")
        assert sorted((r.run, r.metric, r.value) for r in again) == sorted((r.run, r.metric, r.value) for r in second)
        assert {(r.metric, r.value) for r in first} == {(r.metric, r.value) for r in second}   # greedy: same model


def _sft_overrides(tiny_path: str, run_dir: Path, steps: int, *extra: str) -> list[str]:
    return [f"model={tiny_path}", "envs=[arithmetic]", "env_rows=64", "batch_size=8", f"steps={steps}",
            "save_every=2", "lr=1e-3", f"run_dir={run_dir}", *extra]


def test_in_process_evaluation_after_every_save(tiny_path, tmp_path):
    from evalgym.trainers.config import load_config
    from evalgym.trainers.sft import SFTConfig, train_sft

    run_dir = tmp_path / "sft"
    cfg = load_config(SFTConfig, None, _sft_overrides(tiny_path, run_dir, 4, "env_kwargs={arithmetic: {ops: '+'}}"))
    spec = EvalSpec(tasks=["evalgym_arithmetic"], limit=10, max_tokens=16, env_kwargs={"arithmetic": {"ops": "+"}})
    with ResultsStore(tmp_path / "results.sqlite") as store:
        with CheckpointEvaluator(spec, store) as evaluator:
            train_sft(cfg, progress=False, after_save=evaluator)
        assert not evaluator.failed
        assert [ref.step for ref in evaluator.evaluated] == [2, 4]
        acc = store.rows(runs=["sft"])[0]
        samples = store.samples(acc.eval_id)
    assert len(samples) == 10 and {s["doc"] for s in samples} == set(range(10))
    assert all(s["prompt"][-1]["content"].startswith("Compute ") and "completion" in s and "verdict" in s
               for s in samples)
    rows = _tasks(tmp_path / "results.sqlite", "sft")
    assert set(rows) == {"sft/step_000002", "sft/step_000004"}
    for ckpt, tasks in rows.items():
        acc = tasks["evalgym_arithmetic"]["acc"]
        assert acc.step == int(ckpt[-6:]) and acc.n == 10
        assert acc.manifest["model"] == str(run_dir / ckpt.split("/")[1]) and acc.manifest["step"] == acc.step
        c = acc.manifest["contamination"]        # trained on the train split, evaluated on eval: held out
        assert c["overlap"] == 0 and c["eval_problems"] == 10 and c["trained_problems"] > 0

    # the same SFT drawing its rows from the eval split: the check counts the overlap instead of assuming
    leak_dir = tmp_path / "leak"
    cfg = load_config(SFTConfig, None, _sft_overrides(tiny_path, leak_dir, 2,
                                                      "env_kwargs={arithmetic: {ops: '+', split: eval}}"))
    with ResultsStore(tmp_path / "results.sqlite") as store, CheckpointEvaluator(spec, store) as evaluator:
        train_sft(cfg, progress=False, after_save=evaluator)
        leak = _tasks(tmp_path / "results.sqlite", "leak")["leak/step_000002"]["evalgym_arithmetic"]["acc"]
        evaluated = {s["content_hash"] for s in store.samples(leak.eval_id)}
    trained = set(json.loads((leak_dir / "step_000002" / "trained_problems.json").read_text())["hashes"])
    c = leak.manifest["contamination"]
    assert c["overlap"] == len(evaluated & trained) > 0 and c["fraction"] == c["overlap"] / 10


def test_watch_evaluates_checkpoints_while_training_runs(tiny_path, tmp_path):
    run_dir, store = tmp_path / "run", tmp_path / "results.sqlite"
    watcher = subprocess.Popen(_cli("watch", str(run_dir), "--tasks", "evalgym_arithmetic", "--limit", "4",
                                    "--max-tokens", "16", "--threads", "1", "--until-step", "6", "--poll", "0.5",
                                    "--timeout", "600", "--store", str(store), "--json"),
                               cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trainer = subprocess.run(_cli("train", "sft", "--quiet", *_sft_overrides(tiny_path, run_dir, 6)), cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert trainer.returncode == 0, trainer.stderr[-3000:]
    out, err = watcher.communicate(timeout=600)
    assert watcher.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["step"] for e in events if e["event"] == "evaluated"] == [2, 4, 6]
    lines = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6]
    rows = _tasks(store, "run")
    assert set(rows) == {"run/step_000002", "run/step_000004", "run/step_000006"}
    for ckpt, tasks in rows.items():
        for metric in ("acc", "reward", "grader_errors"):
            row = tasks["evalgym_arithmetic"][metric]
            assert row.step == int(ckpt[-6:]) and row.manifest["step"] == row.step and row.manifest["git_sha"] is not None
    # a restarted watcher with the same settings finds everything done and evaluates nothing
    again = subprocess.run(_cli("watch", str(run_dir), "--tasks", "evalgym_arithmetic", "--limit", "4", "--once",
                                "--max-tokens", "16", "--store", str(store), "--json"), cwd=REPO, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(x)["event"] for x in again.stdout.splitlines()] == ["already-done"] * 3
