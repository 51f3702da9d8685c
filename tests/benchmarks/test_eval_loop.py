"""`evalgym eval` and the checkpoint loop, for real: the CLI killed with SIGKILL mid-way and rerun skips
the tasks already stored; a short SFT run of the tiny model evaluated in-process after every save;
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

from evalgym.benchmarks.evaluate_ckpt import EvalSpec, evaluate_on_save
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
    assert m["sampling"]["max_tokens"] == 200 and m["limit"] == 6 and m["task_version"] == 0 and m["time"]


def _sft_overrides(tiny_path: str, run_dir: Path, steps: int) -> list[str]:
    return [f"model={tiny_path}", "envs=[arithmetic]", "env_rows=64", "batch_size=8", f"steps={steps}",
            "save_every=2", "lr=1e-3", f"run_dir={run_dir}"]


def test_in_process_evaluation_after_every_save(tiny_path, tmp_path):
    from evalgym.trainers.config import load_config
    from evalgym.trainers.sft import SFTConfig, train_sft

    run_dir = tmp_path / "sft"
    cfg = load_config(SFTConfig, None, _sft_overrides(tiny_path, run_dir, 4))
    with ResultsStore(tmp_path / "results.sqlite") as store:
        with evaluate_on_save(EvalSpec(tasks=["evalgym_arithmetic"], limit=4, max_tokens=16), store) as hook:
            train_sft(cfg, progress=False)
        assert not hook.errors
        assert [ref.step for ref in hook.evaluated] == [2, 4]
    rows = _tasks(tmp_path / "results.sqlite", "sft")
    assert set(rows) == {"sft/step_000002", "sft/step_000004"}
    for ckpt, tasks in rows.items():
        acc = tasks["evalgym_arithmetic"]["acc"]
        assert acc.step == int(ckpt[-6:]) and acc.n == 4
        assert acc.manifest["model"] == str(run_dir / ckpt.split("/")[1]) and acc.manifest["step"] == acc.step


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
    # a restarted watcher finds everything done and evaluates nothing
    again = subprocess.run(_cli("watch", str(run_dir), "--tasks", "evalgym_arithmetic", "--limit", "4", "--once",
                                "--store", str(store), "--json"), cwd=REPO, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(x)["event"] for x in again.stdout.splitlines()] == ["already-done"] * 3
