"""DPO with a frozen reference model, on preference pairs.

Pairs come from a JSONL file of ``{"prompt": messages | str, "chosen": str, "rejected": str}`` rows
(``data``), or are built from evalgym envs (``envs``):

- ``pairing: reference`` — chosen is the env's reference solution, rejected the same solution with a
  wrong final answer (a controlled, verifiable pair);
- ``pairing: delta`` — Olmo 3's delta learning: chosen sampled from a stronger model
  (``chosen_model``), rejected from a weaker one (``rejected_model``), one sample each per prompt.

Sequence log-probabilities are sums over the completion tokens; the reference model's are computed
once before training.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Literal

import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.config import TrainConfig
from evalgym.trainers.losses import dpo_loss
from evalgym.trainers.loop import dist_state, load_model, run
from evalgym.trainers.sft import row_batches


class DPOConfig(TrainConfig):
    data: str | None = None
    envs: list[str] = []
    env_kwargs: dict[str, dict[str, Any]] = {}
    env_rows: int = 500
    pairing: Literal["reference", "delta"] = "reference"
    chosen_model: str | None = None        # delta pairing: the stronger model
    rejected_model: str | None = None      # delta pairing: the weaker model
    max_tokens: int = 64                   # delta pairing: sampling length
    beta: float = 0.1
    lr: float = 5e-4
    max_len: int = 512


def _wrong(reference: str, answer: str, rng: random.Random) -> str:
    """The reference with its final answer replaced by a different number (or a suffix)."""
    try:
        wrong = str(int(answer) + rng.choice([-3, -2, -1, 1, 2, 3]))
    except ValueError:
        wrong = answer + "1"
    k = reference.rfind(answer)
    return reference[:k] + wrong + reference[k + len(answer):] if k >= 0 else reference + f" \\boxed{{{wrong}}}"


def load_pairs(cfg: DPOConfig) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = []
    if cfg.data:
        from evalgym.data import jsonl_objects

        for n, row in jsonl_objects(cfg.data, "dpo.data"):
            try:
                prompt = row["prompt"]
                prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
                pairs.append({"prompt": prompt, "chosen": str(row["chosen"]), "rejected": str(row["rejected"])})
            except KeyError:
                raise EvalgymError(f"{cfg.data}:{n}: expected {{\"prompt\", \"chosen\", \"rejected\"}}") from None
    if cfg.envs:
        from evalgym.rollouts import make_env

        rng = random.Random(cfg.seed)
        problems = []
        for env_id in cfg.envs:
            env = make_env(env_id, **cfg.env_kwargs.get(env_id, {}))
            problems += [env.source.problem(i) for i in range(min(cfg.env_rows, env.source.size))]
        if cfg.pairing == "reference":
            for p in problems:
                if not p.reference or not p.answer:
                    raise EvalgymError(f"dpo.envs: {p.env_id} problem {p.id} has no reference/answer to pair")
                pairs.append({"prompt": [m.as_dict() for m in p.messages], "chosen": p.reference,
                              "rejected": _wrong(p.reference, p.answer, rng)})
        else:
            pairs += _delta_pairs(cfg, problems)
    if not pairs:
        raise EvalgymError("dpo: no preference pairs; give `data` or `envs`")
    return pairs


def _delta_pairs(cfg: DPOConfig, problems: list[Any]) -> list[dict[str, Any]]:
    from evalgym.policies.base import SamplingParams
    from evalgym.policies.hf import HFPolicy

    if not (cfg.chosen_model and cfg.rejected_model):
        raise EvalgymError("dpo.pairing 'delta' needs chosen_model (stronger) and rejected_model (weaker)")
    prompts = [list(p.messages) for p in problems]
    sp = SamplingParams(temperature=1.0, max_tokens=cfg.max_tokens, seed=cfg.seed)
    chosen = HFPolicy(cfg.chosen_model).generate(prompts, sp)
    rejected = HFPolicy(cfg.rejected_model).generate(prompts, sp)
    return [{"prompt": [m.as_dict() for m in p.messages], "chosen": c[0].text, "rejected": r[0].text}
            for p, c, r in zip(problems, chosen, rejected) if c[0].text != r[0].text]


def encode_pair(tokenizer: Any, prompt: list[dict[str, str]], completion: str, max_len: int) -> tuple[list[int], int]:
    from evalgym.policies.base import encode

    p = encode(tokenizer, prompt)
    c = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return (p + c)[:max_len], len(p)


def sequence_logps(model: Any, seqs: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """Sum of completion-token logprobs of each (ids, prompt_len)."""
    dev = next(model.parameters()).device
    L = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1))
    for b, (s, p) in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, p - 1:len(s) - 1] = 1
    attn = (torch.arange(L)[None, :] < torch.tensor([len(s) for s, _ in seqs])[:, None]).long()
    logits = model(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None].to(dev))[..., 0]
    return (logp * mask.to(dev)).sum(-1)


def train_dpo(cfg: DPOConfig, *, progress: bool = True) -> dict[str, Any]:
    dist_state()  # the CPU-aware accelerate state comes first
    pairs = load_pairs(cfg)
    model, tokenizer = load_model(cfg.model, cfg.dtype)
    enc = [(encode_pair(tokenizer, p["prompt"], p["chosen"], cfg.max_len),
            encode_pair(tokenizer, p["prompt"], p["rejected"], cfg.max_len)) for p in pairs]
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        ref = {}
        for lo in range(0, len(enc), 64):
            chunk = enc[lo:lo + 64]
            rc = sequence_logps(ref_model, [c for c, _ in chunk], tokenizer.pad_token_id)
            rr = sequence_logps(ref_model, [r for _, r in chunk], tokenizer.pad_token_id)
            for k in range(len(chunk)):
                ref[lo + k] = (float(rc[k]), float(rr[k]))
    del ref_model
    make_batch = row_batches(cfg, len(enc), "dpo")

    def loss_fn(model: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        pc = sequence_logps(model, [enc[i][0] for i in idx], tokenizer.pad_token_id)
        pr = sequence_logps(model, [enc[i][1] for i in idx], tokenizer.pad_token_id)
        dev = pc.device
        rc = torch.tensor([ref[i][0] for i in idx], device=dev)
        rr = torch.tensor([ref[i][1] for i in idx], device=dev)
        loss, metrics = dpo_loss(pc, pr, rc, rr, beta=cfg.beta)
        tokens = sum(len(enc[i][0][0]) + len(enc[i][1][0]) for i in idx)
        return loss, {**metrics, "tokens": float(tokens)}

    return run(cfg, make_batch=make_batch, loss_fn=loss_fn, model=model, tokenizer=tokenizer,
               extra_meta={"trainer": "dpo", "pairs": len(pairs), "pairing": cfg.pairing}, progress=progress)


def preference_margin(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], max_len: int = 512) -> float:
    """Mean log π(chosen) − log π(rejected) over pairs (for evaluation)."""
    with torch.no_grad():
        c = sequence_logps(model, [encode_pair(tokenizer, p["prompt"], p["chosen"], max_len) for p in pairs],
                           tokenizer.pad_token_id)
        r = sequence_logps(model, [encode_pair(tokenizer, p["prompt"], p["rejected"], max_len) for p in pairs],
                           tokenizer.pad_token_id)
    return float((c - r).mean())


