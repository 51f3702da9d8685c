"""Rejection sampling (the Llama 3 / R1 stage, online as in RAFT): an advantage function for the one RL loop.

Each step samples ``group_size`` completions of ``prompts_per_step`` problems from the current model, keeps
the best of each group by the env's verifier — or by a reward model's score (``reward_model``, as Llama 3
does) — when it reaches ``min_reward`` (ties: the first sample), and learns the kept samples: advantage 1 on
their tokens, every other sample out of the loss. With 1 × 1 updates that is exactly SFT on the kept
samples (the ratio is 1, the gradient ``−∇ log π``); ``minibatches``/``epochs`` > 1 reuse one large sampled
batch several times, the offline variant. The kept samples of each step are appended to
``run_dir/selected.jsonl`` (prompt, completion, reward, step).

    evalgym train rs-sft model=runs/grpo/step_000040 'envs={arithmetic: 1}' group_size=8 prompts_per_step=16
    evalgym train rs-sft model=runs/sft/step_000600 'envs={arithmetic: 1}' reward_model=runs/rm/step_000160 min_reward=0.5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from evalgym.trainers.batch import Row, episode_tokens
from evalgym.trainers.config import RLConfig
from evalgym.trainers.rl import StudentSampler, rollout_stats, short_env, train_rl


class RSSFTConfig(RLConfig):
    group_size: int = Field(8, ge=1)      # samples per prompt (best-of-n)
    prompts_per_step: int = Field(16, ge=1)
    min_reward: float = Field(1.0, ge=0, le=1)   # keep a prompt's best sample only if it reaches this reward
    reward_model: str | None = None       # select by the reward model's σ(score) instead of the verifier
                                          # (then min_reward 0.5 keeps samples it scores above 0)
    aggregation: Literal["token", "sequence", "constant"] = "token"   # token mean: SFT's loss
    lr: float = Field(1e-4, gt=0)
    save_every: int = Field(25, ge=1)


def select_best(rewards: list[float], valid: list[bool], min_reward: float) -> int | None:
    """Index of the best valid sample reaching ``min_reward`` (the first of equals), or None."""
    best = max((i for i, ok in enumerate(valid) if ok), key=lambda i: (rewards[i], -i), default=None)
    return best if best is not None and rewards[best] >= min_reward else None


class RejectionSampling:
    name = "rs-sft"

    def __init__(self, cfg: RSSFTConfig):
        self.cfg = cfg
        self.sampler = StudentSampler(cfg)
        self.reward_model: Any = None
        self.selected = Path(cfg.run_dir) / "selected.jsonl"

    def sample(self, trainer: Any, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        if step == trainer.step and self.selected.exists() and trainer.is_main:   # resumed: drop later steps
            keep = [ln for ln in self.selected.read_text().splitlines() if json.loads(ln)["step"] < step]
            self.selected.write_text("".join(ln + "\n" for ln in keep))
        return self.sampler.collect(trainer, items, seed, step)

    def rows(self, trainer: Any, rollout: Any, valid: list[list[bool]]) -> tuple[list[Row], dict[str, float]]:
        rewards = [[t.reward for t in g.trajectories] for g in rollout.groups]
        if self.cfg.reward_model:
            if self.reward_model is None:
                from evalgym.trainers.rm import RewardModelScorer
                self.reward_model = RewardModelScorer(self.cfg.reward_model)
            trajs = [t for g in rollout.groups for t in g.trajectories]
            flat = iter(v.reward for v in self.reward_model.verify_batch([t.problem for t in trajs],
                                                                        [t.final.completion.text for t in trajs]))
            rewards = [[next(flat) for _ in g.trajectories] for g in rollout.groups]
            valid = [[True] * len(g.trajectories) for g in rollout.groups]
        rows, kept = [], []
        for gi, g in enumerate(rollout.groups):
            best = select_best(rewards[gi], valid[gi], self.cfg.min_reward)
            for i, t in enumerate(g.trajectories):
                rows.append(Row(episode_tokens(t), advantage=1.0, group=gi, train=i == best,
                                labels={"env": short_env(g.problem.env_id), "domain": g.problem.domain}))
            if best is not None:
                t = g.trajectories[best]
                kept.append({"step": trainer.step, "env_id": g.problem.env_id, "index": g.problem.index,
                             "messages": [m.as_dict() for m in t.final.messages]
                             + [{"role": "assistant", "content": t.final.completion.text}],
                             "reward": rewards[gi][best], "verifier_reward": t.reward})
        if trainer.is_main and kept:
            self.selected.parent.mkdir(parents=True, exist_ok=True)
            with open(self.selected, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in kept))
        stats = {**rollout_stats(rollout, rewards), "kept_frac": len(kept) / max(len(rollout.groups), 1)}
        return rows, stats

    def meta(self) -> dict[str, Any]:
        return {"trainer": "rs-sft"}

    def close(self) -> None:
        self.sampler.close()


def train_rs_sft(cfg: RSSFTConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    return train_rl(cfg, RejectionSampling(cfg), progress=progress, after_save=after_save)
