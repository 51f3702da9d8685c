"""``evalgym.verifiers.pool.BudgetPool``: budgeted calls in worker processes.

Covers: results come back in input order whatever the completion order; a call that overruns its
budget is a ``timeout`` outcome within budget + 0.5 s (waits for a CPU not counted: a starved call is
graded as on an idle machine, a CPU-burning one still cut), its worker is really killed (pid gone) and the
pool keeps working; a raising call is an ``error`` outcome carrying the exception text; a worker that
dies (``os._exit``) is a ``crashed`` outcome and the pool recovers; an unpicklable result is an error,
not a hang. Also that the process-wide ``shared_pool`` is not inherited by a forked child. The helpers
live in ``tests/verifiers/_pool_fns.py`` so the workers can import them by name; a function defined in
``__main__`` goes by value (tests/test_readme_tour.py runs one from stdin and from a notebook).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalgym.verifiers import pool as pool_module
from evalgym.verifiers.pool import BudgetPool, shared_pool
from tests.verifiers import _pool_fns as fns

BUDGET_S = 0.5
SLACK_S = 0.5


@pytest.fixture(scope="module")
def pool():
    p = BudgetPool(workers=2)
    p.warm()  # the budget never covers start-up, but the wall-clock assertions below would
    yield p
    p.close()


def _alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_results_in_input_order(pool):
    delays = [0.3, 0.0, 0.2, 0.0, 0.1, 0.0]  # later inputs finish first
    outcomes = pool.map(fns.sleep_then, [(d, i) for i, d in enumerate(delays)], budget_s=5.0)
    assert [o.status for o in outcomes] == ["ok"] * len(delays)
    assert [o.value for o in outcomes] == list(range(len(delays)))
    assert pool.map(fns.add, [(i, 100) for i in range(20)], budget_s=5.0)[7].value == 107


def test_empty_batch(pool):
    assert pool.map(fns.add, [], budget_s=1.0) == []


def test_timeout_within_budget_and_pool_recovers(pool):
    kills = pool.kills
    t0 = time.perf_counter()
    (outcome,) = pool.map(fns.sleep_then, [(30.0, "late")], budget_s=BUDGET_S)
    wall = time.perf_counter() - t0
    assert outcome.status == "timeout", outcome
    assert outcome.value is None
    assert "timeout" in (outcome.error or "")
    assert BUDGET_S <= outcome.elapsed_s <= BUDGET_S + SLACK_S
    assert wall <= BUDGET_S + SLACK_S, f"timeout reported after {wall:.2f}s for a {BUDGET_S}s budget"
    assert pool.kills == kills + 1
    (after,) = pool.map(fns.add, [(2, 3)], budget_s=5.0)
    assert (after.status, after.value) == ("ok", 5)


@pytest.fixture
def crowded_cpu():
    """Six busy loops pinned to one CPU: a process pinned beside them gets about a seventh of it."""
    if pool_module._run_delay_s(os.getpid()) is None:
        pytest.skip("no /proc/PID/schedstat here: the pool's budget is plain wall time")
    cpu = max(os.sched_getaffinity(0))
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(6)]
    time.sleep(1.0)  # pinned and spinning
    yield cpu
    for h in hogs:
        h.kill()
        h.wait()


def test_waits_for_a_cpu_do_not_count_against_the_budget(pool, crowded_cpu, monkeypatch):
    """A check needing 0.15 s of CPU, starved beside six busy loops, takes well over its 0.5 s budget of
    wall time and is still graded (the same verdict as on an idle machine); a call that burns CPU is still
    cut at its budget of used time. With the run-delay accounting off (schedstat unread: plain wall
    time) the same starved check times out: the difference the accounting makes."""
    (starved,) = pool.map(fns.spin_on_cpu, [(crowded_cpu, 0.15)], budget_s=BUDGET_S)
    assert starved.status == "ok", starved
    assert starved.value > BUDGET_S, f"not starved ({starved.value:.2f}s of wall time): the test shows nothing"

    kills = pool.kills
    (hostile,) = pool.map(fns.spin_on_cpu, [(crowded_cpu, 60.0)], budget_s=BUDGET_S)
    assert hostile.status == "timeout" and hostile.error == f"timeout after {BUDGET_S:g}s", hostile
    assert hostile.elapsed_s < BUDGET_S * pool_module.WALL_CAP_FACTOR
    assert pool.kills == kills + 1

    monkeypatch.setattr(pool_module, "_run_delay_s", lambda pid: None)
    (wall_only,) = pool.map(fns.spin_on_cpu, [(crowded_cpu, 0.15)], budget_s=BUDGET_S)
    assert wall_only.status == "timeout", wall_only


def test_timeout_in_a_batch_spares_the_others(pool):
    t0 = time.perf_counter()
    outcomes = pool.map(fns.sleep_then, [(0.0, "a"), (30.0, "b"), (0.0, "c"), (0.05, "d")], budget_s=BUDGET_S)
    assert time.perf_counter() - t0 <= BUDGET_S + SLACK_S
    assert [o.status for o in outcomes] == ["ok", "timeout", "ok", "ok"]
    assert [o.value for o in outcomes] == ["a", None, "c", "d"]


def test_hung_worker_is_killed(pool, tmp_path: Path):
    pid_file = tmp_path / "worker.pid"
    (outcome,) = pool.map(fns.pid_then_sleep, [(str(pid_file), 60.0)], budget_s=BUDGET_S)
    assert outcome.status == "timeout"
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    deadline = time.monotonic() + 3.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"worker {pid} still running after its call timed out"
    assert pool.map(fns.getpid, [()], budget_s=5.0)[0].value != pid


def test_error_carries_exception_text(pool):
    outcomes = pool.map(fns.raise_value_error, [("boom 42",)], budget_s=5.0)
    assert outcomes[0].status == "error"
    assert outcomes[0].value is None
    assert "ValueError" in outcomes[0].error and "boom 42" in outcomes[0].error
    (after,) = pool.map(fns.add, [(1, 1)], budget_s=5.0)
    assert (after.status, after.value) == ("ok", 2)


def test_crashed_worker_and_recovery(pool):
    outcomes = pool.map(fns.hard_exit, [(3,)], budget_s=5.0)
    assert outcomes[0].status == "crashed", outcomes[0]
    assert outcomes[0].error
    mixed = pool.map(fns.sleep_then, [(0.0, 1), (0.0, 2)], budget_s=5.0)
    assert [(o.status, o.value) for o in mixed] == [("ok", 1), ("ok", 2)]


def test_crash_in_a_batch_spares_the_others(pool):
    calls = [(fns.add, (1, 2)), (fns.hard_exit, (3,)), (fns.add, (3, 4))]
    outcomes = [pool.map(f, [a], budget_s=5.0)[0] for f, a in calls]
    assert [o.status for o in outcomes] == ["ok", "crashed", "ok"]
    assert outcomes[2].value == 7


def test_unpicklable_result_is_an_error(pool):
    (outcome,) = pool.map(fns.unpicklable, [()], budget_s=5.0)
    assert outcome.status == "error"
    assert "unpicklable" in outcome.error
    assert pool.map(fns.add, [(5, 5)], budget_s=5.0)[0].value == 10


def test_shared_pool_not_inherited_by_forked_child():
    key = ("tests.verifiers._pool_fns",)
    parent_pool = shared_pool(key)
    parent_pool.warm()
    parent_pids = {o.value for o in parent_pool.map(fns.getpid, [()] * 4, budget_s=10.0)}
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=fns.child_pool_pids, args=(q, key))
    child.start()
    try:
        status, pids, statuses = q.get(timeout=60)
    except queue.Empty:
        pytest.fail("forked child reported nothing within 60 s")
    finally:
        child.join(timeout=10)
        parent_pool.close()
    assert status == "ok", pids
    assert statuses == ["ok"] * 4
    assert not set(pids) & parent_pids, f"child graded on the parent's workers {sorted(set(pids) & parent_pids)}"
