"""Run the MOPD experiment (evalgym.experiments.mopd) and write perf/results/mopd.{json,md}.

    .venv/bin/python perf/mopd_experiment.py [--out runs/mopd-experiment] [--student-steps 30] ...
    .venv/bin/python perf/mopd_experiment.py --preset smollm2 --seed 1 --out runs/mopd-smollm2-s1 \
        --name mopd_smollm2_seed1        # → perf/results/mopd_smollm2_seed1.{json,md}

``--preset smollm2``: SmolLM2-135M-Instruct as the base (no shared SFT stage), SFT experts, the students of
the ``mopd-2026`` recipe's size (12 steps × 32 samples), greedy scores on 100 eval problems per domain; any
flag given beside it wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalgym.benchmarks.leaderboard import write_text_atomic  # noqa: E402
from evalgym.experiments.mopd import MOPDExperiment, _atomic_json, markdown, run_experiment  # noqa: E402


# the mopd-2026 recipe's stages on SmolLM2 (evalgym/recipes/mopd-2026.yaml), with mixed RL and off-policy
# distillation beside MOPD at the same 32 student samples a step: GRPO 4 problems x 8 at lr 1e-5 lifted
# arithmetic 0.08 -> 0.51 in 8 steps from this base (recipe notes)
PRESETS: dict[str, dict[str, object]] = {
    "smollm2": dict(model="smollm2-135m", sft_steps=0, expert_trainer="sft", expert_steps=16, expert_lr=2e-5,
                    sft_batch=16, sft_warmup=2, expert_beta=0.0, student_steps=12, eval_every=6,
                    prompts_per_step=4, group_size=8, mopd_group_size=2, mopd_lr=2e-5, mopd_alpha=0.0,
                    mopd_kl_topk=0, student_lr=1e-5, distill_lr=2e-5, max_tokens=48, temperature=0.7,
                    eval_prompts=100, eval_samples=0),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(MOPDExperiment):
        kind = {"int": int, "float": float, "str": str, "int | None": int}.get(f.type)
        if kind is not None:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)
    p.add_argument("--students", type=lambda v: tuple(v.split(",")), default=None,
                   help="comma-separated, from mopd,mixed-rl,off-policy (mixed-rl is required)")
    p.add_argument("--results", default=str(ROOT / "perf" / "results"))
    p.add_argument("--name", default="mopd", help="file stem of the results (default mopd)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    args = p.parse_args()
    kw = {k: v for k, v in vars(args).items() if k not in ("results", "preset", "name") and v is not None}
    exp = MOPDExperiment(**{**PRESETS.get(args.preset or "", {}), **kw})
    t0 = time.perf_counter()
    result = run_experiment(exp)
    result["total_wall_s"] = time.perf_counter() - t0
    out = Path(args.results)
    _atomic_json(out / f"{args.name}.json", result)
    md = markdown(result)
    write_text_atomic(out / f"{args.name}.md", md)
    print(md)
    print(json.dumps({"fraction_of_expert": result["fraction_of_expert"],
                      "samples_to_mixed_rl_final": result["samples_to_mixed_rl_final"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
