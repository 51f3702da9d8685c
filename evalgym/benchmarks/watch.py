"""``evalgym watch RUN_DIR``: evaluate each checkpoint of a training run as it appears, in a process of its
own, so training never waits for evaluation.

    evalgym watch runs/sft --tasks evalgym_arithmetic,gsm8k --limit 64 --until-step 600
    evalgym watch runs/sft --tasks evalgym_arithmetic --once          # what is there now, then exit

It follows ``RUN_DIR/events.jsonl`` (a line per saved checkpoint, appended by
``evalgym.trainers.checkpoint``) and also lists the ``step_*`` folders, so checkpoints saved before the
watcher started are found too. A checkpoint whose tasks are all in the results store is skipped, so a
restarted watcher resumes where it stopped; a checkpoint deleted before its turn (``keep_last``) is
reported and skipped. One engine serves the whole run: later checkpoints are loaded into it with
``load_weights``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalgym.benchmarks.evaluate_ckpt import (EvalSpec, EvaluationFailed, PolicyCache, Target, describe,
                                              evaluate_model, prepare, settings_hash)
from evalgym.benchmarks.store import ResultsStore
from evalgym.errors import EvalgymError

log = logging.getLogger(__name__)


def checkpoint_events(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint of the run, oldest first: from events.jsonl (a torn last
    line, being written, is ignored until complete) and from the step_* folders."""
    from evalgym.trainers.checkpoint import STEP_DIR, step_dirs

    run = Path(run_dir)
    found: dict[Path, int] = {}
    events = run / "events.jsonl"
    if events.is_file():
        for line in events.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict) or ev.get("event") != "checkpoint" or "path" not in ev:
                continue
            path = Path(ev["path"])
            if not path.is_absolute() and not path.exists():
                path = run / path.name  # written relative to the trainer's working directory
            found[path.resolve()] = int(ev.get("step", 0))
    for d in step_dirs(run):
        m = STEP_DIR.match(d.name)
        found.setdefault(d.resolve(), int(m.group(1)) if m else 0)
    return sorted(((s, p) for p, s in found.items()), key=lambda x: (x[0], str(x[1])))


def watch(run_dir: str | Path, spec: EvalSpec, store: ResultsStore, *, once: bool = False,
          until_step: int | None = None, poll_s: float = 5.0, timeout_s: float | None = None,
          report: Callable[[str, dict[str, Any]], None] | None = None) -> list[Target]:
    """Evaluate the run's checkpoints as they appear; returns the ones evaluated (or found done).
    Stops after one pass with ``once``, after a checkpoint at step >= ``until_step``, or at ``timeout_s``
    (an error: the awaited step never came). A checkpoint whose evaluation failed is reported (its errors
    are in the store) and the watch goes on."""
    from evalgym.benchmarks.lmeval import task_names

    run = Path(run_dir)
    keys = [(p.ref.name, settings_hash(p.settings)) for p in (prepare(r, spec) for r in task_names(spec.tasks))]
    handled: set[Path] = set()
    finished: list[Target] = []
    policies = PolicyCache(spec.backend, spec.device, spec.threads)
    start = time.monotonic()
    say = report or (lambda event, info: log.info("%s %s", event, info))
    try:
        while True:
            for step, path in checkpoint_events(run):
                if path in handled:
                    continue
                handled.add(path)
                if not (path / "meta.json").is_file():
                    say("missing", {"checkpoint": str(path), "step": step})
                    continue
                target = describe(str(path))
                if all(store.done(target.run_id, target.checkpoint, n, k) for n, k in keys):
                    say("already-done", {"checkpoint": target.checkpoint, "step": target.step})
                else:
                    t0 = time.perf_counter()
                    try:
                        rows = evaluate_model(target, spec, store=store, policies=policies)
                        say("evaluated", {"checkpoint": target.checkpoint, "step": target.step, "rows": len(rows),
                                          "eval_s": round(time.perf_counter() - t0, 2)})
                    except EvaluationFailed as exc:
                        say("failed", {"checkpoint": target.checkpoint, "step": target.step,
                                       "errors": "; ".join(f"{n}: {m}" for n, m in exc.failures)})
                finished.append(target)
            if once or (until_step is not None and any((t.step or 0) >= until_step for t in finished)):
                return finished
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise EvalgymError(f"watch {run}: no checkpoint at step >= {until_step} within {timeout_s:g} s")
            time.sleep(poll_s)
    finally:
        policies.close()
