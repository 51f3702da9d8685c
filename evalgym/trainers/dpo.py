"""DPO with a frozen reference model, on preference pairs.

Pairs come from a JSONL file of ``{"prompt": messages | str, "chosen": str, "rejected": str}`` rows
(``data``), or are built from evalgym envs (``envs``):

- ``pairing: reference`` — chosen is the env's reference solution, rejected the same solution with a
  wrong final answer (a controlled, verifiable pair);
- ``pairing: delta`` — Olmo 3's delta learning: chosen sampled from a stronger model
  (``chosen_model``), rejected from a weaker one (``rejected_model``), one sample each per prompt.

Sequence log-probabilities are sums over the completion tokens, chosen and rejected of a step in one forward
(packed end to end: ``packing``); the reference is the run's start model (whatever was resumed since), its
log-probabilities computed once before training.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import torch
from pydantic import Field

from evalgym.errors import EvalgymError
from evalgym.trainers.batch import pack, padded, per_sequence_sum
from evalgym.trainers.config import RowsConfig
from evalgym.trainers.losses import dpo_loss
from evalgym.trainers.loop import dist_state, load_model, run
from evalgym.trainers.sft import row_batches
from evalgym.types import content_hash


class DPOConfig(RowsConfig):
    data: str | None = None
    envs: list[str] = []
    env_kwargs: dict[str, dict[str, Any]] = {}
    env_rows: int = Field(500, ge=1)
    pairing: Literal["reference", "delta"] = "reference"
    chosen_model: str | None = None        # delta pairing: the stronger model
    rejected_model: str | None = None      # delta pairing: the weaker model
    max_tokens: int = Field(64, ge=1)      # delta pairing: sampling length
    beta: float = Field(0.1, gt=0)
    lr: float = Field(5e-4, gt=0)


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
                pairs.append({"prompt": prompt, "chosen": str(row["chosen"]), "rejected": str(row["rejected"]),
                              **({"env_id": row["env_id"], "hash": row["hash"]} if row.get("env_id") and row.get("hash") else {})})
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
                              "rejected": _wrong(p.reference, p.answer, rng), "env_id": p.env_id,
                              "hash": content_hash(p)})
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
    return [{"prompt": [m.as_dict() for m in p.messages], "chosen": c[0].text, "rejected": r[0].text,
             "env_id": p.env_id, "hash": content_hash(p)}
            for p, c, r in zip(problems, chosen, rejected) if c[0].text != r[0].text]


def encode_pair(tokenizer: Any, prompt: list[dict[str, str]], completion: str, max_len: int) -> tuple[list[int], list[int]]:
    """(ids, scored) of prompt + completion + EOS: ``scored`` is 1 on the completion's tokens."""
    from evalgym.policies.base import encode

    p = encode(tokenizer, prompt)
    c = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    ids = (p + c)[:max_len]
    return ids, [0] * min(len(p), len(ids)) + [1] * max(0, len(ids) - len(p))


def sequence_logps(scorer: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int, *,
                   packing: bool = True) -> torch.Tensor:
    """Sum of the completion tokens' log-probs of each ``(ids, scored)``, all sequences in one forward
    (packed end to end, or one padded batch)."""
    dev = next(scorer.parameters()).device
    if packing:
        p = pack(seqs, pad_id)
        logp = scorer(p.tokens_RW.to(dev), None, p.mask_RT.to(dev), position_ids_BL=p.positions_RW.to(dev))
        return per_sequence_sum(logp, p)
    b = padded(seqs, pad_id)
    return scorer(b["tokens"].to(dev), b["attention"].to(dev), b["mask"].to(dev)).sum(-1)


def train_dpo(cfg: DPOConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    from evalgym.logprobs import CausalLMScorer

    dist_state()  # the CPU-aware accelerate state comes first
    pairs = load_pairs(cfg)
    start, tokenizer = load_model(cfg.model, cfg.dtype)    # the reference: the run's start model, always
    enc = [(encode_pair(tokenizer, p["prompt"], p["chosen"], cfg.max_len),
            encode_pair(tokenizer, p["prompt"], p["rejected"], cfg.max_len)) for p in pairs]
    ref_scorer = CausalLMScorer(start.eval())
    ref: dict[int, tuple[float, float]] = {}
    with torch.no_grad():
        for lo in range(0, len(enc), 32):
            chunk = enc[lo:lo + 32]
            both = sequence_logps(ref_scorer, [c for c, _ in chunk] + [r for _, r in chunk], tokenizer.pad_token_id,
                                  packing=cfg.packing)
            for k in range(len(chunk)):
                ref[lo + k] = (float(both[k]), float(both[len(chunk) + k]))
    start.train()
    make_batch = row_batches(cfg, len(enc), "dpo",
                             [(pr["env_id"], pr["hash"]) if "hash" in pr else None for pr in pairs])

    def loss_fn(scorer: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        both = sequence_logps(scorer, [enc[i][0] for i in idx] + [enc[i][1] for i in idx], tokenizer.pad_token_id,
                              packing=cfg.packing)   # chosen and rejected in one forward
        pc, pr = both[:len(idx)], both[len(idx):]
        dev = pc.device
        rc = torch.tensor([ref[i][0] for i in idx], device=dev)
        rr = torch.tensor([ref[i][1] for i in idx], device=dev)
        loss, metrics = dpo_loss(pc, pr, rc, rr, beta=cfg.beta)
        tokens = sum(len(enc[i][0][0]) + len(enc[i][1][0]) for i in idx)
        return loss, {**metrics, "tokens": float(tokens)}

    return run(cfg, name="dpo", make_batch=make_batch, loss_fn=loss_fn, model=start, tokenizer=tokenizer,
               extra_meta={"pairs": len(pairs), "pairing": cfg.pairing}, progress=progress, after_save=after_save)


def preference_margin(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], max_len: int = 512) -> float:
    """Mean log π(chosen) − log π(rejected) over pairs (for evaluation)."""
    from evalgym.logprobs import CausalLMScorer

    scorer = CausalLMScorer(model)
    with torch.no_grad():
        both = sequence_logps(scorer, [encode_pair(tokenizer, p["prompt"], p["chosen"], max_len) for p in pairs]
                              + [encode_pair(tokenizer, p["prompt"], p["rejected"], max_len) for p in pairs],
                              tokenizer.pad_token_id)
    return float((both[:len(pairs)] - both[len(pairs):]).mean())
