"""The results store: one evaluation per (run id, checkpoint, task, settings hash), its scores (one row per
metric, with its interval), its per-sample records (prompt, completion, verdict) and, when it failed, its
error; each with the manifest that produced it (model, step, task and verifier versions, split, sampling,
seed, git sha, contamination, time).

    from evalgym.benchmarks.store import ResultRow, ResultsStore

    with ResultsStore("runs/results.sqlite") as store:        # or "sqlite:///runs/results.sqlite"
        if not store.done("/abs/runs/a", "a/step_000100", "gsm8k", settings_hash="3f2a..."):
            store.record([ResultRow("a", "a/step_000100", 100, "gsm8k", "exact_match", 0.42, stderr=0.03,
                                    ci_low=0.36, ci_high=0.48, n=250, manifest={...},
                                    run_id="/abs/runs/a", settings_hash="3f2a...")],
                         samples=[{"doc": 0, "sample": 0, "prompt": [...], "completion": "...", ...}])
        store.rows(runs=["a"])                                  # -> [ResultRow, ...] (eval_id filled in)
        store.samples(eval_id)                                  # the per-sample records of one evaluation
        store.errors()                                          # evaluations that failed, with their error

The key. ``run_id`` is a unique identity of the run (the evaluation side uses the resolved run folder, so
two runs both called ``sft`` never collide; ``run`` is only its display name) and ``settings_hash`` a hash
of every evaluation setting (task and verifier versions, split, limit, samples, tokens, sampling, env
kwargs, seed, ...): evaluating again with other settings makes a new evaluation, never reuses an old one;
the same settings replace it.

Durability. ``record`` writes an evaluation (its scores and samples) in ONE transaction, all or nothing,
so an evaluation killed at any point -- SIGKILL included -- loses nothing it had committed and leaves no
half-written task; on restart ``done`` tells what is missing. WAL mode, ``synchronous=FULL`` and a busy
timeout let several writers (a trainer's evaluator and an ``evalgym watch`` process) share one file;
writers take the write lock up front (``BEGIN IMMEDIATE``), so they queue rather than deadlock. Local
files only: WAL needs shared memory, which network file systems do not give.

Old stores. A schema-1 store (rows keyed by run name, checkpoint, task, metric) is migrated in place on
open, in one transaction: each (run, checkpoint, task) becomes one evaluation with ``settings_hash``
``"legacy-v1"`` (its settings were never hashed, so no new evaluation matches it) and its rows keep their
manifests. A store from a newer evalgym is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError

DEFAULT_STORE = "runs/results.sqlite"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0
LEGACY_SETTINGS = "legacy-v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evals (
    eval_id       TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    run           TEXT NOT NULL,
    checkpoint    TEXT NOT NULL,
    step          INTEGER,
    task          TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    overlap       INTEGER,
    manifest      TEXT NOT NULL DEFAULT '{}',
    time          TEXT NOT NULL,
    UNIQUE (run_id, checkpoint, task, settings_hash)
);
CREATE TABLE IF NOT EXISTS scores (
    eval_id TEXT NOT NULL REFERENCES evals (eval_id) ON DELETE CASCADE,
    metric  TEXT NOT NULL,
    value   REAL NOT NULL,
    stderr  REAL,
    ci_low  REAL,
    ci_high REAL,
    n       INTEGER,
    manifest TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (eval_id, metric)
);
CREATE TABLE IF NOT EXISTS samples (
    eval_id      TEXT NOT NULL REFERENCES evals (eval_id) ON DELETE CASCADE,
    doc          INTEGER NOT NULL,
    sample       INTEGER NOT NULL,
    record       TEXT NOT NULL,
    PRIMARY KEY (eval_id, doc, sample)
);
CREATE INDEX IF NOT EXISTS evals_run ON evals (run);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_ROW_SQL = ("SELECT e.run, e.checkpoint, e.step, e.task, s.metric, s.value, s.stderr, s.ci_low, s.ci_high, s.n, "
            "s.manifest, e.run_id, e.settings_hash, e.eval_id FROM scores s JOIN evals e USING (eval_id)")
_ORDER = " ORDER BY e.run, e.step IS NOT NULL, e.step, e.checkpoint, e.task, s.metric, e.settings_hash"


def utc_now() -> str:
    """The current time as ISO-8601 UTC (``2026-01-31T12:00:00.123456+00:00``), the manifest's ``time``."""
    return datetime.now(timezone.utc).isoformat()


