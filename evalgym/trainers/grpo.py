"""GRPO and its 2025 variants over one env or a weighted mixture of envs, on-policy.

Each optimizer step samples ``prompts_per_step`` problems (env chosen by the mixture weights),
``group_size`` completions each, from the model being trained (``backend: hf`` samples with the
trainer's own weights in memory; ``vllm`` gets the new weights pushed every step), grades them with
each env's verifier, turns rewards into group-normalized advantages and takes one clipped policy-
gradient step (each group's prompt runs once in its forward: ``sequence_logp``). Options (see
``losses.policy_loss``): Dr. GRPO (``scale_advantages: false``, ``aggregation: constant``), DAPO
(``clip_high: 0.28``, ``aggregation: token``, ``filter_zero_variance: true``, ``overlong_buffer``),
GSPO (``ratio_level: sequence``), KL to the starting model (``beta``), and truncated importance
correction of the engine's logprobs (``tis_cap``).

    evalgym train grpo --config grpo.yaml model=runs/sft/step_000600 envs='{arithmetic: 1.0}'
"""

from __future__ import annotations

import copy
import inspect
import random
from typing import Any, Literal

import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.trainers.config import TrainConfig
from evalgym.trainers.losses import group_advantages, overlong_penalty, policy_loss
from evalgym.trainers.loop import LoopState, dist_state, run


class GRPOConfig(TrainConfig):
    envs: dict[str, float] = {"arithmetic": 1.0}     # env id -> mixture weight
    env_kwargs: dict[str, dict[str, Any]] = {}
    env_seed: int = 0
    prompts_per_step: int = 8
    group_size: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    backend: Literal["hf", "vllm"] = "hf"
    scale_advantages: bool = True
    aggregation: Literal["token", "sequence", "constant"] = "token"
    ratio_level: Literal["token", "sequence"] = "token"
    clip_low: float = 0.2
    clip_high: float = 0.2
    beta: float = 0.0
    filter_zero_variance: bool = False
    overlong_buffer: int = 0
    tis_cap: float | None = None
    reward_model: str | None = None      # train on a reward model's scores (σ(score)) instead of the verifier's
    lr: float = 1e-4
    save_every: int = 25


def pick_problems(cfg: GRPOConfig, sizes: dict[str, int], step: int) -> list[tuple[str, int]]:
    """(env, index) pairs of one step: a pure function of (seed, step)."""
    rng = random.Random(cfg.seed * 1_000_003 + step)
    names = list(cfg.envs)
    weights = [cfg.envs[n] for n in names]
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise EvalgymError(f"grpo.envs: weights must be >= 0 with a positive sum, got {cfg.envs}")
    chosen = rng.choices(names, weights=weights, k=cfg.prompts_per_step)
    return [(name, rng.randrange(sizes[name])) for name in chosen]


def mixture_setup(cfg: Any, section: str) -> tuple[dict[str, Any], dict[str, int], int, int]:
    """The envs of a mixture trainer's ``envs``/``env_kwargs`` (a bad kwarg names the field), their
    sizes, and this process's (world size, rank), checking ``prompts_per_step`` splits evenly."""
    from evalgym.rollouts import make_env

    envs = {}
    for name in cfg.envs:
        try:
            envs[name] = make_env(name, **dict(cfg.env_kwargs.get(name, {})))
        except TypeError as e:
            raise EvalgymError(f"{section}.env_kwargs.{name}: {e}") from None
    ps = dist_state()
    world, rank = ps.num_processes, ps.process_index
    if cfg.prompts_per_step % world:
        raise EvalgymError(f"{section}.prompts_per_step {cfg.prompts_per_step} must be divisible by {world} processes")
    return envs, {n: e.source.size for n, e in envs.items()}, world, rank


