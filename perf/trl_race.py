"""GRPO race: evalgym's trainer vs TRL's ``GRPOTrainer``, same model, env, prompts and hyperparameters.

Two starts (``--model``): ``tiny`` — the 1 M-parameter model after a short SFT on one-digit +/- arithmetic
(trained here with evalgym's SFT and cached under ``--work``); ``smollm2-135m`` — SmolLM2-135M-Instruct as
it comes (every weight trained), on two-digit sums, where it starts at ~0.18 greedy. Each trainer runs
``--steps`` GRPO steps in a process of its own (so its peak resident memory is its own), on CPU, with
generation by plain transformers (TRL without vLLM; ours with the ``hf`` backend):

- the same problems, step by step: TRL's dataset is ``trl_dataset(indices=...)`` of exactly the
  problems our trainer picks at each step, unshuffled, and its reward is ``trl_reward`` (the same
  verifier);
- the same prompts per step, group size, max completion length, temperature / top-p, learning rate
  (constant, no warm-up), AdamW, grad-norm clip 1.0, clip eps 0.2, beta 0, one policy update per batch;
- loss aggregation: ours ``token`` (mean over every completion token of the batch) = TRL's ``dapo``
  with one process and no accumulation; advantages normalized by the group's std (see DIFFERENCES).

Per trainer: wall seconds per optimizer step (median over steps 2..N: step 1 pays start-up),
completion tokens/s (completion tokens / wall time of steps 2..N), peak resident memory of its process
(model load and training; read before the held-out evaluation), training reward, and greedy accuracy on the
same held-out problems before and after — the env's ``eval`` split, disjoint from the ``train`` split both
trainers draw from. With ``--repeats 2`` the second repeat runs the trainers in the other order (and the
next seed), so drift in machine load falls on both.

    python perf/trl_race.py                      # make bench-trl: ~10 min on 2 cores, + the SFT once
    python perf/trl_race.py --model smollm2-135m --steps 12 --prompts 4 --group 8 --max-tokens 64 --lr 1e-6 \
        --held-out 128 --trl-defaults-steps 0 --out perf/results/trl_race_smollm2
    python perf/trl_race.py --steps 5 --repeats 1 --trl-defaults-steps 0   # a quick look
    python perf/trl_race.py --threads 2 --steps 12 --trl-defaults-steps 0 --out perf/results/trl_race_2threads

A last run of TRL with its own defaults (bf16 autocast, gradient checkpointing; the race runs both
trainers in float32 without checkpointing) shows what those two settings cost it here.

Results: perf/results/trl_race.json and trl_race.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "arithmetic"
TASKS = {"tiny": {"digits": 1, "ops": "+-"},            # 159 train / 41 eval problems
         "smollm2-135m": {"digits": 2, "ops": "+"}}     # 8132 train / 1868 eval; SmolLM2 starts at ~0.18
HELD_OUT = {"tiny": 41, "smollm2-135m": 100}            # default --held-out: tiny's whole eval split
ENV_KWARGS = dict(TASKS["tiny"])                        # set from --model in main()

# What could not be matched exactly, said once in both result files.
DIFFERENCES = [
    "advantage std: ours the population std (÷G) + 1e-6, TRL the sample std (÷(G-1)) + 1e-4; with G=8 TRL's "
    "advantages are 0.935x ours (AdamW normalizes most of a constant scale away)",
    "sampling: ours a per-sample seeded generator and finished rows dropped from the batch; TRL "
    "model.generate (global RNG, finished rows padded until the longest stops): same distribution, "
    "different draws",
    "TRL also computes the policy's entropy in every loss forward (logged; part of its cost)",
    "optimizer: TRL's default adamw_torch_fused, ours torch.optim.AdamW (same update, same betas/eps)",
]
TRL_CHANGED_DEFAULTS = {
    "bf16": "False (TRL default True: bf16 autocast; ours trains in float32 on CPU, so both run float32)",
    "gradient_checkpointing": "False (TRL default True: recomputes activations to save memory; a 1M-param "
                              "model needs no saving and ours does not checkpoint)",
    "lr_scheduler_type": "constant (TRL default linear decay; ours is constant)",
    "learning_rate / per_device_train_batch_size / num_generations / max_completion_length / beta":
        "set to the race's values",
    "shuffle_dataset": "False (the dataset already lists our trainer's problems in step order)",
    "logging_steps": "1 (to record reward and length per step)",
    "save_strategy / report_to": "no / none (ours saves one checkpoint, at the last step, after its timed steps)",
}


def sft_checkpoint(work: Path, steps: int) -> str:
    """The tiny model SFT'd on arithmetic (as tests/trainers/conftest.py's ``sft_arithmetic``), cached."""
    from evalgym.trainers.checkpoint import latest_checkpoint
    from evalgym.trainers.sft import SFTConfig, train_sft

    run_dir = work / f"sft-{steps}"
    last = latest_checkpoint(run_dir)
    if last is not None and last.name == f"step_{steps:06d}":
        return str(last)
    # checkpoints every 100 steps: an interrupted SFT resumes where it stopped (exactly, see trainers/loop.py)
    print(f"SFT of the tiny model on {ENV} ({steps} steps) -> {run_dir}", flush=True)
    cfg = SFTConfig(model="tiny", envs=[ENV], env_kwargs={ENV: ENV_KWARGS}, env_rows=2000, batch_size=32, lr=3e-3,
                    warmup_steps=10, steps=steps, save_every=100, keep_last=1, seed=0, run_dir=str(run_dir))
    return train_sft(cfg, progress=False)["checkpoint"].path


def held_out_accuracy(model: Any, tokenizer: Any, num: int, max_tokens: int = 32) -> float:
    """Greedy accuracy on the first ``num`` problems of the eval split (the same ones for every model)."""
    from evalgym.evaluate import EvalSampling, evaluate
    from evalgym.policies.hf import HFPolicy

    was_training = model.training
    model.eval()
    res = evaluate(HFPolicy.from_model(model, tokenizer), ENV, split="eval", limit=num, env_kwargs=ENV_KWARGS,
                   batch_prompts=64, sampling=EvalSampling(num_samples=1, temperature=0.0, max_tokens=max_tokens))
    model.train(was_training)
    return res.score("acc").value


def ours_config(a: argparse.Namespace, model: str, seed: int, run_dir: Path, tempered: bool = True):
    from evalgym.trainers.grpo import GRPOConfig

    return GRPOConfig(model=model, envs={ENV: 1.0}, env_kwargs={ENV: ENV_KWARGS}, steps=a.steps, seed=seed,
                      prompts_per_step=a.prompts, group_size=a.group, max_tokens=a.max_tokens, lr=a.lr,
                      temperature=a.temperature, top_p=1.0, beta=0.0, clip_low=a.clip, clip_high=a.clip,
                      aggregation="token", scale_advantages=True, max_grad_norm=1.0, weight_decay=0.0,
                      warmup_steps=0, save_every=a.steps, run_dir=str(run_dir), tempered_logprobs=tempered)


def run_ours(a: argparse.Namespace, model: str, seed: int, work: Path, tempered: bool = True) -> dict[str, Any]:
    from evalgym.trainers.grpo import train_grpo

    run_dir = work / f"ours-seed{seed}{'' if tempered else '-t1'}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a leftover run would be resumed, not re-run
    t0 = time.perf_counter()
    result = train_grpo(ours_config(a, model, seed, run_dir, tempered), progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [{"step": r["step"], "seconds": r["step_s"], "tokens": r["tokens"], "reward": r["reward"]} for r in rows]
    return {"steps": steps, "wall_s": wall, "model": result["model"], "tokenizer": result["tokenizer"]}


def step_problems(a: argparse.Namespace, model: str, seed: int) -> list[int]:
    """The problem indices our trainer samples, step after step, group by group."""
    from evalgym.rollouts import make_env
    from evalgym.trainers.grpo import pick_problems

    cfg = ours_config(a, model, seed, Path("unused"))
    sizes = {ENV: make_env(ENV, **ENV_KWARGS).source.size}
    return [i for step in range(a.steps) for _, i in pick_problems(cfg, sizes, step)]


def run_trl(a: argparse.Namespace, model_path: str, seed: int, work: Path, *, steps: int | None = None,
            trl_defaults: bool = False) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same problems; ``trl_defaults`` keeps its bf16 autocast and gradient
    checkpointing (the race itself runs both trainers in float32 without checkpointing)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from evalgym.trainers.trl_rewards import trl_dataset, trl_reward

    steps = steps or a.steps
    indices = step_problems(a, model_path, seed)[:steps * a.prompts]
    dataset = trl_dataset(ENV, indices=indices, **ENV_KWARGS)
    out = work / f"trl-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, seed=seed, use_cpu=True,
        per_device_train_batch_size=a.prompts * a.group, num_generations=a.group, gradient_accumulation_steps=1,
        max_completion_length=a.max_tokens, temperature=a.temperature, top_p=1.0, top_k=0,
        learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        beta=0.0, epsilon=a.clip, loss_type="dapo", scale_rewards="group", num_iterations=1,
        bf16=trl_defaults, gradient_checkpointing=trl_defaults, shuffle_dataset=False,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True)
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[trl_reward(ENV, **ENV_KWARGS)],
                          args=args, train_dataset=dataset, callbacks=[StepClock()])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "reward" in h]
    if len(logs) != steps or len(ends) != steps + 1:
        raise RuntimeError(f"TRL logged {len(logs)} steps and timed {len(ends) - 1}, expected {steps}")
    batch = a.prompts * a.group
    steps = [{"step": h["step"], "seconds": ends[k + 1] - ends[k], "tokens": h["completions/mean_length"] * batch,
              "reward": h["reward"]} for k, h in enumerate(logs)]
    shutil.rmtree(out, ignore_errors=True)
    return {"steps": steps, "wall_s": wall, "model": trainer.model, "tokenizer": tokenizer}


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    timed = run["steps"][1:] or run["steps"]   # step 1 pays start-up (verifier workers, first forward)
    secs = sum(s["seconds"] for s in timed)
    rewards = [s["reward"] for s in run["steps"]]
    k = max(1, len(rewards) // 4)
    return {"median_step_s": statistics.median(s["seconds"] for s in timed),
            "tokens_per_s": sum(s["tokens"] for s in timed) / secs,
            "mean_completion_tokens": statistics.mean(s["tokens"] for s in run["steps"]),
            "reward_first_quarter": statistics.mean(rewards[:k]), "reward_last_quarter": statistics.mean(rewards[-k:]),
            "reward_mean": statistics.mean(rewards), "first_step_s": run["steps"][0]["seconds"],
            "wall_s": run["wall_s"]}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def report(meta: dict[str, Any], cfg: dict[str, Any], runs: list[dict[str, Any]], start_acc: float,
           summary: dict[str, Any]) -> str:
    start = (f"Tiny model (1 M params) SFT'd {cfg['sft_steps']} steps on `{ENV}` {cfg['env_kwargs']}" if cfg["model"] == "tiny"
             else f"{cfg['model']} as it comes (every weight trained), on `{ENV}` {cfg['env_kwargs']}")
    lines = [f"# GRPO race: evalgym vs TRL {meta['trl']} ({meta['when']}, {meta['cpus']} CPUs, torch {meta['torch']}, "
             f"transformers {meta['transformers']})", "",
             f"{start}, then {cfg['steps']} GRPO "
             f"steps of each trainer, each in a process of its own: {cfg['prompts']} prompts x {cfg['group']} samples per step, "
             f"max {cfg['max_tokens']} tokens, temperature {cfg['temperature']}, lr {cfg['lr']} constant, clip "
             f"{cfg['clip']}, beta 0, token-mean loss (TRL `dapo`), the same problems in the same order, the same "
             "verifier. Seconds/step: median wall time of one optimizer step (sampling + grading + update), steps "
             "2..N; tokens/s: completion tokens / wall time of steps 2..N; peak: the process's peak resident memory "
             "(load + training); held-out: greedy accuracy on the first "
             f"{cfg['held_out']} problems of the eval split, disjoint from training's (start: {start_acc:.3f}).", "",
             "| repeat | trainer | s/step | tokens/s | tokens/step | reward (first → last quarter) | held-out acc "
             "| peak MB | wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        lines.append(f"| {r['repeat']} (seed {r['seed']}, {r['position']}) | {r['trainer']} | "
                     f"{s['median_step_s']:.2f} | "
                     f"{s['tokens_per_s']:.0f} | {s['mean_completion_tokens']:.0f} | "
                     f"{s['reward_first_quarter']:.3f} → {s['reward_last_quarter']:.3f} | "
                     f"{r['held_out_accuracy']:.3f} | {r.get('peak_rss_mb', 0):.0f} | "
                     f"{s['wall_s']:.0f} s |")
    per_repeat = ", ".join(f"{x:.2f}" for x in summary["tokens_per_s_ratio_per_repeat"])
    lines += ["", f"**Throughput, ours / TRL: {summary['tokens_per_s_ratio']:.2f}x tokens/s, "
              f"{summary['step_time_ratio']:.2f}x faster per step** (medians over repeats; per repeat, tokens/s: "
              f"{per_repeat}; goal >= 1.5x; torch threads: {meta['torch_threads']}). "
              f"Held-out accuracy after {cfg['steps']} steps: ours {summary['ours_held_out']:.3f}, TRL "
              f"{summary['trl_held_out']:.3f} (mean over repeats; ± {summary['held_out_stderr']:.3f} one binomial "
              f"std error each). Training reward, last quarter: ours {summary['ours_reward_last']:.3f}, TRL "
              f"{summary['trl_reward_last']:.3f}. Peak resident memory: ours {summary['ours_peak_rss_mb']:.0f} MB, "
              f"TRL {summary['trl_peak_rss_mb']:.0f} MB (mean over repeats).", "",
              "TRL defaults changed: " + "; ".join(f"`{k}` {v}" for k, v in TRL_CHANGED_DEFAULTS.items()) + ".", ""]
    if "ours_untempered_held_out" in summary:
        lines += [f"Ours with `tempered_logprobs: false` (row evalgym-t1: every log-prob at temperature 1 whatever the "
                  f"sampling temperature, as the trainer was before 2026-12-05; the same samples at its first step): "
                  f"held-out {summary['ours_untempered_held_out']:.3f}, training reward in the last quarter "
                  f"{summary['ours_untempered_reward_last']:.3f}.", ""]
    own = [r for r in runs if r["trainer"] == "trl, its defaults"]
    if own:
        race = statistics.median(r["summary"]["median_step_s"] for r in runs if r["trainer"] == "trl")
        lines += [f"TRL with its own defaults (bf16 autocast, gradient checkpointing; row 'trl, its defaults', "
                  f"{len(own[0]['steps'])} steps): {own[0]['summary']['median_step_s']:.2f} s/step against "
                  f"{race:.2f} s/step in the race's float32 without checkpointing.", ""]
    lines += ["Not identical: " + "; ".join(DIFFERENCES) + ".", ""]
    return "\n".join(lines)


def one_run(a: argparse.Namespace) -> dict[str, Any]:
    """A child process: one trainer, one seed; its steps, wall time, peak resident memory, held-out accuracy."""
    import resource

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work)
    trl_defaults = a.one == "trl-defaults"
    if a.one in ("evalgym", "evalgym-t1"):
        res = run_ours(a, a.start, a.seed, work, tempered=a.one == "evalgym")
    else:
        res = run_trl(a, a.start, a.seed, work, steps=a.trl_defaults_steps if trl_defaults else None,
                      trl_defaults=trl_defaults)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # before evaluation adds anything
    acc = held_out_accuracy(res["model"], res["tokenizer"], a.held_out, a.eval_tokens)
    return {"steps": res["steps"], "wall_s": res["wall_s"], "peak_rss_mb": peak_mb, "held_out_accuracy": acc}


def child(a: argparse.Namespace, name: str, start: str, seed: int) -> dict[str, Any]:
    import subprocess

    argv = [sys.executable, __file__, "--one", name, "--start", start, "--seed", str(seed)]
    for key in ("model", "steps", "prompts", "group", "max_tokens", "lr", "temperature", "clip", "held_out",
                "trl_defaults_steps", "threads", "work", "eval_tokens"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(a, key))]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", choices=sorted(TASKS), help="the start: tiny (after SFT) or smollm2-135m")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (TRL num_generations)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--eval-tokens", type=int, default=32, help="max tokens of the held-out greedy answers")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--clip", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="repeat r runs the other order first, seed + r")
    ap.add_argument("--held-out", type=int, default=None,
                    help="eval-split problems scored before and after (default: tiny 41, its whole eval split; "
                         "smollm2-135m 100)")
    ap.add_argument("--trl-defaults-steps", type=int, default=8,
                    help="then TRL with its own bf16 / gradient-checkpointing defaults for this many steps (0: skip)")
    ap.add_argument("--sft-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for both trainers (0: torch's default). 1 by default: on a shared "
                         "2-core machine two OpenMP threads per process made every step 2-8x slower and far noisier")
    ap.add_argument("--work", default="runs/trl_race", help="SFT checkpoint cache and run folders")
    ap.add_argument("--out", default=str(RESULTS / "trl_race"))
    ap.add_argument("--untempered", action="store_true",
                    help="also run ours with tempered_logprobs false (log-probs at T = 1 whatever the sampling "
                         "temperature: the trainer before 2026-12-05), last in each repeat: trainer evalgym-t1")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)      # child: evalgym | evalgym-t1 | trl | trl-defaults
    ap.add_argument("--start", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ENV_KWARGS.clear()
    ENV_KWARGS.update(TASKS[a.model])
    if a.held_out is None:
        a.held_out = HELD_OUT[a.model]
    if a.one:
        print(json.dumps(one_run(a)))
        return

    import torch
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalgym.models import resolve_model

    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work)
    start = sft_checkpoint(work, a.sft_steps) if a.model == "tiny" else resolve_model(a.model)
    start_acc = held_out_accuracy(AutoModelForCausalLM.from_pretrained(start), AutoTokenizer.from_pretrained(start),
                                  a.held_out, a.eval_tokens)
    print(f"start: {start}  held-out accuracy {start_acc:.3f}", flush=True)
    runs = []
    load = [os.getloadavg()[0]]
    for r in range(a.repeats):
        seed = a.seed + r
        order = ["evalgym", "trl"] if r % 2 == 0 else ["trl", "evalgym"]
        order += ["evalgym-t1"] if a.untempered else []
        for pos, name in enumerate(order):
            res = child(a, name, start, seed)
            s = summarize(res)
            runs.append({"repeat": r, "seed": seed, "trainer": name, "position": ("first", "second", "third")[pos],
                         "summary": s, "held_out_accuracy": res["held_out_accuracy"], "peak_rss_mb": res["peak_rss_mb"],
                         "steps": res["steps"]})
            load.append(os.getloadavg()[0])
            print(f"repeat {r} {name:8s} {s['median_step_s']:.2f} s/step  {s['tokens_per_s']:.0f} tok/s  reward "
                  f"{s['reward_first_quarter']:.3f} -> {s['reward_last_quarter']:.3f}  held-out "
                  f"{res['held_out_accuracy']:.3f}  peak {res['peak_rss_mb']:.0f} MB", flush=True)
    if a.trl_defaults_steps:
        res = child(a, "trl-defaults", start, a.seed)
        s = summarize(res)
        runs.append({"repeat": "-", "seed": a.seed, "trainer": "trl, its defaults", "position": "last",
                     "summary": s, "held_out_accuracy": res["held_out_accuracy"], "peak_rss_mb": res["peak_rss_mb"],
                     "steps": res["steps"]})
        print(f"trl with its defaults (bf16 autocast, gradient checkpointing): {s['median_step_s']:.2f} s/step",
              flush=True)

    def med(trainer: str, key: str) -> float:
        return statistics.median(x["summary"][key] for x in runs if x["trainer"] == trainer)

    def mean_of(trainer: str, key: str) -> float:
        return statistics.mean(x[key] for x in runs if x["trainer"] == trainer)

    p = (mean_of("evalgym", "held_out_accuracy") + mean_of("trl", "held_out_accuracy")) / 2
    def paired(r: int, key: str) -> float:
        ours, theirs = (next(x["summary"][key] for x in runs if x["repeat"] == r and x["trainer"] == t)
                        for t in ("evalgym", "trl"))
        return ours / theirs if key == "tokens_per_s" else theirs / ours

    summary = {"tokens_per_s_ratio": med("evalgym", "tokens_per_s") / med("trl", "tokens_per_s"),
               "tokens_per_s_ratio_per_repeat": [paired(r, "tokens_per_s") for r in range(a.repeats)],
               "step_time_ratio_per_repeat": [paired(r, "median_step_s") for r in range(a.repeats)],
               "step_time_ratio": med("trl", "median_step_s") / med("evalgym", "median_step_s"),
               "ours_held_out": mean_of("evalgym", "held_out_accuracy"), "trl_held_out": mean_of("trl", "held_out_accuracy"),
               "held_out_stderr": (p * (1 - p) / a.held_out) ** 0.5,
               "ours_peak_rss_mb": mean_of("evalgym", "peak_rss_mb"), "trl_peak_rss_mb": mean_of("trl", "peak_rss_mb"),
               "ours_reward_last": med("evalgym", "reward_last_quarter"),
               "trl_reward_last": med("trl", "reward_last_quarter")}
    if a.untempered:
        summary |= {"ours_untempered_held_out": mean_of("evalgym-t1", "held_out_accuracy"),
                    "ours_untempered_reward_last": med("evalgym-t1", "reward_last_quarter")}
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "transformers": transformers.__version__,
            "trl": trl.__version__, "loadavg_1min": load, "start_checkpoint": start}
    cfg = {k: v for k, v in vars(a).items() if k not in ("work", "out", "one", "start")} | {
        "env": ENV, "env_kwargs": dict(ENV_KWARGS), "held_out_split": "eval"}
    out = Path(a.out)
    write_atomic(out.with_suffix(".json"), json.dumps(
        {"meta": meta, "config": cfg, "trl_changed_defaults": TRL_CHANGED_DEFAULTS, "differences": DIFFERENCES,
         "start_held_out_accuracy": start_acc, "summary": summary, "runs": runs}, indent=1))
    text = report(meta, cfg, runs, start_acc, summary)
    write_atomic(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
