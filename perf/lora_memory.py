"""Peak memory of GRPO updates on SmolLM2-135M-Instruct: LoRA vs full fine-tuning, with and without
gradient checkpointing, side by side (each setting in its own process).

    python perf/lora_memory.py [--rows 32] [--length 160] [--updates 2] [--resume] [--out perf/results/lora_memory]

Each setting builds the real ``Trainer`` (float32 parameters, AdamW) and makes ``--updates`` optimizer updates
through the RL loop's ``update_on_batch`` on one rollout-shaped batch (``--rows`` sequences of ``--length``
tokens, half prompt, random advantages, KL to the start model with ``beta`` 0.05: full fine-tuning loads a
second model for it, LoRA switches its adapter off). Peak resident memory is sampled every 20 ms; reported
as the peak and as the rise over the process before the trainer was built (the memory training adds).
``--resume`` keeps the settings already measured in ``--work`` (same arguments) and runs the rest.
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
from perf.memwatch import LiveTensors, PeakRSS  # noqa: E402


def one(a: argparse.Namespace) -> None:
    import torch

    from evalgym.models import resolve_model
    from evalgym.trainers.batch import Row, EpisodeTokens, train_batch
    from evalgym.trainers.grpo import GRPOConfig
    from evalgym.trainers.loop import Trainer
    from evalgym.trainers.rl import update_on_batch

    torch.set_num_threads(a.threads)
    lora, ckpt = a.setting.split("-")
    model = resolve_model(a.model)
    cfg = GRPOConfig(model=model, run_dir=str(Path(a.work) / a.setting), lr=1e-5, beta=0.05,
                     gradient_checkpointing=ckpt == "ckpt", lora={"r": 16, "alpha": 32} if lora == "lora" else None,
                     prompts_per_step=a.rows // 8, group_size=8)
    with PeakRSS(0.02) as mem, LiveTensors() as live:
        t0 = time.perf_counter()
        trainer = Trainer(cfg, name="grpo", progress=False, updates_per_step=1)
        ref = trainer.reference()
        live.add(trainer.module, ref)
        static = live.now_mb
        g = torch.Generator().manual_seed(0)
        half = a.length // 2
        rows = []
        for i in range(a.rows):   # groups of 8 sharing a prompt, as a rollout batch is
            prompt = torch.randint(100, 40000, (half,), generator=torch.Generator().manual_seed(i // 8)).tolist()
            comp = torch.randint(100, 40000, (a.length - half,), generator=g).tolist()
            ep = EpisodeTokens(tuple(prompt + comp), (False,) * half + (True,) * len(comp),
                               (0.0,) * half + (-1.0,) * len(comp), True)
            rows.append(Row(ep, advantage=float(torch.randn(1, generator=g)), group=i // 8))
        batch = train_batch(rows, trainer.tokenizer.pad_token_id)
        phases = {"static": static}
        for u in range(a.updates):
            live.peak = live.now
            update_on_batch(trainer, cfg, batch, ref, u)
            phases[f"update{u + 1}_peak"] = live.peak_mb
        wall = time.perf_counter() - t0
    trainable = sum(p.numel() for p in trainer.module.parameters() if p.requires_grad)
    (Path(a.work) / f"{a.setting}.json").write_text(json.dumps({
        "setting": a.setting, "peak_rss_mb": mem.peak, "rss_before_mb": mem.before, "rise_mb": mem.peak - mem.before,
        "live_peak_mb": max(phases.values()), "live_mb": phases,
        "trainable_params": trainable, "s_per_update": wall / a.updates}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--length", type=int, default=160)
    ap.add_argument("--updates", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--setting", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--resume", action="store_true", help="keep settings already measured in --work")
    ap.add_argument("--work", default="runs/perf_lora_memory")
    ap.add_argument("--out", default=str(REPO / "perf" / "results" / "lora_memory"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(a.work).mkdir(parents=True, exist_ok=True)
    if a.setting:
        return one(a)
    load = [os.getloadavg()]
    t0 = time.perf_counter()
    res = {}
    for s in ("full-nockpt", "lora-nockpt", "full-ckpt", "lora-ckpt"):
        if not (a.resume and (Path(a.work) / f"{s}.json").is_file()):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--setting", s], check=True)
        res[s] = json.loads((Path(a.work) / f"{s}.json").read_text())
    load.append(os.getloadavg())
    doc = {"config": vars(a) | {"MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_")}, "settings": res,
           "loadavg": load, "wall_s": time.perf_counter() - t0,
           "ratios": {c: {"peak": res[f"lora-{c}"]["peak_rss_mb"] / res[f"full-{c}"]["peak_rss_mb"],
                          "rise": res[f"lora-{c}"]["rise_mb"] / res[f"full-{c}"]["rise_mb"],
                          "live": res[f"lora-{c}"]["live_peak_mb"] / res[f"full-{c}"]["live_peak_mb"]} for c in ("nockpt", "ckpt")}}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    md = [f"# Peak memory of GRPO updates on {a.model}: LoRA vs full", "",
          f"{a.updates} updates on {a.rows} x {a.length} tokens, float32 + AdamW, KL to the start model (beta 0.05), "
          f"{a.threads} threads; loadavg {load[0][0]:.1f} -> {load[-1][0]:.1f}, wall {doc['wall_s'] / 60:.1f} min; "
          f"MALLOC_MMAP_THRESHOLD_ {os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset (glibc adjusts it upward as blocks are freed)')}.", "",
          "| setting | trainable params | peak RSS MB | added by training MB | live tensors: static MB | live tensors: peak MB "
          "| s/update |", "|---|---|---|---|---|---|---|"]
    md += [f"| {k} | {v['trainable_params']:,} | {v['peak_rss_mb']:.0f} | {v['rise_mb']:.0f} | {v['live_mb']['static']:.0f} "
           f"| {v['live_peak_mb']:.0f} | {v['s_per_update']:.1f} |" for k, v in res.items()]
    md += ["", "Live tensors: the exact bytes of tensor storages alive (perf/memwatch.py LiveTensors); static = the "
           "trainer and its KL reference built, before any update; peak RSS also counts what the allocator keeps.",
           "", "LoRA / full: " + "; ".join(f"{c}: peak RSS {r['peak']:.2f}x, added {r['rise']:.2f}x, live tensors {r['live']:.2f}x"
                                          for c, r in doc["ratios"].items()), ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
