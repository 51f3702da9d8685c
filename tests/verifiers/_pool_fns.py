"""Module-level helpers for tests/verifiers/test_pool.py.

``BudgetPool`` pickles the function by reference, so the worker processes must be able to import it
as ``tests.verifiers._pool_fns``; nothing here may be a lambda or a closure.
"""

from __future__ import annotations

import os
import time
from typing import Any


def add(a: int, b: int) -> int:
    return a + b


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def pid_then_sleep(pid_file: str, seconds: float) -> int:
    """Record this worker's pid, then hang past any reasonable budget."""
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def hard_exit(code: int) -> None:
    os._exit(code)


def unpicklable() -> Any:
    return lambda: None


def getpid() -> int:
    return os.getpid()


def child_pool_pids(queue: Any, key: tuple[str, ...]) -> None:
    """Run in a forked child: grade through the process-wide pool for ``key``, report the worker pids."""
    try:
        from evalgym.verifiers.pool import shared_pool

        outcomes = shared_pool(key).map(getpid, [()] * 4, 10.0)
        queue.put(("ok", [o.value for o in outcomes], [o.status for o in outcomes]))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        queue.put(("error", f"{type(exc).__name__}: {exc}", []))


def spin_on_cpu(cpu: int, cpu_seconds: float) -> float:
    """Pin this worker to ``cpu``, burn ``cpu_seconds`` of CPU time, unpin; return the wall time it took."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        while time.process_time() - c0 < cpu_seconds:
            pass
        return time.perf_counter() - t0
    finally:
        os.sched_setaffinity(0, before)
