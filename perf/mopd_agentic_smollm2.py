"""The ``mopd-agentic`` recipe end to end on SmolLM2-135M-Instruct, at a size a 2-core CPU runs in well under
an hour: SFT on tool-calling transcripts played in the sandbox -> GRPO experts on ``python-math`` and
``code-tools`` -> multi-teacher on-policy distillation over both, each checkpoint evaluated on both envs' test
splits (whole episodes: success, turns, tool calls, tool errors).

    python perf/mopd_agentic_smollm2.py [--threads 2] [--limit 10] [--out perf/results/mopd_agentic_smollm2]

What it shows: that the agentic recipe runs on a real BPE model with its own chat template (tools rendered by
the Hermes convention, token-exact multi-turn episodes, sandbox sessions per episode), what each stage costs
here, and each checkpoint's episode scores. The step counts are a smoke-to-small scale (``OVERRIDES``), not a
tuned recipe: the scores carry no learning claim beyond their intervals. Needs bubblewrap (the local sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OVERRIDES = [
    "model=smollm2-135m",
    "stages.sft.steps=12", "stages.sft.batch_size=4", "stages.sft.env_rows=32", "stages.sft.lr=5e-5",
    "stages.sft.warmup_steps=2", "stages.sft.save_every=12",
    "stages.expert-math.steps=2", "stages.expert-math.lr=1e-5", "stages.expert-math.save_every=2",
    "stages.expert-math.prompts_per_step=4", "stages.expert-math.group_size=4",
    "stages.expert-code.steps=2", "stages.expert-code.lr=1e-5", "stages.expert-code.save_every=2",
    "stages.expert-code.prompts_per_step=4", "stages.expert-code.group_size=4", "stages.expert-code.max_tokens=256",
    "stages.student.steps=2", "stages.student.lr=2e-5", "stages.student.save_every=2",
    "stages.student.prompts_per_step=4", "stages.student.group_size=2", "stages.student.max_tokens=256",
    "stages.student.kl_topk=32",
    "eval.max_tokens=256",
    # a GRPO/distillation batch of 16 multi-turn episodes (~1.5k tokens each) in one forward keeps ~35 GB of
    # activations on SmolLM2 (the first run was OOM-killed at 22 GB in expert-code): micro-batches and
    # recomputed activations (python-math's short episodes fit without)
    "stages.expert-code.grad_accum=4", "stages.student.grad_accum=4",
    "stages.expert-code.gradient_checkpointing=true", "stages.student.gradient_checkpointing=true",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=10, help="test-split problems per env for every checkpoint")
    ap.add_argument("--work", default="runs/perf_mopd_agentic_smollm2")
    ap.add_argument("--out", default=str(REPO / "perf" / "results" / "mopd_agentic_smollm2"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from evalgym.benchmarks.leaderboard import write_text_atomic
    from evalgym.recipes.runner import comparison_cell, comparison_table, comparison_tasks, run_recipe
    from evalgym.recipes.spec import load_recipe

    torch.set_num_threads(a.threads)
    overrides = OVERRIDES + [f"eval.limit={a.limit}", f"threads={a.threads}"]
    load = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    summary = run_recipe(load_recipe("mopd-agentic", overrides), a.work, progress=False)
    wall = time.perf_counter() - t0
    load.append(os.getloadavg()[0])
    rows = comparison_table(summary["store"], summary["recipe"])
    doc = {"overrides": overrides, "wall_s": wall, "loadavg_1min": load, "timings_s": summary.get("wall_s"),
           "comparison": rows}
    out = Path(a.out)
    write_text_atomic(out.with_suffix(".json"), json.dumps(doc, indent=1, default=str))
    tasks = comparison_tasks(rows)
    md = ["# mopd-agentic on SmolLM2-135M-Instruct (perf/mopd_agentic_smollm2.py)", "",
          f"Overrides: `{' '.join(overrides)}`. Wall {wall / 60:.1f} min, {a.threads} torch threads, load average "
          f"{load[0]:.1f} -> {load[-1]:.1f} (2 cores). Scores: each env's test split, the first {a.limit} problems, "
          "whole episodes, greedy.", "",
          "| stage | from | step | " + " | ".join(tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
    for r in rows:
        md.append(f"| {r['stage']} | {r.get('from') or '—'} | {'—' if r['step'] is None else r['step']} | "
                  + " | ".join(comparison_cell(rows, r, t) for t in tasks) + " |")
    md += ["", "(change from the stage it started from; *: beyond the stage's 95 % interval)", "",
           "Seconds per stage (training and its evaluations): "
           + ", ".join(f"{k} {v:.0f}" for k, v in (summary.get("wall_s") or {}).items()), ""]
    write_text_atomic(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