def eval_key(run_id: str, checkpoint: str, task: str, settings_hash: str) -> str:
    """The evaluation id: 16 hex characters of the key (run id, checkpoint, task, settings hash)."""
    text = json.dumps([run_id, checkpoint, task, settings_hash])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResultRow:
    """One score. (run_id, checkpoint, task, settings_hash) is its evaluation; metric names the score."""

    run: str            # the run's display name (e.g. "mopd-2026/expert-math")
    checkpoint: str     # the checkpoint as shown ("sft/step_000100") or a model name ("tiny")
    step: int | None    # training step of the checkpoint (None for a plain model)
    task: str           # task name, e.g. "evalgym_arithmetic" or "gsm8k"
    metric: str         # e.g. "acc", "pass@1", "mean@4", "exact_match,strict-match"
    value: float
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None           # samples behind the score
    # model, step, task_version, verifier_version, split, sampling, seed, git_sha, contamination, time
    # (ISO-8601 UTC; filled in by ``record`` when missing), recipe, stage, stage_index, from, backend ...
    manifest: dict = field(default_factory=dict)
    run_id: str = ""               # unique run identity ("": the run name)
    settings_hash: str = ""        # hash of every evaluation setting ("": none given)
    eval_id: str = field(default="", compare=False)   # filled in by the store on reading

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.run_id or self.run, self.checkpoint, self.task, self.settings_hash)


