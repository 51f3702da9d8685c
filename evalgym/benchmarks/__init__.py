"""Benchmarks: the results store (``evalgym.benchmarks.store``) and the leaderboards made from it
(``evalgym.benchmarks.leaderboard``). Evaluation writes the store; reports read only the store.

    from evalgym.benchmarks.store import ResultRow, ResultsStore
    with ResultsStore("runs/results.sqlite") as store:
        store.record([ResultRow("run-a", "run-a/step_000100", 100, "gsm8k", "exact_match", 0.42)])
"""

from evalgym.benchmarks.store import DEFAULT_STORE, ResultRow, ResultsStore

__all__ = ["DEFAULT_STORE", "ResultRow", "ResultsStore"]
