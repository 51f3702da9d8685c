"""Memory for the memory benchmarks: this process's resident memory (the current RSS, and its peak over a block
polled by a thread; ``ru_maxrss`` would count what the process held before the block), and the exact bytes of
live tensor storages over a block (``LiveTensors``)."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any


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


class LiveTensors:
    """Bytes of live tensor storages, counted exactly (not polled): ``with LiveTensors() as m: ...`` →
    ``m.peak`` and ``m.now`` in MB. Every storage an aten op returns inside the block is counted until it is
    freed (autograd's saved activations, recomputed checkpoint segments, gradients, optimizer state);
    ``m.add(module)`` counts the parameters and buffers of modules built outside the block or by loaders that
    bypass the dispatcher (safetensors). What the allocator keeps after a free, which peak RSS includes, is
    not counted: this is the memory the computation needs, RSS the memory it was given."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._live: dict[int, int] = {}
        self._mode: Any = None
        import torch

        self._tensor = torch.Tensor

    def _count(self, t: Any) -> None:
        if not isinstance(t, self._tensor) or t.device.type == "meta":
            return
        st = t.untyped_storage()     # one Python object per storage for its whole life (torch preserves it)
        key = id(st)
        if key in self._live or st.nbytes() == 0:
            return
        self._live[key] = st.nbytes()
        self.now += st.nbytes()
        self.peak = max(self.peak, self.now)
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.now -= self._live.pop(key, 0)

    def add(self, *modules: Any) -> None:
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                self._count(t)

    def __enter__(self) -> "LiveTensors":
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    tracker._count(t)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def now_mb(self) -> float:
        return self.now / 2**20
