"""Resident memory of this process for the memory benchmarks: the current RSS, and its peak over a block
polled by a thread (``ru_maxrss`` would count what the process held before the block)."""

from __future__ import annotations

import threading
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS:
    """``with PeakRSS(0.05) as m: ...`` → ``m.before`` and ``m.peak`` in MB (polled every ``interval`` s)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.before = self.peak = 0.0
        self._stop = threading.Event()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> "PeakRSS":
        self.before = self.peak = rss_mb()
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
