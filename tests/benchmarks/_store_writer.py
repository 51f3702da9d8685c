"""A resumable evaluation writer for the SIGKILL test: for each (checkpoint, task) not yet ``done`` it
records ``--rows`` metric rows in one ``record`` call, printing ``begin``/``done``/``skip`` lines.

    python tests/benchmarks/_store_writer.py STORE --checkpoints 6 --tasks 3 --rows 3000 --attempt 1
"""

from __future__ import annotations

import argparse
import sys

from evalgym.benchmarks.store import ResultRow, ResultsStore


def unit_rows(checkpoint: int, task: int, rows: int, attempt: int) -> list[ResultRow]:
    # values are a function of (checkpoint, task, metric) only, so the test can check every one
    return [ResultRow("run-kill", f"run-kill/step_{checkpoint:06d}", checkpoint * 100, f"task{task}", f"m{m:05d}",
                      value=(checkpoint * 7 + task * 3 + m) % 101 / 100, ci_low=0.0, ci_high=1.0, n=m,
                      manifest={"attempt": attempt, "seed": m, "pad": "x" * 200})
            for m in range(rows)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--checkpoints", type=int, required=True)
    ap.add_argument("--tasks", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--attempt", type=int, required=True)
    args = ap.parse_args()
    with ResultsStore(args.store) as store:
        for c in range(args.checkpoints):
            for t in range(args.tasks):
                unit = f"{c} {t}"
                if store.done("run-kill", f"run-kill/step_{c:06d}", f"task{t}"):
                    print("skip", unit, flush=True)
                    continue
                rows = unit_rows(c, t, args.rows, args.attempt)
                print("begin", unit, flush=True)
                store.record(rows)
                print("done", unit, flush=True)
    sys.stdout.write("finished\n")


if __name__ == "__main__":
    main()
