"""Run pure grading functions in worker processes, each call under a wall-clock budget.

Why processes: a symbolic check can hang on hostile input (``10^{10^{10^{10}}}``, deep nesting) inside
C-level bignum arithmetic, where no Python-level timeout can interrupt it, and ``signal.alarm`` only
works in the main thread. A worker that overruns its budget is killed (SIGKILL) and replaced; the call
gets a ``timeout`` outcome. Workers come from a ``forkserver`` (forking a parent that already runs
torch/tokenizer threads is unsafe) that preloads the grading modules, so a replacement starts in ms.

    pool = BudgetPool(workers=2, preload=("evalgym.verifiers.math",))
    outcomes = pool.map(grade_fn, [(gold, pred), ...], budget_s=1.0)

What it does not protect against: a grading function that is itself malicious (it runs with our
privileges). Model-written programs go through ``evalgym.sandbox`` instead.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Literal, Sequence

Status = Literal["ok", "error", "timeout", "crashed"]
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Outcome:
    """What became of one call: its value when ``status == "ok"``, else a message in ``error``."""

    status: Status
    value: Any = None
    error: str | None = None
    elapsed_s: float = 0.0


def _die_with_parent() -> None:
    try:  # Linux: get SIGKILL when the parent (the forkserver) goes away, even mid-computation.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(conn: Connection, preload: tuple[str, ...]) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    for name in preload:
        importlib.import_module(name)
    conn.send("ready")  # budgets start after start-up, never during an import
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        t0 = time.perf_counter()
        try:
            result: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - the grader's failure is data, not a crash
            result = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send((result, time.perf_counter() - t0))
        except Exception as exc:  # unpicklable result
            conn.send((("error", f"unpicklable result: {exc}"[:500]), time.perf_counter() - t0))


class _Worker:
    def __init__(self, ctx: Any, preload: tuple[str, ...]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, preload), daemon=True)
        me = mp.current_process()
        was_daemon = me._config.get("daemon")  # e.g. inside an AsyncVectorEnv worker
        me._config["daemon"] = False  # our workers die with us anyway (PDEATHSIG, EOF on the pipe)
        try:
            self.proc.start()
        finally:
            me._config["daemon"] = was_daemon
        child.close()
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"a verifier worker failed to start (preload {preload}); its error is on stderr "
                               "above. Worker processes re-import the main module: run scripts from a file.")
        self.task: int | None = None
        self.started = 0.0

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=1)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


class BudgetPool:
    """A small process pool where every call has its own deadline and a hung call costs one worker."""

    def __init__(self, workers: int | None = None, preload: Sequence[str] = ()):
        self.max_workers = max(1, workers or min(4, os.cpu_count() or 1))
        self.preload = tuple(preload)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(self.preload))
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.kills = 0  # workers killed for overrunning their budget (reported by benchmarks)

    def _forget_if_forked(self) -> None:
        """After fork, the inherited workers and pipes belong to the parent: never touch them here."""
        if self._pid != os.getpid():
            self._idle = []
            self._pid = os.getpid()

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self.preload)

    def warm(self) -> None:
        """Start every worker now, so the first calls do not pay for process start-up."""
        with self._lock:
            self._forget_if_forked()
            while len(self._idle) < self.max_workers:
                self._idle.append(self._spawn())

    def map(self, fn: Callable[..., Any], arg_tuples: Sequence[tuple], budget_s: float) -> list[Outcome]:
        """Call ``fn(*args)`` for each tuple, at most ``budget_s`` seconds each; results in input order."""
        with self._lock:
            self._forget_if_forked()
            return self._map_locked(fn, list(arg_tuples), budget_s)

    def _map_locked(self, fn: Callable[..., Any], tasks: list[tuple], budget_s: float) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))[::-1]  # pop() from the end = input order
        busy: list[_Worker] = []
        n_workers = min(self.max_workers, len(tasks))
        try:
            while pending or busy:
                while pending and len(busy) < n_workers:
                    w = self._idle.pop() if self._idle else self._spawn()
                    i = pending.pop()
                    w.task, w.started = i, time.perf_counter()
                    try:
                        w.conn.send((fn, tasks[i]))
                    except Exception as exc:  # unpicklable arguments: the caller's error, per item
                        results[i] = Outcome("error", error=f"cannot send arguments: {exc}"[:500])
                        w.task = None
                        self._idle.append(w)
                        continue
                    busy.append(w)
                if not busy:
                    continue
                now = time.perf_counter()
                timeout = max(0.0, min(w.started + budget_s for w in busy) - now)
                ready = wait([w.conn for w in busy], timeout=timeout)
                now = time.perf_counter()
                for w in list(busy):
                    i = w.task
                    assert i is not None
                    if w.conn in ready:
                        try:
                            (status, value), _inner = w.conn.recv()
                        except (EOFError, OSError) as exc:
                            results[i] = Outcome("crashed", error=f"worker died: {exc or 'EOF'}",
                                                 elapsed_s=now - w.started)
                            busy.remove(w)
                            w.kill()
                            continue
                        elapsed = now - w.started
                        if status == "ok":
                            results[i] = Outcome("ok", value=value, elapsed_s=elapsed)
                        else:
                            results[i] = Outcome("error", error=value, elapsed_s=elapsed)
                        w.task = None
                        busy.remove(w)
                        self._idle.append(w)
                    elif now - w.started >= budget_s:
                        results[i] = Outcome("timeout", error=f"timeout after {budget_s:g}s",
                                             elapsed_s=now - w.started)
                        busy.remove(w)
                        w.kill()
                        self.kills += 1
        finally:
            for w in busy:  # interrupted (KeyboardInterrupt): workers hold unknown state
                w.kill()
        return [r if r is not None else Outcome("error", error="not run") for r in results]

    def close(self) -> None:
        with self._lock:
            self._forget_if_forked()
            for w in self._idle:
                w.stop()
            self._idle.clear()


def _fresh_forkserver_in_child() -> None:
    """A forked child (AsyncVectorEnv, DataLoader workers) inherits the parent's forkserver handle, which
    is not its child: forget it, so the first pool here starts a forkserver of its own."""
    from multiprocessing import forkserver

    fs = forkserver._forkserver
    fs._forkserver_address = fs._forkserver_alive_fd = fs._forkserver_pid = None
    fs._inherited_fds = None
    fs._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_forkserver_in_child)

_DEFAULT: dict[tuple[int, tuple[str, ...]], BudgetPool] = {}  # keyed by pid: a forked child gets its own
_DEFAULT_LOCK = threading.Lock()


def shared_pool(preload: Sequence[str]) -> BudgetPool:
    """The process-wide pool for a set of grading modules (``EVALGYM_VERIFIER_WORKERS`` sizes it)."""
    key = (os.getpid(), tuple(preload))
    with _DEFAULT_LOCK:
        pool = _DEFAULT.get(key)
        if pool is None:
            workers = int(os.environ.get("EVALGYM_VERIFIER_WORKERS", "0")) or None
            pool = _DEFAULT[key] = BudgetPool(workers=workers, preload=key[1])
        return pool


@atexit.register
def _close_shared() -> None:
    for (pid, _), pool in list(_DEFAULT.items()):
        if pid == os.getpid():
            pool.close()
