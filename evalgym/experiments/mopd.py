"""The MOPD experiment: experts per domain by RL, merged into one student by multi-teacher on-policy
distillation, against mixed-domain RL and off-policy distillation with the same sample budget.

    python perf/mopd_experiment.py                      # the full run → perf/results/mopd.{json,md}
    run_experiment(MOPDExperiment(out="runs/mopd-exp", sft_steps=200, ...))

1. ``base``: SFT of the start model on the reference solutions of every domain's env (``sft_steps: 0``:
   the start model itself is the base, e.g. SmolLM2-135M-Instruct).
2. ``expert-<domain>``: from ``base`` on that domain's env alone: GRPO with a KL term to the base
   (``expert_trainer: grpo``, ``expert_beta``) or SFT on the env's reference solutions (``expert_trainer:
   sft``, ``expert_steps`` steps of ``sft_batch`` at ``expert_lr``).
3. Three students from ``base``, each trained on the mixture of all domains for ``student_steps``
   steps of ``prompts_per_step × group_size`` samples (the same budget):
   ``mopd`` (on-policy distillation, each trajectory routed to its domain's expert, ``mopd_alpha`` 0,
   the exact reverse KL over the teacher's top ``mopd_kl_topk`` tokens, ``mopd_group_size`` samples
   per problem), ``mixed-rl`` (GRPO over the mixture, the experts' settings) and ``off-policy`` (SFT on
   the experts' samples of the same problems).
4. Every model's held-out score per domain through the evaluation driver (``evalgym.evaluate``) on the
   first ``eval_prompts`` distinct problems of each env's ``eval`` split (training draws from ``train``:
   disjoint by content hash, and each model's overlap with everything its lineage trained on is
   measured and reported, 0 expected): the mean reward of ``eval_samples`` samples per problem at the
   training temperature (pass@1 averaged over samples: what RL and reverse-KL distillation optimize,
   and far less noisy than one greedy answer per problem, which flips on small weight changes), with
   greedy accuracy reported beside it; and the students' scores at every checkpoint, to compare how
   many student samples each needs.

Each stage is a run dir under ``out``; a finished stage is not retrained (scores are cached in
``out/scores.json``), so a killed experiment resumes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalgym.evaluate import wilson
from evalgym.trainers.checkpoint import latest_checkpoint


@dataclass
class MOPDExperiment:
    out: str = "runs/mopd-experiment"
    model: str = "tiny"
    # domain -> (env, env kwargs); a domain is the routing key of the student's trajectories
    # Spaces large enough for disjoint eval problems: two-digit sums (10000: 1868 in the eval split) and
    # two-number countdown over 1..50 (3509: 719 eval). The one-digit sums (100) and 1..9 countdown (134) the
    # settings below were tuned on hold only 16 and 19 eval problems; the results before this change
    # (perf/results/mopd*.md) scored the training set.
    domains: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=lambda: {
        "math": ("arithmetic", {"digits": 2, "ops": "+"}),
        "countdown": ("countdown-gen", {"count": 2, "max_number": 50}),
    })
    # (procedural code, code-gen, is left out by default: RL on it costs ~30 s per step of 96 sandboxed
    # programs on a busy 2-core box; add {"code": ("code-gen", {})} on a bigger machine)
    seed: int = 0
    sft_steps: int = 600              # a base that already scores: RL from a near-zero base has no signal
    sft_lr: float = 3e-3
    sft_batch: int = 32
    sft_warmup: int = 10
    expert_trainer: str = "grpo"       # "grpo" (RL on the domain's reward) or "sft" (its reference solutions)
    expert_steps: int = 48             # 24 left the math expert at its base on two of four bases (sampled score)
    expert_lr: float = 5e-4
    expert_beta: float = 0.05         # KL to the base in the RL runs (experts and mixed RL): without it the
    #                                   math expert's RL drifted on tokens reward ignores (0.87 nats/token on
    #                                   restating the sum), which a distilled student must then copy
    student_steps: int = 40
    student_lr: float = 5e-4          # mixed RL: the experts' own RL settings
    distill_lr: float = 3e-4          # off-policy distillation (SFT on the experts' samples)
    mopd_lr: float = 6e-4
    mopd_alpha: float = 0.0           # weight of the outcome advantage mixed into MOPD's per-token one
    mopd_kl_topk: int = 128           # exact reverse KL over the teacher's top k (128: the tiny model's whole
    #                                   vocabulary); 0: the sampled per-token term log π_t(y_t) − log π_s(y_t)
    mopd_group_size: int | None = 2   # MOPD's samples per problem (None: group_size); it needs no group
    #                                   baseline, so its prompts per step grow to keep the samples per step
    prompts_per_step: int = 16
    group_size: int = 8
    max_tokens: int = 32
    temperature: float = 1.0          # sampling of experts, students and teachers' probes
    eval_every: int = 10              # students' checkpoints (sample-efficiency curve)
    eval_prompts: int = 128           # held-out problems per domain
    eval_samples: int = 8             # samples per held-out problem at `temperature` (the score); greedy beside
    students: tuple[str, ...] = ("mopd", "mixed-rl", "off-policy")
    progress: bool = True


def _final(run_dir: Path) -> str | None:
    ref = latest_checkpoint(run_dir)
    return str(ref) if ref is not None else None


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


class _Scores:
    """Held-out scores per model path, cached on disk (dropped when the eval settings change):
    ``self.row(model)`` is {"sampled": score per domain, "se": its standard error over problems,
    "greedy": greedy accuracy per domain}; ``self(model)`` the sampled scores."""

    def __init__(self, exp: MOPDExperiment):
        self.exp = exp
        self.path = Path(exp.out) / "scores.json"
        self.settings = {"eval_prompts": exp.eval_prompts, "eval_samples": exp.eval_samples, "split": "eval",
                         "temperature": exp.temperature, "max_tokens": exp.max_tokens, "domains": exp.domains}
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        same = saved.get("settings") == json.loads(json.dumps(self.settings))
        self.data: dict[str, dict[str, Any]] = saved.get("models", {}) if same else {}

    def row(self, model: str) -> dict[str, Any]:
        if model not in self.data:
            from evalgym.benchmarks.contamination import contamination
            from evalgym.evaluate import EvalSampling, evaluate
            from evalgym.policies.hf import HFPolicy

            policy = HFPolicy(model, device="cpu")
            row: dict[str, Any] = {"sampled": {}, "se": {}, "greedy": {}, "overlap": {}}
            try:
                for dom, (env_id, kwargs) in self.exp.domains.items():
                    greedy = evaluate(policy, env_id, split="eval", limit=self.exp.eval_prompts, env_kwargs=kwargs,
                                      sampling=EvalSampling(temperature=0, max_tokens=self.exp.max_tokens))
                    row["greedy"][dom] = greedy.score("acc").value
                    if self.exp.eval_samples:
                        k = self.exp.eval_samples
                        res = evaluate(policy, env_id, split="eval", indices=greedy.indices, env_kwargs=kwargs,
                                       sampling=EvalSampling(num_samples=k, temperature=self.exp.temperature,
                                                             max_tokens=self.exp.max_tokens))
                        score = res.score(f"mean@{k}" if k > 1 else "reward")
                    else:
                        score = greedy.score("reward")
                    row["sampled"][dom], row["se"][dom] = score.value, score.stderr or 0.0
                    c = contamination(model, greedy.hashes)
                    row["overlap"][dom] = {"overlap": c["overlap"], "eval_problems": c["eval_problems"]}
            finally:
                policy.close()
            self.data[model] = row
            _atomic_json(self.path, {"settings": self.settings, "models": self.data})
        return self.data[model]

    def __call__(self, model: str) -> dict[str, float]:
        return self.row(model)["sampled"]


def run_experiment(exp: MOPDExperiment) -> dict[str, Any]:
    from evalgym.trainers.distill import DistillConfig, train_distill
    from evalgym.trainers.grpo import GRPOConfig, train_grpo
    from evalgym.trainers.sft import SFTConfig, train_sft

    out = Path(exp.out)
    scores = _Scores(exp)
    envs = {env_id: kwargs for env_id, kwargs in exp.domains.values()}
    mixture = {env_id: 1.0 for env_id in envs}
    wall: dict[str, float] = {}

    def stage(name: str, train: Any, cfg: Any) -> str:
        run_dir = out / name
        if (run_dir / f"step_{cfg.steps:06d}").is_dir():
            return str(run_dir / f"step_{cfg.steps:06d}")
        t0 = time.perf_counter()
        train(cfg, progress=exp.progress)
        wall[name] = time.perf_counter() - t0
        return str(_final(run_dir))

    if exp.expert_trainer not in ("grpo", "sft"):
        raise ValueError(f"expert_trainer: 'grpo' or 'sft', got {exp.expert_trainer!r}")
    if exp.sft_steps < 0:
        raise ValueError(f"sft_steps: >= 0 (0: no shared SFT stage), got {exp.sft_steps}")
    base = exp.model if exp.sft_steps == 0 else stage("base", train_sft, SFTConfig(
        model=exp.model, envs=list(envs), env_kwargs=envs, env_rows=2000, batch_size=exp.sft_batch, lr=exp.sft_lr,
        warmup_steps=exp.sft_warmup, steps=exp.sft_steps, save_every=exp.sft_steps, seed=exp.seed, run_dir=str(out / "base")))
    common = dict(prompts_per_step=exp.prompts_per_step, group_size=exp.group_size, max_tokens=exp.max_tokens,
                  temperature=exp.temperature, seed=exp.seed, env_kwargs=envs)
    experts = {}
    for dom, (env_id, kwargs) in exp.domains.items():
        # an expert trains on its own env only: the config refuses kwargs for an env it does not train on
        run_dir = str(out / f"expert-{dom}")
        if exp.expert_trainer == "sft":
            experts[dom] = stage(f"expert-{dom}", train_sft, SFTConfig(
                model=base, envs=[env_id], env_kwargs={env_id: kwargs}, env_rows=2000, batch_size=exp.sft_batch,
                lr=exp.expert_lr, warmup_steps=exp.sft_warmup, steps=exp.expert_steps, save_every=exp.expert_steps,
                seed=exp.seed, run_dir=run_dir))
        else:
            experts[dom] = stage(f"expert-{dom}", train_grpo, GRPOConfig(
                model=base, envs={env_id: 1.0}, steps=exp.expert_steps, lr=exp.expert_lr, beta=exp.expert_beta,
                save_every=exp.expert_steps, run_dir=run_dir, **{**common, "env_kwargs": {env_id: kwargs}}))
    per_step = exp.prompts_per_step * exp.group_size
    mopd_group = exp.mopd_group_size or exp.group_size
    if per_step % mopd_group:
        raise ValueError(f"mopd_group_size {mopd_group} must divide the {per_step} samples a step "
                         "(prompts_per_step × group_size)")
    mopd_shape = {**common, "prompts_per_step": per_step // mopd_group, "group_size": mopd_group}
    student_cfgs = {
        "mopd": (train_distill, DistillConfig(
            model=base, envs=mixture, teachers=experts, mode="on_policy", alpha=exp.mopd_alpha,
            kl_topk=exp.mopd_kl_topk, steps=exp.student_steps, lr=exp.mopd_lr, save_every=exp.eval_every,
            run_dir=str(out / "mopd"), **mopd_shape)),
        "mixed-rl": (train_grpo, GRPOConfig(
            model=base, envs=mixture, steps=exp.student_steps, lr=exp.student_lr, beta=exp.expert_beta,
            save_every=exp.eval_every, run_dir=str(out / "mixed-rl"), **common)),
        "off-policy": (train_distill, DistillConfig(
            model=base, envs=mixture, teachers=experts, mode="off_policy", steps=exp.student_steps,
            lr=exp.distill_lr, save_every=exp.eval_every, run_dir=str(out / "off-policy"), **common)),
    }
    unknown = set(exp.students) - set(student_cfgs)
    if unknown or "mixed-rl" not in exp.students:
        raise ValueError(f"students: choose from {sorted(student_cfgs)} (mixed-rl is the reference), got {exp.students}")
    students = {name: stage(name, *student_cfgs[name]) for name in exp.students}

    paths = {"base": base, **{f"expert-{d}": p for d, p in experts.items()}, **students}
    table = {name: scores(p) for name, p in paths.items()}
    curves: dict[str, list[dict[str, Any]]] = {}
    for name in students:
        pts = [{"step": 0, "samples": 0, **table["base"]}]
        for ck in sorted((out / name).glob("step_*")):
            step = int(ck.name.split("_")[1])
            pts.append({"step": step, "samples": step * per_step, **scores(str(ck))})
        curves[name] = pts
    doms = list(exp.domains)
    mean = lambda s: sum(s[d] for d in doms) / len(doms)  # noqa: E731
    expert_in_domain = {d: table[f"expert-{d}"][d] for d in doms}
    ratio = {n: {d: (table[n][d] / expert_in_domain[d] if expert_in_domain[d] else None) for d in doms}
             for n in students}
    target = mean(table["mixed-rl"])

    def samples_to(name: str) -> int | None:
        return next((p["samples"] for p in curves[name] if mean(p) >= target), None)

    kl: dict[str, list[float]] = {}
    if "mopd" in students:
        rows = [json.loads(x) for x in (out / "mopd" / "metrics.jsonl").read_text().splitlines()]
        for d in doms:
            vals = [r[f"reverse_kl/{d}"] for r in rows if f"reverse_kl/{d}" in r]
            if vals:
                k = max(1, min(4, len(vals) // 4))
                kl[d] = [sum(vals[:k]) / k, sum(vals[-k:]) / k]
    result = {
        "config": asdict(exp), "domains": doms, "scores": table, "expert_in_domain": expert_in_domain,
        "score_se": {name: scores.row(p)["se"] for name, p in paths.items()},
        "greedy": {name: scores.row(p)["greedy"] for name, p in paths.items()},
        "overlap": {name: scores.row(p)["overlap"] for name, p in paths.items()},
        "mopd_reverse_kl_first_last": kl,
        "fraction_of_expert": ratio, "curves": curves, "samples_per_step": per_step,
        "mixed_rl_final_mean": target,
        "samples_to_mixed_rl_final": {n: samples_to(n) for n in students},
        "student_samples": {n: exp.student_steps * per_step for n in students},
        "wall_s": wall,
    }
    return result


def _spaces(result: dict[str, Any]) -> str:
    doms = result["config"]["domains"]
    return "; ".join(f"{d}: {env} {json.dumps(kw)}" for d, (env, kw) in doms.items())


def _overlap_line(result: dict[str, Any]) -> str:
    """The measured contamination: eval problems any model's lineage trained on (0 means held out)."""
    overlap = result.get("overlap")
    if not overlap:
        return "Overlap with training: not measured (a result from before the eval split)."
    worst = [(name, d, o["overlap"], o["eval_problems"]) for name, per in overlap.items() for d, o in per.items()
             if o.get("overlap") != 0]
    if not worst:
        return ("Overlap with training, measured for every model against its lineage's trained_problems.json: "
                "0 eval problems (0 %) for every model and domain.")
    return "NOT held out: " + "; ".join(f"{n} {d}: {o if o is not None else '?'}/{e}" for n, d, o, e in worst)