def train_grpo(cfg: GRPOConfig, *, progress: bool = True) -> dict[str, Any]:
    from evalgym.envs.registry import resolve_id
    from evalgym.policies.hf import HFPolicy
    from evalgym.rollouts import collect_many

    envs, sizes, world, rank = mixture_setup(cfg, "grpo")
    sampling = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    holder: dict[str, Any] = {}

    def make_batch(step: int, micro: int, state: LoopState) -> dict[str, Any]:
        model = state.model
        tokenizer = state.tokenizer
        if cfg.beta and "ref" not in holder:
            holder["ref"] = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.backend == "hf":
            policy = HFPolicy.from_model(model, tokenizer, name=cfg.model)
        else:
            if "engine" not in holder:
                from evalgym.policies.vllm import VLLMPolicy
                holder["engine"] = VLLMPolicy(cfg.model, max_model_len=2048)
            policy = holder["engine"]
            policy.load_weights(model.state_dict())
        items = pick_problems(cfg, sizes, step * cfg.grad_accum + micro)[rank::world]
        was_training = model.training
        model.eval()
        result = collect_many(policy, [(envs[n], i) for n, i in items], n=cfg.group_size, sampling=sampling,
                              seed=cfg.seed * 1_000_003 + step * cfg.grad_accum + micro, policy_step=step)
        model.train(was_training)
        rewards = None
        if cfg.reward_model:
            if "rm" not in holder:
                from evalgym.trainers.rm import RewardModelScorer
                holder["rm"] = RewardModelScorer(cfg.reward_model)
            trajs = [t for g in result.groups for t in g.trajectories]
            verdicts = holder["rm"].verify_batch([t.problem for t in trajs], [t.final.completion.text for t in trajs])
            rewards = torch.tensor([v.reward for v in verdicts]).reshape(len(result.groups), -1)
        return build_batch(cfg, result, tokenizer.pad_token_id, rewards=rewards)

    def loss_fn(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        stats = batch["stats"]
        if batch["input_ids"] is None:  # every group filtered out: nothing to learn from this step
            zero = sum(p.sum() * 0.0 for p in model.parameters())
            return zero, {**stats, "tokens": 0.0, "clip_fraction": 0.0, "kl": 0.0, "ratio_mean": 1.0}
        dev = next(model.parameters()).device
        ids, attn, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev), batch["mask"].to(dev)
        # DDP expects one forward per backward: a wrapped model gets the plain forward
        share = not isinstance(model, torch.nn.parallel.DistributedDataParallel)
        new_logp = sequence_logp(model, ids, attn, mask, share_prompts=share)
        ref_logp = None
        if cfg.beta:
            with torch.no_grad():
                ref_logp = sequence_logp(holder["ref"], ids, attn, mask, share_prompts=share)
        behavior = batch["behavior_logp"].to(dev) if cfg.tis_cap else None
        loss, m = policy_loss(new_logp, new_logp.detach(), batch["advantages"].to(dev), mask,
                              clip_low=cfg.clip_low, clip_high=cfg.clip_high, ratio_level=cfg.ratio_level,
                              aggregation=cfg.aggregation, max_tokens=cfg.max_tokens, ref_logp=ref_logp,
                              beta=cfg.beta, behavior_logp=behavior, tis_cap=cfg.tis_cap or 2.0)
        return loss, {**stats, **m, "tokens": float(mask.sum())}

    try:
        return run(cfg, make_batch=make_batch, loss_fn=loss_fn,
                   extra_meta={"trainer": "grpo", "envs": {n: resolve_id(n) for n in envs}},
                   progress=progress)
    finally:
        if "engine" in holder:
            holder["engine"].close()


