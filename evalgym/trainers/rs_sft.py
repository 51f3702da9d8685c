"""Rejection-sampling SFT (the Llama 3 / R1 stage): sample n completions per prompt from the current
model, keep the best by the env's verifier (ties: the first correct sample) -- or by a reward model's
score (``reward_model``, as Llama 3 does) -- then SFT on the kept ones.

    evalgym train rs-sft model=runs/grpo/step_000040 'envs=[arithmetic]' n=8 num_prompts=256 steps=100
    evalgym train rs-sft model=runs/sft/step_000600 'envs=[arithmetic]' reward_model=runs/rm/step_000160 min_reward=0.5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.trainers.sft import SFTConfig, train_sft


class RSSFTConfig(SFTConfig):
    n: int = 8                        # samples per prompt (best-of-n)
    num_prompts: int = 256            # prompts per env
    temperature: float = 1.0
    max_tokens: int = 128
    min_reward: float = 1.0           # keep a prompt only if its best sample reaches this reward
    sample_model: str | None = None   # default: `model`
    reward_model: str | None = None   # select by the reward model's σ(score) instead of the verifier
                                      # (then min_reward 0.5 keeps samples it scores above 0)


def select_best(groups: list[Any], min_reward: float,
                rewards: list[list[float]] | None = None) -> list[dict[str, Any]]:
    """One SFT row per group whose best sample reaches ``min_reward``, with where it came from.
    ``rewards`` (one list per group) replaces the verifier's rewards (a reward model's scores)."""
    rows = []
    for gi, g in enumerate(groups):
        scored = [(rewards[gi][ti] if rewards is not None else t.reward, t) for ti, t in enumerate(g.trajectories)]
        reward, best = max(scored, key=lambda rt: (rt[0], -rt[1].sample_index))
        if reward >= min_reward:
            messages = [m.as_dict() for m in best.final.messages]
            rows.append({"messages": messages + [{"role": "assistant", "content": best.final.completion.text}],
                         "env_id": g.problem.env_id, "index": g.problem.index, "reward": reward,
                         "verifier_reward": best.reward})
    return rows


def train_rs_sft(cfg: RSSFTConfig, *, progress: bool = True) -> dict[str, Any]:
    from evalgym.policies.hf import HFPolicy
    from evalgym.rollouts import collect, make_env

    if not cfg.envs:
        raise EvalgymError("rs-sft: name the envs to sample from (`envs=[...]`)")
    data = Path(cfg.run_dir) / "rs_data.jsonl"
    stats: dict[str, Any] = {}
    if not data.exists():  # sampled once; a resumed run trains on the same data
        policy = HFPolicy(cfg.sample_model or cfg.model)
        scorer = None
        if cfg.reward_model:
            from evalgym.trainers.rm import RewardModelScorer
            scorer = RewardModelScorer(cfg.reward_model)
        rows = []
        for env_id in cfg.envs:
            env = make_env(env_id, **cfg.env_kwargs.get(env_id, {}))
            result = collect(policy, env, num_prompts=cfg.num_prompts, n=cfg.n, seed=cfg.seed, progress=progress,
                             sampling=SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens))
            rewards = None
            if scorer is not None:
                trajs = [t for g in result.groups for t in g.trajectories]
                flat = iter(v.reward for v in scorer.verify_batch([t.problem for t in trajs],
                                                                  [t.final.completion.text for t in trajs]))
                rewards = [[next(flat) for _ in g.trajectories] for g in result.groups]
            kept = select_best(result.groups, cfg.min_reward, rewards)
            stats[env_id] = {"prompts": len(result.groups), "kept": len(kept), "mean_reward": result.mean_reward()}
            rows += kept
        if not rows:
            raise EvalgymError(f"rs-sft: no prompt had a sample with {'reward-model ' if scorer else ''}reward >= "
                               f"{cfg.min_reward} ({stats}); "
                               "sample more (n, num_prompts) or start from a stronger model")
        data.parent.mkdir(parents=True, exist_ok=True)
        tmp = data.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(data)
    sft_cfg = SFTConfig(**{k: v for k, v in cfg.model_dump().items() if k in SFTConfig.model_fields})
    sft_cfg = sft_cfg.model_copy(update={"data": str(data), "envs": []})
    result = train_sft(sft_cfg, progress=progress)
    result["selection"] = stats
    return result