def markdown(result: dict[str, Any]) -> str:
    doms = result["domains"]
    cfg = result["config"]
    n, k = cfg["eval_prompts"], cfg.get("eval_samples", 0)
    what = (f"mean reward of {k} samples per problem at temperature {cfg['temperature']}" if k else "greedy")
    lines = ["# MOPD experiment: experts per domain merged into one student", "",
             f"Held-out score per domain ({what}, the first {n} distinct problems of each env's eval split, "
             f"disjoint from the train split every stage draws from; spaces {_spaces(result)}), "
             f"model {cfg.get('model', 'tiny')} on CPU, seed {cfg['seed']}. Students: {cfg['student_steps']} steps × "
             f"{result['samples_per_step']} samples = {cfg['student_steps'] * result['samples_per_step']} "
             "samples each.", ""]
    if "mopd_lr" in cfg:
        per_step = result["samples_per_step"]
        g = cfg.get("mopd_group_size") or cfg["group_size"]
        kl = (f"exact reverse KL over the teacher's top {cfg['mopd_kl_topk']} tokens at each position"
              if cfg.get("mopd_kl_topk") else "sampled per-token advantage log π_t − log π_s")
        base = ("the start model itself" if cfg.get("sft_steps") == 0 else
                f"SFT {cfg['sft_steps']} steps × {cfg['sft_batch']} on every domain, lr {cfg['sft_lr']:g}")
        if cfg.get("expert_trainer", "grpo") == "sft":
            experts = (f"experts SFT on their domain's reference solutions, {cfg['expert_steps']} steps × "
                       f"{cfg['sft_batch']}, lr {cfg['expert_lr']:g}")
            rl = (f"mixed RL: GRPO {cfg['prompts_per_step']} problems × {cfg['group_size']} samples, lr "
                  f"{cfg['student_lr']:g}, β {cfg.get('expert_beta', 0):g}, over both envs")
        else:
            experts = (f"experts GRPO {cfg['expert_steps']} steps × {cfg['prompts_per_step']} problems × "
                       f"{cfg['group_size']} samples, lr {cfg['expert_lr']:g}, β {cfg.get('expert_beta', 0):g} "
                       "(KL to the base)")
            rl = f"mixed RL with the experts' settings (lr {cfg['student_lr']:g}) over both envs"
        lines += [f"Settings: base: {base}; {experts}; MOPD {per_step // g} problems × {g} samples a step, lr "
                  f"{cfg['mopd_lr']:g}, α {cfg['mopd_alpha']:g}, {kl}; {rl}; off-policy SFT on the experts' "
                  f"samples, lr {cfg['distill_lr']:g}; sampling temperature {cfg['temperature']:g}, "
                  f"max_tokens {cfg['max_tokens']}.", ""]
    se = result.get("score_se", {})

    def table(scores: dict[str, dict[str, float]], interval: Any) -> list[str]:
        rows = ["| model | " + " | ".join(doms) + " | mean |", "|---" * (len(doms) + 2) + "|"]
        for name, s in scores.items():
            cells = [f"{s[d]:.3f} [{lo:.2f}, {hi:.2f}]" for d in doms for lo, hi in [interval(name, d, s[d])]]
            rows.append(f"| {name} | " + " | ".join(cells) + f" | {sum(s[d] for d in doms) / len(doms):.3f} |")
        return rows

    def by_wilson(name: str, d: str, v: float) -> tuple[float, float]:
        return wilson(v * n, n)

    def by_se(name: str, d: str, v: float) -> tuple[float, float]:
        return v - 1.96 * se[name][d], v + 1.96 * se[name][d]

    lines += table(result["scores"], by_se if se else by_wilson)
    lines += ["", ("Brackets: 95 % intervals (± 1.96 standard errors over problems). " if se else
                   "Brackets: Wilson 95 % intervals. ") + _overlap_line(result)]
    if result.get("greedy") and k:
        lines += ["", "Greedy accuracy on the same problems (one answer per problem; Wilson 95 % intervals):", ""]
        lines += table(result["greedy"], by_wilson)
    lines += ["", "Student score as a fraction of each domain's expert (in-domain):", "",
              "| student | " + " | ".join(doms) + " |", "|---" * (len(doms) + 1) + "|"]
    for name, r in result["fraction_of_expert"].items():
        lines.append(f"| {name} | " + " | ".join("—" if r[d] is None else f"{r[d]:.2f}" for d in doms) + " |")
    lines += ["", f"Student samples needed to reach mixed RL's final mean score ({result['mixed_rl_final_mean']:.3f}):",
              ""]
    for name, n in result["samples_to_mixed_rl_final"].items():
        lines.append(f"- {name}: {'not reached' if n is None else n}")
    lines += ["", "Score vs student samples (mean over domains):", "",
              "| student | " + " | ".join(str(p["samples"]) for p in next(iter(result["curves"].values()))) + " |",
              "|---" * (1 + len(next(iter(result["curves"].values())))) + "|"]
    for name, pts in result["curves"].items():
        lines.append(f"| {name} | " + " | ".join(f"{sum(p[d] for d in doms) / len(doms):.3f}" for p in pts) + " |")
    if result.get("mopd_reverse_kl_first_last"):
        lines += ["", "MOPD student's reverse KL to its teachers (nats/token, mean of the first and last 4 steps): "
                  + ", ".join(f"{d} {a:.3f} → {b:.3f}" for d, (a, b) in result["mopd_reverse_kl_first_last"].items())]
    if result.get("wall_s"):
        lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result["wall_s"].items())]
    return "\n".join(lines) + "\n"
