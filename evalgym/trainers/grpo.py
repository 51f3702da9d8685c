"""GRPO and its 2025 variants over one env or a weighted mixture of envs: an advantage function for the one
RL loop (``rl.py``).

Each step samples ``prompts_per_step`` problems, ``group_size`` completions each, from the model being
trained (``backend: hf`` samples with the trainer's weights in memory; ``vllm`` gets the new weights pushed
each step), grades them with each env's verifier (or a reward model: ``reward_model: DIR``, σ(score) as the
reward — the InstructGPT stage), and turns each group's rewards into advantages: ``(r − mean) / std``
(``scale_advantages: false``: Dr. GRPO's ``r − mean``). The loop then makes ``minibatches × epochs`` clipped
updates (``losses.policy_loss``). Options: Dr. GRPO (``scale_advantages: false``, ``aggregation:
constant``), DAPO (``clip_high: 0.28``, ``aggregation: token``, ``filter_zero_variance: true``,
``overlong_buffer``), GSPO (``ratio_level: sequence``), KL to the run's start model (``beta``), truncated
importance correction against the sampler's log-probs (``tis_cap``). A sample whose grade failed (timeout,
crash) is left out of its group's baseline and of the loss, and counted.

    evalgym train grpo --config grpo.yaml model=runs/sft/step_000600 envs='{arithmetic: 1.0}' minibatches=4
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator

from evalgym.trainers.batch import Row, episode_tokens
from evalgym.trainers.config import RLConfig
from evalgym.trainers.losses import group_advantages, overlong_penalty
from evalgym.trainers.rl import StudentSampler, rollout_stats, short_env, train_rl
from evalgym.trainers.rl import mixture_setup, pick_problems  # noqa: F401  (re-exported: older imports)


class GRPOConfig(RLConfig):
    scale_advantages: bool = True
    filter_zero_variance: bool = False
    overlong_buffer: int = Field(0, ge=0)
    reward_model: str | None = None      # train on a reward model's scores (σ(score)) instead of the verifier's
    lr: float = Field(1e-4, gt=0)
    save_every: int = Field(25, ge=1)

    @model_validator(mode="after")
    def _group(self) -> GRPOConfig:
        if self.group_size < 2:
            raise ValueError(f"group_size: GRPO's baseline is the group's mean, it needs >= 2 samples, got "
                             f"{self.group_size}")
        if self.overlong_buffer >= self.max_tokens:
            raise ValueError(f"overlong_buffer: must be < max_tokens {self.max_tokens}, got {self.overlong_buffer}")
        return self


def grpo_rows(cfg: GRPOConfig, rollout: Any, valid: list[list[bool]],
              rewards: list[list[float]] | None = None) -> tuple[list[Row], dict[str, float]]:
    """Group-normalized advantages over each group's samples whose grade ran (``valid``); ``rewards``
    replaces the verifier's (a reward model's scores)."""
    rows: list[Row] = []
    zero_var = kept = 0
    for gi, g in enumerate(rollout.groups):
        r_all = rewards[gi] if rewards is not None else [t.reward for t in g.trajectories]
        members = [i for i, ok in enumerate(valid[gi]) if ok]
        r = torch.tensor([r_all[i] for i in members], dtype=torch.float32)
        if cfg.overlong_buffer and len(members):
            lengths = torch.tensor([len(g.trajectories[i].final.completion.token_ids) for i in members])
            r = r + overlong_penalty(lengths, cfg.max_tokens, cfg.overlong_buffer)
        flat = len(members) < 2 or float(r.max() - r.min()) == 0.0
        zero_var += flat
        adv = group_advantages(r[None], scale=cfg.scale_advantages)[0] if len(members) else r
        use = not (flat and cfg.filter_zero_variance)
        kept += use
        a_of = dict(zip(members, adv.tolist()))
        for i, t in enumerate(g.trajectories):
            rows.append(Row(episode_tokens(t), advantage=a_of.get(i, 0.0), group=gi, train=use and i in a_of,
                            labels={"env": short_env(g.problem.env_id), "domain": g.problem.domain}))
    n = max(len(rollout.groups), 1)
    stats = {**rollout_stats(rollout, rewards), "zero_variance_frac": zero_var / n, "kept_groups_frac": kept / n}
    return rows, stats


class GRPO:
    name = "grpo"

    def __init__(self, cfg: GRPOConfig):
        self.cfg = cfg
        self.sampler = StudentSampler(cfg)
        self.reward_model: Any = None

    def sample(self, trainer: Any, items: list[tuple[Any, int]], seed: int, step: int) -> Any:
        return self.sampler.collect(trainer, items, seed, step)

    def rows(self, trainer: Any, rollout: Any, valid: list[list[bool]]) -> tuple[list[Row], dict[str, float]]:
        rewards = None
        if self.cfg.reward_model:
            if self.reward_model is None:
                from evalgym.trainers.rm import RewardModelScorer
                self.reward_model = RewardModelScorer(self.cfg.reward_model)
            trajs = [t for g in rollout.groups for t in g.trajectories]
            scores = iter(v.reward for v in self.reward_model.verify_batch([t.problem for t in trajs],
                                                                          [t.final.completion.text for t in trajs]))
            rewards = [[next(scores) for _ in g.trajectories] for g in rollout.groups]
            valid = [[True] * len(g.trajectories) for g in rollout.groups]   # the reward model always scores
        return grpo_rows(self.cfg, rollout, valid, rewards)

    def meta(self) -> dict[str, Any]:
        return {"trainer": "grpo"}

    def close(self) -> None:
        self.sampler.close()


def train_grpo(cfg: GRPOConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    return train_rl(cfg, GRPO(cfg), progress=progress, after_save=after_save)
