"""Run pure grading functions in worker processes, each call under a time budget.

Why processes: a symbolic check can hang on hostile input (``10^{10^{10^{10}}}``, deep nesting) inside
C-level bignum arithmetic, where no Python-level timeout can interrupt it, and ``signal.alarm`` only
works in the main thread. A worker that overruns its budget is killed (SIGKILL) and replaced; the call
gets a ``timeout`` outcome.

Workers are forked by a small server process, ``python -m evalgym.verifiers.worker`` (started once per
pool, over a socket), which imports the grading modules first, so a worker or its replacement starts in
milliseconds. Nothing is started through ``multiprocessing``, which would re-import the caller's main
module in every worker: pools work from a script without an ``if __name__ == "__main__"`` guard, from
``python -``, a REPL and a notebook. A grading function defined in ``__main__`` itself is sent by value
(cloudpickle); any other is imported by name in the worker.

    pool = BudgetPool(workers=2, preload=("evalgym.verifiers.math",))
    outcomes = pool.map(grade_fn, [(gold, pred), ...], budget_s=1.0)

The budget is wall-clock time less the time the worker spent runnable but waiting for a CPU (Linux's
``/proc/PID/schedstat``): a check that needs 0.2 s of work gets 0.2 s whether the machine is idle or
busy with other jobs, so the same completion gets the same verdict under load (a reward that depends on
the machine's load is noise in training). Sleeping or blocking counts as used time, so a call that hangs
on I/O ends at the budget as before. A call starved beyond ``WALL_CAP_FACTOR`` x its budget of wall time
is ended anyway. Where ``schedstat`` is unreadable (not Linux) the budget is plain wall-clock time.

What it does not protect against: a grading function that is itself malicious (it runs with our
privileges). Model-written programs go through ``evalgym.sandbox`` instead.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Literal, Sequence

Status = Literal["ok", "error", "timeout", "crashed"]
STARTUP_TIMEOUT_S = 120.0
WALL_CAP_FACTOR = 20.0  # a call whose worker is starved of CPU still ends after budget x this of wall time
PID = struct.Struct("!i")  # as in worker.py, which is run as a script (-m), so not imported here
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Outcome:
    """What became of one call: its value when ``status == "ok"``, else a message in ``error``."""

    status: Status
    value: Any = None
    error: str | None = None
    elapsed_s: float = 0.0


def _run_delay_s(pid: int) -> float | None:
    """Seconds ``pid`` has spent runnable but waiting for a CPU (``/proc/PID/schedstat``), or None."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class _Server:
    """The ``python -m evalgym.verifiers.worker`` process that forks this pool's workers."""

    def __init__(self, preload: tuple[str, ...]):
        self.ctrl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # it forks: no BLAS thread pools in it
        self.proc = subprocess.Popen([sys.executable, "-m", "evalgym.verifiers.worker", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        theirs.close()
        self.preload = preload
        path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        self.ctrl.sendall(b"C" + json.dumps({"sys_path": path, "preload": list(preload)}).encode())
        self.ctrl.settimeout(STARTUP_TIMEOUT_S)
        try:
            ok = self.ctrl.recv(16) == b"R"
        except OSError:
            ok = False
        self.ctrl.settimeout(None)
        if not ok:
            self.close()
            raise RuntimeError(f"the verifier worker server failed to start (preload {preload}); its error is on "
                               "stderr above")

    def fork(self) -> tuple[int, Connection]:
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(self.ctrl, [b"F"], [theirs.fileno()])
            reply = self.ctrl.recv(16)
        finally:
            theirs.close()
        if len(reply) != PID.size:
            raise RuntimeError("the verifier worker server died; its error is on stderr above")
        return PID.unpack(reply)[0], Connection(mine.detach())

    def kill(self, pid: int) -> None:
        try:
            self.ctrl.sendall(b"K" + PID.pack(pid))
        except OSError:
            pass  # the server is gone, and its workers with it

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.ctrl.close()  # EOF: the server kills its workers and exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Worker:
    def __init__(self, server: _Server):
        self.server = server
        self.pid, self.conn = server.fork()
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"a verifier worker failed to start (preload {server.preload}); its error is on "
                               "stderr above")
        self.task: int | None = None
        self.started = 0.0
        self.delay0: float | None = None  # the worker's run delay when its task was sent

    def begin(self, task: int) -> None:
        self.task, self.started, self.delay0 = task, time.perf_counter(), _run_delay_s(self.pid)

    def left(self, now: float, budget_s: float) -> float:
        """Seconds of the budget the current task has left: wall time less the worker's waits for a CPU
        counts as used. schedstat is read only once the wall time alone has reached the budget."""
        wall = now - self.started
        if wall < budget_s or self.delay0 is None:
            return budget_s - wall
        delay = _run_delay_s(self.pid)
        return budget_s - (wall if delay is None else max(0.0, wall - (delay - self.delay0)))

    def kill(self) -> None:
        self.server.kill(self.pid)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.conn.close()


_BY_VALUE: "weakref.WeakKeyDictionary[Callable[..., Any], bytes]" = weakref.WeakKeyDictionary()


def _message(fn: Callable[..., Any], args: tuple) -> tuple:
    """What a worker gets: the function by name, or by value when it lives in ``__main__`` (a script,
    ``python -``, a notebook cell), which the worker does not import."""
    if getattr(fn, "__module__", None) != "__main__":
        return (fn, args, False)
    blob = _BY_VALUE.get(fn)
    if blob is None:
        import cloudpickle

        blob = _BY_VALUE[fn] = cloudpickle.dumps(fn)
    return (blob, args, True)


_POOLS: "weakref.WeakSet[BudgetPool]" = weakref.WeakSet()


class BudgetPool:
    """A small process pool where every call has its own deadline and a hung call costs one worker."""

    def __init__(self, workers: int | None = None, preload: Sequence[str] = ()):
        self.max_workers = max(1, workers or min(4, os.cpu_count() or 1))
        self.preload = tuple(preload)
        self._server: _Server | None = None
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.kills = 0  # workers killed for overrunning their budget (reported by benchmarks)
        _POOLS.add(self)

    def _forget_if_forked(self) -> None:
        """After fork, the inherited server and workers belong to the parent: never touch them here
        (their sockets were closed in the child by ``_close_inherited``)."""
        if self._pid != os.getpid():
            self._idle, self._server = [], None
            self._pid = os.getpid()

    def _spawn(self) -> _Worker:
        if self._server is None or not self._server.alive():
            self._server = _Server(self.preload)
        return _Worker(self._server)

    def warm(self) -> None:
        """Start every worker now, so the first calls do not pay for process start-up."""
        with self._lock:
            self._forget_if_forked()
            while len(self._idle) < self.max_workers:
                self._idle.append(self._spawn())

    def map(self, fn: Callable[..., Any], arg_tuples: Sequence[tuple], budget_s: float) -> list[Outcome]:
        """Call ``fn(*args)`` for each tuple, at most ``budget_s`` seconds each (not counting waits for a
        CPU; see the module docstring); results in input order."""
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
                    w.begin(i)
                    try:
                        w.conn.send(_message(fn, tasks[i]))
                    except Exception as exc:  # unpicklable arguments: the caller's error, per item
                        results[i] = Outcome("error", error=f"cannot send arguments: {exc}"[:500])
                        w.task = None
                        self._idle.append(w)
                        continue
                    busy.append(w)
                if not busy:
                    continue
                now = time.perf_counter()
                cap_s = budget_s * WALL_CAP_FACTOR
                timeout = max(0.0, min(min(w.left(now, budget_s), w.started + cap_s - now) for w in busy))
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
                    elif (left := w.left(now, budget_s)) <= 0 or now - w.started >= cap_s:
                        error = (f"timeout after {budget_s:g}s" if left <= 0 else
                                 f"timeout: {now - w.started:.3g}s of wall time, starved of CPU (budget {budget_s:g}s)")
                        results[i] = Outcome("timeout", error=error, elapsed_s=now - w.started)
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
            if self._server is not None:
                self._server.close()
                self._server = None


def _close_inherited() -> None:
    """In a forked child (AsyncVectorEnv, DataLoader workers): close the copies of the parent's server
    and worker sockets, so that the parent's exit still reads as EOF there (and ends them)."""
    for pool in list(_POOLS):
        for w in pool._idle:
            try:
                w.conn.close()
            except OSError:
                pass
        if pool._server is not None:
            try:
                pool._server.ctrl.close()
            except OSError:
                pass
        pool._lock = threading.Lock()


os.register_at_fork(after_in_child=_close_inherited)

# Not used by these pools, but a forkserver that others start (AsyncVectorEnv(context="forkserver"))
# imports evalgym first, so "evalgym/..." ids resolve in its children (the previous, multiprocessing-based
# pool set this as a side effect; envs tests rely on it). "__main__" is multiprocessing's own default.
mp.get_context("forkserver").set_forkserver_preload(["__main__", "evalgym"])

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
