"""A data result: the tiny model SFT'd on synthetic data from a stronger teacher improves held-out accuracy over
its base, with contamination 0 — and the verifier filter is what makes the data good.

Task: the trainer learning tests' (``tests/trainers/learning.py``): one-digit +/- arithmetic, 200 problems, 159
in the train split and 41 in the eval split (disjoint by construction). Two-digit sums were tried first: 600 SFT
steps left the tiny model at 0.02 there, too weak a teacher to say anything (its run is kept in
perf/results/synth_sft_two_digit.md).

1. teacher: the tiny model SFT'd on the env's reference solutions (the learning tests' SFT), then a GRPO expert
   from it (their GRPO);
2. ``evalgym synth`` from the teacher on the training split: every one of its ``--prompts`` problems, ``n``
   samples each at temperature 1, decontaminated against every local eval set; twice: ``keep: correct``
   (verified, at most 4 per prompt) and ``keep: all`` (unfiltered teacher samples, the ablation);
3. students: the base model SFT'd on each dataset (``data: OUT/sft``), the teacher's SFT settings;
4. every model scored on all 41 eval problems: mean@8 at temperature 1 and greedy accuracy, with each model's
   contamination (its lineage's trained_problems.json vs the evaluated problems).

    python perf/synth_sft_result.py [--teacher-steps 600] [--expert-steps 40] [--student-steps 400]

Results: perf/results/synth_sft.json and synth_sft.md (with how long each part took).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
ENV, KNOBS = "arithmetic", {"digits": 1, "ops": "+-"}
SFT = dict(batch_size=32, lr=3e-3, lr_schedule="cosine", warmup_steps=30)      # the learning tests' SFT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/synth-sft-result")
    ap.add_argument("--teacher-steps", type=int, default=600)
    ap.add_argument("--expert-steps", type=int, default=40)
    ap.add_argument("--student-steps", type=int, default=600)
    ap.add_argument("--prompts", type=int, default=159)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--eval", type=int, default=41)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from evalgym.benchmarks.contamination import contamination
    from evalgym.evaluate import EvalSampling, evaluate
    from evalgym.policies.hf import HFPolicy
    from evalgym.synth import SynthConfig, synthesize
    from evalgym.trainers.grpo import GRPOConfig, train_grpo
    from evalgym.trainers.sft import SFTConfig, train_sft

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    timing: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timing[name] = round(time.perf_counter() - t0, 1)
        print(f"[synth-sft] {name}: {timing[name]} s", file=sys.stderr, flush=True)
        return out

    envs = {ENV: KNOBS}
    sft = timed("teacher SFT", lambda: train_sft(SFTConfig(
        model="tiny", envs=[ENV], env_kwargs=envs, env_rows=2000, steps=args.teacher_steps, **SFT,
        save_every=args.teacher_steps, run_dir=str(work / "teacher-sft")), progress=False))
    teacher = sft["checkpoint"].path
    if args.expert_steps:
        rl = timed("teacher GRPO", lambda: train_grpo(GRPOConfig(
            model=teacher, envs={ENV: 1.0}, env_kwargs=envs, steps=args.expert_steps, lr=5e-4, beta=0.05,
            prompts_per_step=16, group_size=8, max_tokens=32, save_every=args.expert_steps,
            run_dir=str(work / "teacher-grpo")), progress=False))
        teacher = rl["checkpoint"].path
    cards = {}
    for keep in ("correct", "all"):
        cfg = SynthConfig(teacher=teacher, envs=[ENV], env_kwargs=envs, num_prompts=args.prompts, n=args.n,
                          max_tokens=32, temperature=1.0, keep=keep, max_per_prompt=4 if keep == "correct" else None,
                          out=str(work / f"synth-{keep}"),
                          name=f"two-digit sums, keep {keep}")
        cards[keep] = timed(f"synth keep={keep}", lambda cfg=cfg: synthesize(cfg, progress=False)["card"])
    students = {}
    for keep in ("correct", "all"):
        res = timed(f"student SFT on keep={keep}", lambda keep=keep: train_sft(SFTConfig(
            model="tiny", data=str(work / f"synth-{keep}" / "sft"), steps=args.student_steps, **SFT,
            save_every=args.student_steps, run_dir=str(work / f"student-{keep}")), progress=False))
        students[keep] = res["checkpoint"].path
    models = {"base (tiny)": "tiny", "teacher": teacher, "student (synth, verified)": students["correct"],
              "student (synth, unfiltered)": students["all"]}
    scores = {}
    for name, path in models.items():
        def run(path=path):
            policy = HFPolicy(path, device="cpu")
            try:
                return [evaluate(policy, ENV, split="eval", limit=args.eval, env_kwargs=KNOBS,
                                 sampling=EvalSampling(num_samples=k, temperature=t, max_tokens=32)) for k, t in ((8, 1.0), (1, 0.0))]
            finally:
                policy.close()
        sampled, greedy = timed(f"eval {name}", run)
        mean, acc = sampled.score("mean@8"), greedy.score("acc")
        scores[name] = {"model": path, "mean@8": round(mean.value, 4), "mean_ci": [round(mean.ci_low, 4), round(mean.ci_high, 4)],
                        "greedy": round(acc.value, 4), "greedy_ci": [round(acc.ci_low, 4), round(acc.ci_high, 4)],
                        "n": acc.n, "grader_errors": sampled.grader_errors + greedy.grader_errors,
                        "contamination": contamination(path, sampled.hashes) if path != "tiny" else None}
    out = {"meta": {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpus": os.cpu_count(),
                    "command": "python perf/synth_sft_result.py " + " ".join(sys.argv[1:]), "args": vars(args)},
           "env": ENV, "knobs": KNOBS, "scores": scores, "timing_s": timing,
           "synth": {k: {"rows": c["rows"], "counts": c["counts"], "contamination_dropped": c["contamination"]["dropped"],
                         "content_hash": c["content_hash"]} for k, c in cards.items()}}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "synth_sft.json").write_text(json.dumps(out, indent=1, default=str))
    (Path(args.out) / "synth_sft.md").write_text(render(out))
    print(render(out))


def render(r: dict) -> str:
    m = r["meta"]
    lines = ["# Synthetic data result: SFT on a teacher's verified samples", "",
             f"Measured {m['when']} on {m['machine']} ({m['cpus']} CPUs, shared with 4 other agents' jobs). "
             f"Command: `{m['command']}`. Env: {r['env']} {r['knobs']} (all {m['args']['eval']} problems of the eval "
             "split; mean@8: mean reward of 8 samples at temperature 1; greedy: one answer each).", "",
             "| model | held-out mean@8 | 95% CI | greedy | 95% CI | contamination (eval problems its lineage trained on) |",
             "|---|---|---|---|---|---|"]
    for name, s in r["scores"].items():
        c = s["contamination"]
        cont = "— (plain model)" if c is None else f"{c['overlap']} of {c['eval_problems']} (lineage trained on {c['trained_problems']})"
        lines.append(f"| {name} | {s['mean@8']:.3f} | {s['mean_ci'][0]:.3f}–{s['mean_ci'][1]:.3f} | {s['greedy']:.3f} | "
                     f"{s['greedy_ci'][0]:.3f}–{s['greedy_ci'][1]:.3f} | {cont} |")
    lines += ["", "| dataset | rows | prompts kept | samples kept | dropped by decontamination | content hash |",
              "|---|---|---|---|---|---|"]
    for keep, s in r["synth"].items():
        lines.append(f"| keep {keep} | {s['rows'].get('sft', 0)} | {s['counts'].get('prompts kept')} | "
                     f"{s['counts'].get('samples kept')} | {s['contamination_dropped']} | `{s['content_hash']}` |")
    lines += ["", "Time (s): " + ", ".join(f"{k} {v}" for k, v in r["timing_s"].items()) + f"; total "
              f"{round(sum(r['timing_s'].values()), 1)} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
