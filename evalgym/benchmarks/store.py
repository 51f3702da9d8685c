"""The results store: one SQLite row per (run, checkpoint, task, metric), with the manifest that
produced it (model, step, task and verifier versions, lm-eval version, sampling, seed, git sha, time).

    from evalgym.benchmarks.store import ResultRow, ResultsStore

    with ResultsStore("runs/results.sqlite") as store:        # or "sqlite:///runs/results.sqlite"
        if not store.done("run-a", "run-a/step_000100", "gsm8k"):
            store.record([ResultRow("run-a", "run-a/step_000100", 100, "gsm8k", "exact_match", 0.42,
                                    stderr=0.03, ci_low=0.36, ci_high=0.48, n=250,
                                    manifest={"model": "run-a/step_000100", "lm_eval_version": "0.4.9"})])
        store.rows(runs=["run-a"])                              # -> [ResultRow, ...]

Durability. ``record`` writes its rows in ONE transaction (all or nothing) and upserts on
(run, checkpoint, task, metric), so an evaluation killed at any point -- SIGKILL included -- loses
nothing it had committed and leaves no half-written task; on restart it asks ``done`` per
(run, checkpoint, task) and evaluates only what is missing. The database runs in WAL mode with
``synchronous=FULL`` (a commit survives power loss too) and a busy timeout, so several writers -- a
trainer's in-process evaluator and an ``evalgym watch`` process -- can share one file; writers take
the write lock up front (``BEGIN IMMEDIATE``), so they queue rather than deadlock. Local files only:
WAL needs shared memory, which network file systems do not give.

Other SQL databases: only ``sqlite`` URLs are supported; any other scheme is a clear error.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError

DEFAULT_STORE = "runs/results.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run        TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    step       INTEGER,
    task       TEXT NOT NULL,
    metric     TEXT NOT NULL,
    value      REAL NOT NULL,
    stderr     REAL,
    ci_low     REAL,
    ci_high    REAL,
    n          INTEGER,
    manifest   TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run, checkpoint, task, metric)
);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "run, checkpoint, step, task, metric, value, stderr, ci_low, ci_high, n, manifest"
_UPSERT = (f"INSERT INTO results ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (run, checkpoint, task, metric) DO UPDATE SET step = excluded.step, "
           "value = excluded.value, stderr = excluded.stderr, ci_low = excluded.ci_low, "
           "ci_high = excluded.ci_high, n = excluded.n, manifest = excluded.manifest")


def utc_now() -> str:
    """The current time as ISO-8601 UTC (``2026-01-31T12:00:00.123456+00:00``), the manifest's ``time``."""
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class ResultRow:
    """One score: (run, checkpoint, task, metric) is the key; the rest is the value and its provenance."""

    run: str            # run name (e.g. run dir name or "mopd-2026/expert-arithmetic")
    checkpoint: str     # checkpoint path or model name ("tiny", "base")
    step: int | None    # training step of the checkpoint (None for a plain model)
    task: str           # task name, e.g. "evalgym_arithmetic" or "gsm8k"
    metric: str         # e.g. "exact_match", "pass@1", "mean@4", "prompt_level_strict_acc"
    value: float
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None           # samples behind the score
    # model, step, task_version, verifier_version, lm_eval_version, sampling, seed, git_sha, time (ISO-8601
    # UTC; filled in by ``record`` when missing), recipe, stage, stage_index, backend ...
    manifest: dict = field(default_factory=dict)


def sqlite_path(location: str | os.PathLike) -> str:
    """The file behind ``location``: a path, or a ``sqlite:///relative`` / ``sqlite:////absolute`` URL
    (``:memory:`` for a private in-memory store). Other URL schemes are an :class:`EvalgymError`."""
    text = os.fspath(location)
    if "://" not in text:
        return text
    scheme, _, rest = text.partition("://")
    if scheme.split("+")[0].lower() != "sqlite":
        raise EvalgymError(f"results store {text!r}: only SQLite is supported (a path or sqlite:///path); "
                           f"{scheme!r} URLs are not")
    if not rest.startswith("/") or rest == "/":
        raise EvalgymError(f"results store {text!r}: expected sqlite:///relative/path or sqlite:////absolute/path")
    return rest[1:].split("?", 1)[0]