def sequence_logp(model: Any, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor, *,
                  share_prompts: bool = True) -> torch.Tensor:
    """Log-probabilities ``[B, L-1]`` of a :func:`build_batch` batch (position t scores token t+1), as
    one plain forward over ``ids`` gives them; zero outside ``mask`` (the completion tokens).

    With ``share_prompts``, consecutive rows with the same prompt (a group's G samples) run that
    prompt once: its KV cache is computed once and expanded to the group's rows, gradients flowing
    back through the expansion, and logits are taken at completion positions only. A group then
    costs one prompt and G completions instead of G prompts + completions; equal to the plain
    forward up to float rounding (tests/trainers/test_grpo.py)."""
    B, L = ids.shape
    prompt_lens = (mask.argmax(dim=1) + 1).tolist()      # every row has >= 1 completion token
    comp_lens = mask.sum(dim=1).long().tolist()
    firsts: list[int] = []                               # the first row of each distinct prompt
    group = []
    for b in range(B):
        f = firsts[-1] if firsts else None
        same = f is not None and prompt_lens[f] == prompt_lens[b] and torch.equal(ids[f, :prompt_lens[b]],
                                                                                   ids[b, :prompt_lens[b]])
        if not same:
            firsts.append(b)
        group.append(len(firsts) - 1)
    if not share_prompts or len(firsts) == B:
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0] * mask
    dev = ids.device
    Lp, Lc = max(prompt_lens[f] for f in firsts), max(comp_lens)
    p_ids = torch.zeros((len(firsts), Lp), dtype=ids.dtype, device=dev)   # padding: any id, masked out
    p_attn = torch.zeros((len(firsts), Lp), dtype=attn.dtype, device=dev)
    for g, f in enumerate(firsts):  # prompts left-padded: each ends at Lp - 1, where completions begin
        p_ids[g, Lp - prompt_lens[f]:] = ids[f, :prompt_lens[f]]
        p_attn[g, Lp - prompt_lens[f]:] = 1
    c_ids = torch.zeros((B, Lc), dtype=ids.dtype, device=dev)
    c_mask = torch.zeros((B, Lc), dtype=torch.bool, device=dev)
    for b in range(B):
        c_ids[b, :comp_lens[b]] = ids[b, prompt_lens[b]:prompt_lens[b] + comp_lens[b]]
        c_mask[b, :comp_lens[b]] = True
    # the prompts' logits are needed at their last position only
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(input_ids=p_ids, attention_mask=p_attn, position_ids=(p_attn.cumsum(-1) - 1).clamp(min=0),
                use_cache=True, **last_only)
    rows = torch.tensor(group, device=dev)
    cache = out.past_key_values
    cache.batch_select_indices(rows)                     # [groups] -> [B] rows; differentiable indexing
    positions = torch.tensor(prompt_lens, device=dev)[:, None] + torch.arange(Lc, device=dev)[None, :]
    c_out = model(input_ids=c_ids, attention_mask=torch.cat([p_attn[rows], c_mask.to(attn.dtype)], dim=1),
                  position_ids=positions, past_key_values=cache, use_cache=True)
    # completion token j is scored at the position before it: the prompt's last for j = 0
    logits = torch.cat([out.logits[rows, -1:], c_out.logits[:, :-1]], dim=1).float()
    logp = torch.log_softmax(logits, -1).gather(-1, c_ids[..., None])[..., 0]
    # rows' completion tokens in order, into their positions of the [B, L-1] layout
    return torch.zeros((B, L - 1), dtype=logp.dtype, device=dev).masked_scatter(mask.bool(), logp[c_mask])


def build_batch(cfg: GRPOConfig, result: Any, pad_id: int, rewards: torch.Tensor | None = None) -> dict[str, Any]:
    """Rewards → advantages → one padded batch of (prompt + completion) sequences of the last turn.
    ``rewards`` ([groups, G]) replaces the verifier's (a reward model's scores)."""
    groups = result.groups
    verifier_rewards = torch.tensor([[t.reward for t in g.trajectories] for g in groups], dtype=torch.float32)
    if rewards is None:
        rewards = verifier_rewards
    lengths = torch.tensor([[len(t.final.completion.token_ids) for t in g.trajectories] for g in groups])
    shaped = rewards + (overlong_penalty(lengths, cfg.max_tokens, cfg.overlong_buffer) if cfg.overlong_buffer else 0)
    adv = group_advantages(shaped, scale=cfg.scale_advantages)
    zero_var = (rewards.max(dim=1).values - rewards.min(dim=1).values) == 0
    keep = ~zero_var if cfg.filter_zero_variance else torch.ones(len(groups), dtype=torch.bool)
    stats = {"reward": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
             "verifier_reward": float(verifier_rewards.mean()),
             "zero_variance_frac": float(zero_var.float().mean()), "kept_groups_frac": float(keep.float().mean()),
             "truncation_rate": float(torch.tensor([t.truncated for g in groups for t in g.trajectories]).float().mean())}
    for env_id, d in result.stats.per_env.items():
        stats[f"reward/{env_id.split('/')[-1]}"] = d["mean_reward"]
    seqs = []
    for gi, g in enumerate(groups):
        if not keep[gi]:
            continue
        for ti, t in enumerate(g.trajectories):
            c = t.final.completion
            if not c.token_ids:
                continue
            seqs.append((list(c.prompt_token_ids), list(c.token_ids), list(c.logprobs), float(adv[gi, ti])))
    if not seqs:
        return {"input_ids": None, "stats": stats}
    L = max(len(p) + len(c) for p, c, _, _ in seqs)
    B = len(seqs)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    mask = torch.zeros((B, L - 1))
    behavior = torch.zeros((B, L - 1))
    for b, (p, c, lp, _) in enumerate(seqs):
        ids[b, :len(p) + len(c)] = torch.tensor(p + c)
        attn[b, :len(p) + len(c)] = 1
        mask[b, len(p) - 1:len(p) - 1 + len(c)] = 1  # position t predicts token t+1
        if lp:
            behavior[b, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(lp)
    return {"input_ids": ids, "attention_mask": attn, "mask": mask, "behavior_logp": behavior,
            "advantages": torch.tensor([a for *_, a in seqs]), "stats": stats}
