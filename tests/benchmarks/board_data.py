"""A small but realistic results store for the leaderboard tests: a two-stage recipe (sft → grpo) whose
grpo stage regresses on arithmetic at its last step, and a baseline run of plain models."""

from __future__ import annotations

import math
from pathlib import Path

from evalgym.benchmarks.store import ResultRow, ResultsStore

TASKS = ("evalgym_arithmetic", "gsm8k", "ifeval")
# run -> (recipe, stage, stage_index, {step: {task: value}})
SCORES = {
    "mopd/sft": ("mopd", "sft", 0, {0: {"evalgym_arithmetic": 0.10, "gsm8k": 0.05, "ifeval": 0.20},
                                    100: {"evalgym_arithmetic": 0.30, "gsm8k": 0.12, "ifeval": 0.24},
                                    200: {"evalgym_arithmetic": 0.45, "gsm8k": 0.18, "ifeval": 0.26}}),
    "mopd/grpo": ("mopd", "grpo", 1, {300: {"evalgym_arithmetic": 0.55, "gsm8k": 0.22, "ifeval": 0.27},
                                      400: {"evalgym_arithmetic": 0.71, "gsm8k": 0.25, "ifeval": 0.25},
                                      500: {"evalgym_arithmetic": 0.40, "gsm8k": 0.26, "ifeval": 0.26}}),
}
BASELINE = {"smollm2-135m": {"evalgym_arithmetic": 0.08, "gsm8k": 0.02, "ifeval": 0.30}}
N = 500
PRIMARY = {"evalgym_arithmetic": "exact_match", "gsm8k": "exact_match,strict-match",
           "ifeval": "prompt_level_strict_acc"}
SECONDARY = {"evalgym_arithmetic": "mean@4", "gsm8k": "exact_match,flexible-extract",
             "ifeval": "inst_level_strict_acc"}


def _rows(run: str, ckpt: str, step: int | None, task: str, value: float, manifest: dict) -> list[ResultRow]:
    se = math.sqrt(value * (1 - value) / N)
    prov = {"model": ckpt, "step": step, "task_version": "1", "verifier_version": "math-2",
            "lm_eval_version": "0.4.9", "sampling": {"temperature": 0.0, "max_tokens": 256}, "seed": 1234,
            "git_sha": "0123abcd", "backend": "hf", **manifest}
    return [ResultRow(run, ckpt, step, task, PRIMARY[task], value, se, value - 1.96 * se, value + 1.96 * se, N, prov),
            # a secondary metric, higher than the primary: the board must not pick it
            ResultRow(run, ckpt, step, task, SECONDARY[task], min(1.0, value + 0.2), None, None, None, N, prov)]


def make_store(path: Path) -> Path:
    rows = []
    for run, (recipe, stage, index, by_step) in SCORES.items():
        for step, scores in by_step.items():
            for task, value in scores.items():
                rows += _rows(run, f"runs/{run}/step_{step:06d}", step, task, value,
                              {"recipe": recipe, "stage": stage, "stage_index": index,
                               "time": f"2026-01-0{index + 1}T00:0{step // 100}:00+00:00"})
    for model, scores in BASELINE.items():
        for task, value in scores.items():
            rows += _rows("baseline", model, None, task, value, {"time": "2025-12-31T00:00:00+00:00"})
    with ResultsStore(path) as store:
        store.record(rows)
    return path