class ResultsStore:
    """A results database (a SQLite file). Thread-safe; several processes may write one file at once."""

    def __init__(self, location: str | os.PathLike = DEFAULT_STORE, *, create: bool = True):
        """Open (and with ``create``, make: parent folders and schema) the store at ``location``.
        ``create=False`` is for readers: a missing file is an :class:`EvalgymError`, not an empty store."""
        self.path = sqlite_path(location)
        memory = self.path == ":memory:"
        if not memory:
            file = Path(self.path)
            if not create and not file.is_file():
                raise EvalgymError(f"results store {self.path}: no such file (evaluate something first, or "
                                   "pass --store)")
            if create:
                try:
                    file.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise EvalgymError(f"results store {self.path}: cannot create {file.parent}: "
                                       f"{exc.strerror}") from None
        self._lock = threading.Lock()
        try:
            # isolation_level=None: no implicit transactions; ``record`` opens its own BEGIN IMMEDIATE
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise EvalgymError(f"results store {self.path}: cannot open: {exc}") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise EvalgymError(f"results store {self.path}: cannot use WAL journal mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise EvalgymError(f"results store {self.path}: {exc}") from None
            raise

    def _init_schema(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._conn.execute(statement)
                row = self._conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    self._conn.execute("INSERT INTO store_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise EvalgymError(f"results store {self.path}: schema version {row[0]} is newer than this "
                                       f"evalgym ({SCHEMA_VERSION}); upgrade evalgym")
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    # -- writing --------------------------------------------------------------------------------

    def record(self, rows: Iterable[ResultRow]) -> int:
        """Write ``rows`` in one transaction (all or none), replacing any row with the same
        (run, checkpoint, task, metric). A manifest without ``time`` gets the current UTC time.
        Returns the number of rows written. Bad rows raise :class:`EvalgymError` before anything is written."""
        params = [_params(i, r) for i, r in enumerate(rows)]
        if not params:
            return 0
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(_UPSERT, params)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise EvalgymError(f"results store {self.path}: write failed: {exc}") from None
        return len(params)

    # -- reading --------------------------------------------------------------------------------

    def done(self, run: str, checkpoint: str, task: str) -> bool:
        """Whether (run, checkpoint, task) has any rows: resume skips it."""
        with self._lock:
            cur = self._conn.execute("SELECT 1 FROM results WHERE run = ? AND checkpoint = ? AND task = ? LIMIT 1",
                                     (run, checkpoint, task))
            return cur.fetchone() is not None

    def rows(self, runs: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> list[ResultRow]:
        """All rows, or those of the given runs and/or tasks; ordered by run, step (plain models first),
        checkpoint, task, metric."""
        where, args = [], []
        for column, wanted in (("run", runs), ("task", tasks)):
            if wanted is not None:
                wanted = list(wanted)
                where.append(f"{column} IN ({', '.join('?' * len(wanted))})" if wanted else "0")
                args.extend(wanted)
        sql = (f"SELECT {_COLUMNS} FROM results" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY run, step IS NOT NULL, step, checkpoint, task, metric")
        with self._lock:
            fetched = self._conn.execute(sql, args).fetchall()
        return [ResultRow(run, ckpt, step, task, metric, value, stderr, lo, hi, n, json.loads(manifest))
                for run, ckpt, step, task, metric, value, stderr, lo, hi, n, manifest in fetched]

    def runs(self) -> list[str]:
        """Names of the runs with at least one row, sorted."""
        with self._lock:
            return [r for (r,) in self._conn.execute("SELECT DISTINCT run FROM results ORDER BY run")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.path!r})"


def _number(value: Any, what: str, *, required: bool = False) -> float | None:
    """A finite float, or None (optional fields: a NaN/inf stderr, as lm-eval reports 'N/A', becomes None)."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EvalgymError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        if required:
            raise EvalgymError(f"{what} must be finite, got {value!r}")
        return None
    return value


def _params(index: int, row: ResultRow) -> tuple:
    """The SQL parameters of one row, validated; errors name the row and field."""
    if not isinstance(row, ResultRow):
        raise EvalgymError(f"record: row {index} is a {type(row).__name__}, not a ResultRow")
    where = f"record: row {index} ({row.run!r}, {row.checkpoint!r}, {row.task!r}, {row.metric!r})"
    for name in ("run", "checkpoint", "task", "metric"):
        if not isinstance(getattr(row, name), str) or not getattr(row, name):
            raise EvalgymError(f"{where}: field {name!r} must be a non-empty string")
    for name in ("step", "n"):
        v = getattr(row, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise EvalgymError(f"{where}: field {name!r} must be an int or None, got {v!r}")
    if not isinstance(row.manifest, dict):
        raise EvalgymError(f"{where}: field 'manifest' must be a dict")
    manifest = row.manifest if "time" in row.manifest else {**row.manifest, "time": utc_now()}
    try:
        manifest_json = json.dumps(manifest, sort_keys=True, default=str, allow_nan=False)
    except ValueError as exc:
        raise EvalgymError(f"{where}: field 'manifest' is not JSON: {exc}") from None
    return (row.run, row.checkpoint, row.step, row.task, row.metric,
            _number(row.value, f"{where}: field 'value'", required=True),
            _number(row.stderr, f"{where}: field 'stderr'"), _number(row.ci_low, f"{where}: field 'ci_low'"),
            _number(row.ci_high, f"{where}: field 'ci_high'"), row.n, manifest_json)