@dataclass(frozen=True)
class EvalError:
    """An evaluation that failed: what was evaluated, and why it failed."""

    run: str
    checkpoint: str
    step: int | None
    task: str
    error: str
    manifest: dict
    run_id: str
    settings_hash: str
    eval_id: str


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
            # isolation_level=None: no implicit transactions; writes open their own BEGIN IMMEDIATE
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
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._write(self._init_schema)
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise EvalgymError(f"results store {self.path}: {exc}") from None
            raise

    def _write(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in one write transaction (all or nothing)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(*args)
                    self._conn.execute("COMMIT")
                    return out
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise EvalgymError(f"results store {self.path}: write failed: {exc}") from None

    def _init_schema(self) -> None:
        c = self._conn
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = None
        if "store_meta" in tables:
            row = c.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise EvalgymError(f"results store {self.path}: schema version {version} is newer than this evalgym "
                               f"({SCHEMA_VERSION}); upgrade evalgym")
        if "results" in tables and "evals" not in tables:
            c.execute("ALTER TABLE results RENAME TO results_v1")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            c.execute(statement)
        if "results" in tables and "evals" not in tables:
            self._migrate_v1()
        c.execute("INSERT OR REPLACE INTO store_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2: each (run, checkpoint, task) of the old rows becomes one legacy evaluation."""
        c = self._conn
        old = c.execute("SELECT run, checkpoint, step, task, metric, value, stderr, ci_low, ci_high, n, manifest "
                        "FROM results_v1 ORDER BY run, checkpoint, task, metric").fetchall()
        for run, ckpt, step, task, metric, value, stderr, lo, hi, n, manifest in old:
            eid = eval_key(run, ckpt, task, LEGACY_SETTINGS)
            m = {**json.loads(manifest), "legacy": "schema-1 row: its evaluation settings were not recorded as a key"}
            c.execute("INSERT OR IGNORE INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, 'done', NULL, NULL, ?, ?)",
                      (eid, run, run, ckpt, step, task, LEGACY_SETTINGS, json.dumps(m, sort_keys=True),
                       str(m.get("time") or utc_now())))
            c.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (eid, metric, value, stderr, lo, hi, n, json.dumps(m, sort_keys=True)))
        c.execute("DROP TABLE results_v1")

    # -- writing --------------------------------------------------------------------------------

    def record(self, rows: Iterable[ResultRow], samples: Sequence[Mapping[str, Any]] = ()) -> int:
        """Write ``rows`` in one transaction (all or none): the rows of each evaluation (same run id,
        checkpoint, task, settings hash) replace any earlier record of it, with ``samples`` (dicts with
        ``doc`` and ``sample``; only with rows of one evaluation). A manifest without ``time`` gets the
        current UTC time. Returns the number of rows written. Bad rows raise :class:`EvalgymError` before
        anything is written."""
        rows = list(rows)
        params = [_params(i, r) for i, r in enumerate(rows)]
        if not params:
            return 0
        evals: dict[tuple, list[tuple]] = {}
        for row, p in zip(rows, params):
            evals.setdefault(row.key, []).append((row, p))
        if samples and len(evals) != 1:
            raise EvalgymError(f"record: samples belong to one evaluation; the rows hold {len(evals)}")
        sample_rows = [_sample_params(i, s) for i, s in enumerate(samples)]

        def write() -> None:
            for key, members in evals.items():
                row, (manifest_json, *_rest) = members[0]
                eid = eval_key(*key)
                self._conn.execute("DELETE FROM evals WHERE eval_id = ?", (eid,))
                overlap = (row.manifest.get("contamination") or {}).get("overlap")
                self._conn.execute("INSERT INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, 'done', NULL, ?, ?, ?)",
                                   (eid, key[0], row.run, row.checkpoint, row.step, row.task, row.settings_hash,
                                    overlap if isinstance(overlap, int) else None, manifest_json,
                                    json.loads(manifest_json)["time"]))
                self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       [(eid, *p[1:], p[0]) for _, p in members])
                self._conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)",
                                       [(eid, *s) for s in sample_rows])
        self._write(write)
        return len(params)

    def record_error(self, run: str, checkpoint: str, step: int | None, task: str, error: str, *,
                     run_id: str = "", settings_hash: str = "", manifest: Mapping[str, Any] | None = None) -> str:
        """Keep a failed evaluation (its error and manifest) so reports show it; a later successful
        ``record`` of the same evaluation replaces it. Returns its eval id."""
        m = dict(manifest or {})
        m.setdefault("time", utc_now())
        manifest_json = json.dumps(m, sort_keys=True, default=str)
        key = (run_id or run, checkpoint, task, settings_hash)
        eid = eval_key(*key)

        def write() -> None:
            self._conn.execute("DELETE FROM evals WHERE eval_id = ?", (eid,))
            self._conn.execute("INSERT INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, 'error', ?, NULL, ?, ?)",
                               (eid, key[0], run, checkpoint, step, task, settings_hash, str(error), manifest_json,
                                m["time"]))
        self._write(write)
        return eid

    # -- reading --------------------------------------------------------------------------------

    def done(self, run_id: str, checkpoint: str, task: str, settings_hash: str = "") -> bool:
        """Whether this evaluation (same run id, checkpoint, task and settings) has its scores: resume
        skips it. A failed evaluation is not done."""
        with self._lock:
            cur = self._conn.execute("SELECT 1 FROM evals WHERE eval_id = ? AND status = 'done'",
                                     (eval_key(run_id, checkpoint, task, settings_hash),))
            return cur.fetchone() is not None

    def rows(self, runs: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
             eval_id: str | None = None) -> list[ResultRow]:
        """All scores, or those of the given runs (display names) and/or tasks, or of one evaluation;
        ordered by run, step (plain models first), checkpoint, task, metric."""
        where, args = _filters(runs, tasks)
        if eval_id is not None:
            where.append("e.eval_id = ?")
            args.append(eval_id)
        sql = _ROW_SQL + (" WHERE " + " AND ".join(where) if where else "") + _ORDER
        with self._lock:
            fetched = self._conn.execute(sql, args).fetchall()
        return [ResultRow(run, ckpt, step, task, metric, value, stderr, lo, hi, n, json.loads(manifest), run_id,
                          settings, eid)
                for run, ckpt, step, task, metric, value, stderr, lo, hi, n, manifest, run_id, settings, eid in fetched]

    def errors(self, runs: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> list[EvalError]:
        """Evaluations that failed (and have not succeeded since), oldest first."""
        where, args = _filters(runs, tasks)
        sql = ("SELECT e.run, e.checkpoint, e.step, e.task, e.error, e.manifest, e.run_id, e.settings_hash, "
               "e.eval_id FROM evals e WHERE e.status = 'error'" + "".join(f" AND {w}" for w in where)
               + " ORDER BY e.time")
        with self._lock:
            fetched = self._conn.execute(sql, args).fetchall()
        return [EvalError(run, ckpt, step, task, err, json.loads(m), rid, sh, eid)
                for run, ckpt, step, task, err, m, rid, sh, eid in fetched]

    def samples(self, eval_id: str) -> list[dict[str, Any]]:
        """The per-sample records of one evaluation, by doc then sample."""
        with self._lock:
            fetched = self._conn.execute("SELECT record FROM samples WHERE eval_id = ? ORDER BY doc, sample",
                                         (eval_id,)).fetchall()
        return [json.loads(r) for (r,) in fetched]

    def runs(self) -> list[str]:
        """Names of the runs with at least one evaluation, sorted."""
        with self._lock:
            return [r for (r,) in self._conn.execute("SELECT DISTINCT run FROM evals ORDER BY run")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.path!r})"


