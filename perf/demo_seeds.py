"""The main job (`make demo` = `evalgym run`, the mopd-2026 recipe) over several seeds: each stage's effect
against its interval, per seed, and the wall time quiet and busy.

    .venv/bin/python perf/demo_seeds.py --out runs/demo-seeds --seeds 0                 # one at a time: quiet
    .venv/bin/python perf/demo_seeds.py --out runs/demo-seeds --seeds 1 2 --concurrent --set threads=1   # busy
    .venv/bin/python perf/demo_seeds.py --out runs/demo-seeds --report                  # perf/results/demo.*

Each seed is `evalgym run --out OUT/seedN stages.*.seed=N [overrides]` in a process of its own (with
``--concurrent`` all seeds at once: each run is the other's load, the "busy" measurement), its wall time
written to OUT/seedN/wall.json. ``--report`` reads every OUT/seed*/ and writes perf/results/demo.{json,md}:
each stage's score per task with its 95 % interval, its change from the stage it started from, and whether
the start's value lies outside the stage's interval (the effect is shown), per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalgym.benchmarks.leaderboard import write_text_atomic  # noqa: E402


def run_seeds(out: Path, seeds: list[int], overrides: list[str], concurrent: bool) -> None:
    evalgym = str(Path(sys.executable).with_name("evalgym"))
    procs = []
    for seed in seeds:
        d = out / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        cmd = [evalgym, "run", "--out", str(d), "--quiet", "--json", f"stages.*.seed={seed}", *overrides]
        log = open(d / "run.log", "w")
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        procs.append((seed, d, p, t0, log))
        if not concurrent:
            _finish(procs.pop(), overrides, concurrent, len(seeds))
    for item in procs:
        _finish(item, overrides, concurrent, len(seeds))


def _finish(item: tuple, overrides: list[str], concurrent: bool, n: int) -> None:
    seed, d, p, t0, log = item
    rc = p.wait()
    log.close()
    if rc != 0:
        raise SystemExit(f"seed {seed}: evalgym run exited {rc}; see {d / 'run.log'}")
    wall = time.perf_counter() - t0
    load = os.getloadavg()
    record = {"seed": seed, "wall_s": wall, "overrides": overrides,
              "condition": f"beside {n - 1} other demo run(s)" if concurrent and n > 1 else "alone",
              "loadavg_at_end": load}
    write_text_atomic(d / "wall.json", json.dumps(record, indent=1))


def report(out: Path, results: Path) -> dict[str, Any]:
    from evalgym.recipes.runner import comparison_cell, comparison_table, comparison_tasks

    runs = []
    for d in sorted(out.glob("seed*")):
        wall_path = d / "wall.json"
        if not wall_path.is_file() or not (d / "results.sqlite").is_file():
            continue
        wall = json.loads(wall_path.read_text())
        table = comparison_table(d / "results.sqlite", "mopd-2026")
        runs.append({**wall, "stages": table})
    if not runs:
        raise SystemExit(f"no finished seed under {out}")
    tasks = comparison_tasks(runs[0]["stages"])
    stages = [r["stage"] for r in runs[0]["stages"] if r["from"] is not None]
    shown = {f"{s} / {t}": [next(r for r in run["stages"] if r["stage"] == s)["beyond"].get(t) for run in runs]
             for s in stages for t in tasks}
    result = {"runs": runs, "tasks": tasks, "effect_shown": shown}
    lines = ["# The main job over seeds: `evalgym run` (mopd-2026 on SmolLM2-135M-Instruct)", "",
             f"{len(runs)} run(s); greedy accuracy on the first 100 problems of each env's eval split (disjoint from "
             "training by content hash; overlap measured 0), 95 % Wilson intervals; (±) the change from the stage "
             "it started from, * when the start's value lies outside the stage's interval.", ""]
    for run in runs:
        lines += [f"## seed {run['seed']}: {run['wall_s'] / 60:.1f} min, {run['condition']} "
                  f"(overrides: {' '.join(run['overrides']) or 'none'}; 1-min load at the end: "
                  f"{'not recorded' if run['loadavg_at_end'] is None else format(run['loadavg_at_end'][0], '.1f')})",
                  "",
                  "| stage | from | " + " | ".join(tasks) + " |", "|---" * (2 + len(tasks)) + "|"]
        for r in run["stages"]:
            cells = [comparison_cell(run["stages"], r, t, digits=2) for t in tasks]
            lines.append(f"| {r['stage']} | {r['from'] or '—'} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Effect shown (start's value outside the stage's interval), per seed", "",
              "| stage / task | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
              "|---" * (1 + len(runs)) + "|"]
    lines += [f"| {k} | " + " | ".join("yes" if v else "no" for v in vals) + " |" for k, vals in shown.items()]
    results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results / "demo.json", json.dumps(result, indent=1))
    write_text_atomic(results / "demo.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo-seeds")
    p.add_argument("--seeds", type=int, nargs="*", default=[])
    p.add_argument("--concurrent", action="store_true", help="run the seeds at once (each loads the others)")
    p.add_argument("--report", action="store_true", help="write perf/results/demo.{json,md} from OUT/seed*/")
    p.add_argument("--results", default=str(ROOT / "perf" / "results"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a recipe override for every seed, e.g. --set threads=1 (repeatable)")
    a = p.parse_args()
    out = Path(a.out)
    if a.seeds:
        run_seeds(out, a.seeds, a.overrides, a.concurrent)
    if a.report:
        report(out, Path(a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
