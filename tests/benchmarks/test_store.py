"""The results store: round trip, replacement of an evaluation, the key (run id, checkpoint, task, settings
hash: changed settings make new rows, two runs of one name do not collide), per-sample records, stored
errors, migration of a schema-1 store, validation, URLs, concurrent writers, and a writer killed with
SIGKILL mid-way (a real subprocess) that loses nothing committed and resumes where it stopped."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from evalgym.benchmarks.store import ResultRow, ResultsStore, sqlite_path
from evalgym.errors import EvalgymError
from tests.benchmarks._store_writer import unit_rows

WRITER = Path(__file__).with_name("_store_writer.py")
REPO = Path(__file__).resolve().parents[2]


def _row(run="r", ckpt="r/step_000100", step=100, task="gsm8k", metric="exact_match", value=0.5, **kw):
    kw.setdefault("run_id", run)
    return ResultRow(run, ckpt, step, task, metric, value, **kw)


def test_round_trip_every_field_and_manifest_time(tmp_path):
    manifest = {"model": "r/step_000100", "step": 100, "task_version": "1", "verifier_version": "math-2",
                "lm_eval_version": "0.4.9", "sampling": {"temperature": 0.0, "max_tokens": 256}, "seed": 7,
                "git_sha": "abc123", "time": "2026-01-02T03:04:05+00:00", "recipe": "mopd", "stage": "sft"}
    with ResultsStore(tmp_path / "s.sqlite") as store:
        assert store.record([_row(stderr=0.03, ci_low=0.44, ci_high=0.56, n=250, manifest=manifest),
                             _row(task="math500", value=1, manifest={"model": "m"})]) == 2
        got = {r.task: r for r in store.rows()}
    assert got["gsm8k"] == _row(stderr=0.03, ci_low=0.44, ci_high=0.56, n=250, manifest=manifest)
    auto = got["math500"]
    assert auto.value == 1.0 and isinstance(auto.value, float) and auto.stderr is None and auto.n is None
    stamped = datetime.fromisoformat(auto.manifest["time"])      # filled in by record: ISO-8601 UTC, now
    assert stamped.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - stamped).total_seconds()) < 60


def test_upsert_filters_order_and_done(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    store.record([_row(run="b", ckpt="b/step_000200", step=200), _row(run="b", ckpt="base", step=None),
                  _row(run="b", ckpt="b/step_000100", step=100), _row(run="a", task="ifeval", metric="acc")])
    # same key: replaced, not duplicated
    assert store.record([_row(run="b", ckpt="b/step_000100", step=100, value=0.9, n=3)]) == 1
    rows = store.rows()
    assert [(r.run, r.checkpoint) for r in rows] == [("a", "r/step_000100"), ("b", "base"),
                                                     ("b", "b/step_000100"), ("b", "b/step_000200")]
    assert rows[2].value == 0.9 and rows[2].n == 3
    assert store.runs() == ["a", "b"]
    assert [r.run for r in store.rows(runs=["a"])] == ["a"]
    assert [r.task for r in store.rows(tasks=["ifeval"])] == ["ifeval"]
    assert store.rows(runs=["b"], tasks=["ifeval"]) == [] and store.rows(runs=[]) == []
    assert store.done("b", "base", "gsm8k") and not store.done("b", "base", "ifeval")
    assert not store.done("nope", "base", "gsm8k")
    store.close()


def test_the_key_is_run_id_and_settings(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    # two runs both called "sft" (different folders) do not collide; other settings make other rows
    store.record([_row(run="sft", run_id="/a/sft", value=0.1, settings_hash="s1")])
    store.record([_row(run="sft", run_id="/b/sft", value=0.2, settings_hash="s1")])
    store.record([_row(run="sft", run_id="/a/sft", value=0.3, settings_hash="s2")])
    rows = store.rows(runs=["sft"])
    assert sorted((r.run_id, r.settings_hash, r.value) for r in rows) == [
        ("/a/sft", "s1", 0.1), ("/a/sft", "s2", 0.3), ("/b/sft", "s1", 0.2)]
    assert store.done("/a/sft", "r/step_000100", "gsm8k", "s1") and not store.done("/a/sft", "r/step_000100", "gsm8k", "s3")
    # the same settings replace the evaluation: every metric of it, not one by one
    store.record([_row(run="sft", run_id="/a/sft", metric="other", value=0.9, settings_hash="s1")])
    mine = [(r.metric, r.value) for r in store.rows(runs=["sft"]) if r.run_id == "/a/sft" and r.settings_hash == "s1"]
    assert mine == [("other", 0.9)]
    store.close()


def test_samples_and_errors_are_kept_with_the_evaluation(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    eid = store.record_error("r", "r/step_000100", 100, "gsm8k", "RuntimeError: engine died", run_id="r",
                             settings_hash="s", manifest={"model": "m"})
    [err] = store.errors()
    assert (err.task, err.error, err.eval_id, err.manifest["model"]) == ("gsm8k", "RuntimeError: engine died", eid, "m")
    assert not store.done("r", "r/step_000100", "gsm8k", "s")       # a failed evaluation is retried
    samples = [{"doc": d, "sample": k, "prompt": [{"role": "user", "content": f"q{d}"}], "completion": "a",
                "correct": d == 0} for d in range(3) for k in range(2)]
    store.record([_row(settings_hash="s")], samples=samples)
    assert store.errors() == [] and store.done("r", "r/step_000100", "gsm8k", "s")
    [row] = store.rows()
    assert row.eval_id == eid and store.samples(eid) == samples
    with pytest.raises(EvalgymError, match="samples belong to one evaluation"):
        store.record([_row(task="a"), _row(task="b")], samples=samples)
    with pytest.raises(EvalgymError, match=r"samples\[0\] field 'doc'"):
        store.record([_row()], samples=[{"doc": "x", "sample": 0}])
    store.close()


def test_a_schema_1_store_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE results (run TEXT NOT NULL, checkpoint TEXT NOT NULL, step INTEGER, task TEXT NOT NULL,
            metric TEXT NOT NULL, value REAL NOT NULL, stderr REAL, ci_low REAL, ci_high REAL, n INTEGER,
            manifest TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (run, checkpoint, task, metric));
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO store_meta VALUES ('schema_version', '1');
        INSERT INTO results VALUES ('sft', 'sft/step_000002', 2, 'evalgym_arithmetic', 'acc', 0.25, NULL, 0.1, 0.5,
                                    4, '{"time": "2026-01-01T00:00:00+00:00", "limit": 4}');
        INSERT INTO results VALUES ('sft', 'sft/step_000002', 2, 'evalgym_arithmetic', 'reward', 0.25, NULL, 0.1,
                                    0.5, 4, '{"time": "2026-01-01T00:00:00+00:00", "limit": 4}');
    """)
    con.commit()
    con.close()
    with ResultsStore(path) as store:
        rows = store.rows()
        assert [(r.metric, r.value, r.settings_hash, r.manifest["limit"]) for r in rows] == [
            ("acc", 0.25, "legacy-v1", 4), ("reward", 0.25, "legacy-v1", 4)]
        assert "legacy" in rows[0].manifest
        assert not store.done("sft", "sft/step_000002", "evalgym_arithmetic", "any-new-settings")
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == ("2",)
    con.execute("UPDATE store_meta SET value = '9' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(EvalgymError, match="schema version 9 is newer"):
        ResultsStore(path)


def test_bad_rows_name_the_field_and_write_nothing(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    cases = [(_row(value=float("nan")), "field 'value' must be finite"),
             (_row(value="0.5"), "field 'value' must be a number"),
             (_row(step="100"), "field 'step' must be an int"),
             (_row(task=""), "field 'task' must be a non-empty string"),
             (_row(manifest=[1]), "field 'manifest' must be a dict"),
             (_row(manifest={"x": float("inf")}), "field 'manifest' is not JSON")]
    for bad, message in cases:
        with pytest.raises(EvalgymError, match=message) as err:
            store.record([_row(ckpt="good"), bad])
        assert "row 1" in str(err.value)
    with pytest.raises(EvalgymError, match="not a ResultRow"):
        store.record([{"run": "r"}])
    assert store.rows() == []
    # an lm-eval 'N/A' stderr (NaN) is stored as unknown, not as a number
    store.record([_row(stderr=float("nan"))])
    assert store.rows()[0].stderr is None


def test_locations_urls_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///runs/x.sqlite") == "runs/x.sqlite"
    assert sqlite_path("sqlite:////abs/x.sqlite") == "/abs/x.sqlite"
    with ResultsStore("sqlite:///deep/er/x.sqlite") as store:   # parent folders are created
        store.record([_row()])
    assert (tmp_path / "deep/er/x.sqlite").is_file()
    with ResultsStore(f"sqlite:///{tmp_path}/deep/er/x.sqlite") as store:
        assert len(store.rows()) == 1
    con = sqlite3.connect(tmp_path / "deep/er/x.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    with pytest.raises(EvalgymError, match="only SQLite is supported.*'postgresql'"):
        ResultsStore("postgresql://user@host/db")
    with pytest.raises(EvalgymError, match="no such file"):
        ResultsStore(tmp_path / "missing.sqlite", create=False)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(EvalgymError, match="junk.sqlite: file is not a database"):
        ResultsStore(tmp_path / "junk.sqlite")


def test_concurrent_writers_share_one_file(tmp_path):
    """Two connections (as a trainer's evaluator and a watcher would hold) write at once: nothing lost,
    no 'database is locked'."""
    path = tmp_path / "s.sqlite"
    ResultsStore(path).close()
    errors: list[BaseException] = []

    def write(run: str) -> None:
        try:
            with ResultsStore(path) as store:
                for i in range(40):
                    store.record([_row(run=run, ckpt=f"{run}/{i}", step=i, metric=f"m{m}") for m in range(20)])
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(run,)) for run in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with ResultsStore(path) as store:
        assert len(store.rows()) == 3 * 40 * 20


def _writer(store: Path, attempt: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(WRITER), str(store), "--checkpoints", "4", "--tasks", "3",
                             "--rows", "4000", "--attempt", str(attempt)],
                            stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.timeout(300)
def test_sigkill_mid_write_loses_nothing_committed_and_resumes(tmp_path):
    path = tmp_path / "results.sqlite"
    proc = _writer(path, attempt=1)
    committed, killed_unit = [], None
    for line in proc.stdout:
        kind, *unit = line.split()
        if kind == "done":
            committed.append(tuple(map(int, unit)))
        elif kind == "begin" and len(committed) >= 5:
            time.sleep(0.03)                      # inside record(): mid-transaction most of the time
            os.kill(proc.pid, signal.SIGKILL)
            killed_unit = tuple(map(int, unit))
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL and killed_unit is not None
    assert len(committed) >= 5

    con = sqlite3.connect(path)                   # a fresh reader recovers from the WAL the writer left
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    with ResultsStore(path) as store:
        rows = [replace(r, run_id="") for r in store.rows()]
    by_unit: dict[tuple[int, int], list[ResultRow]] = {}
    for r in rows:
        by_unit.setdefault((r.step // 100, int(r.task[4:])), []).append(r)
    # every committed unit is intact, value by value; the killed one is all or nothing, never partial
    for unit in committed:
        stored = [replace(r, manifest={k: v for k, v in r.manifest.items() if k != "time"})
                  for r in sorted(by_unit[unit], key=lambda r: r.metric)]
        assert stored == unit_rows(*unit, 4000, attempt=1)
    assert set(by_unit) - set(committed) <= {killed_unit}
    assert len(by_unit.get(killed_unit, [])) in (0, 4000)

    done_before = set(by_unit)
    proc = _writer(path, attempt=2)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0 and out.endswith("finished\n")
    skipped = {tuple(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("skip")}
    written = {tuple(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("done")}
    assert skipped == done_before and written == {(c, t) for c in range(4) for t in range(3)} - done_before

    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    with ResultsStore(path) as store:
        final = store.rows()
    assert len(final) == 4 * 3 * 4000
    attempts = {(r.step // 100, int(r.task[4:])): r.manifest["attempt"] for r in final}
    assert {u for u, a in attempts.items() if a == 1} == done_before   # resumed work did not redo any unit