def _filters(runs: Sequence[str] | None, tasks: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, wanted in (("e.run", runs), ("e.task", tasks)):
        if wanted is not None:
            wanted = list(wanted)
            where.append(f"{column} IN ({', '.join('?' * len(wanted))})" if wanted else "0")
            args.extend(wanted)
    return where, args


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
    """(manifest JSON, metric, value, stderr, ci_low, ci_high, n) of one row, validated; errors name the
    row and field."""
    if not isinstance(row, ResultRow):
        raise EvalgymError(f"record: row {index} is a {type(row).__name__}, not a ResultRow")
    where = f"record: row {index} ({row.run!r}, {row.checkpoint!r}, {row.task!r}, {row.metric!r})"
    for name in ("run", "checkpoint", "task", "metric"):
        if not isinstance(getattr(row, name), str) or not getattr(row, name):
            raise EvalgymError(f"{where}: field {name!r} must be a non-empty string")
    for name in ("run_id", "settings_hash"):
        if not isinstance(getattr(row, name), str):
            raise EvalgymError(f"{where}: field {name!r} must be a string")
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
    return (manifest_json, row.metric, _number(row.value, f"{where}: field 'value'", required=True),
            _number(row.stderr, f"{where}: field 'stderr'"), _number(row.ci_low, f"{where}: field 'ci_low'"),
            _number(row.ci_high, f"{where}: field 'ci_high'"), row.n)


def _sample_params(index: int, sample: Mapping[str, Any]) -> tuple:
    for name in ("doc", "sample"):
        v = sample.get(name) if isinstance(sample, Mapping) else None
        if isinstance(v, bool) or not isinstance(v, int):
            raise EvalgymError(f"record: samples[{index}] field {name!r} must be an int, got {v!r}")
    try:
        text = json.dumps(dict(sample), default=str, allow_nan=False)
    except ValueError as exc:
        raise EvalgymError(f"record: samples[{index}] is not JSON: {exc}") from None
    return (sample["doc"], sample["sample"], text)
