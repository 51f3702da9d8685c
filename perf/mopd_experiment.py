"""Run the MOPD experiment (evalgym.experiments.mopd) and write perf/results/mopd.{json,md}.

    .venv/bin/python perf/mopd_experiment.py [--out runs/mopd-experiment] [--student-steps 30] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalgym.experiments.mopd import MOPDExperiment, _atomic_json, markdown, run_experiment  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(MOPDExperiment):
        kind = {"int": int, "float": float, "str": str, "int | None": int}.get(f.type)
        if kind is not None:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)
    p.add_argument("--students", type=lambda v: tuple(v.split(",")), default=None,
                   help="comma-separated, from mopd,mixed-rl,off-policy (mixed-rl is required)")
    p.add_argument("--results", default=str(ROOT / "perf" / "results"))
    args = p.parse_args()
    kw = {k: v for k, v in vars(args).items() if k != "results" and v is not None}
    exp = MOPDExperiment(**kw)
    t0 = time.perf_counter()
    result = run_experiment(exp)
    result["total_wall_s"] = time.perf_counter() - t0
    out = Path(args.results)
    _atomic_json(out / "mopd.json", result)
    md = markdown(result)
    tmp = out / ".mopd.md.tmp"
    tmp.write_text(md)
    os.replace(tmp, out / "mopd.md")
    print(md)
    print(json.dumps({"fraction_of_expert": result["fraction_of_expert"],
                      "samples_to_mixed_rl_final": result["samples_to_mixed_rl_final"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
