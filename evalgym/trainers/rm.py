"""A Bradley–Terry reward model on preference pairs, and the scorer that makes it a reward source.

    train_rm(RMConfig(model="runs/sft/step_000600", envs=["arithmetic"], run_dir="runs/rm"))
    scorer = RewardModelScorer("runs/rm/step_000100")
    scorer.verify(problem, "... \\boxed{12}")      # Verdict(reward=σ(score), correct=score > 0, verifier="reward-model")

The model is the policy's transformer with a scalar head (``AutoModelForSequenceClassification``,
``num_labels=1``) reading the last token of prompt + response; pairs are the same as DPO's
(``dpo.load_pairs``). GRPO takes ``reward_model: PATH`` to train on its scores instead of the env's
verifier (the InstructGPT stage).
"""

from __future__ import annotations

from typing import Any

import torch

from evalgym.trainers.dpo import DPOConfig, load_pairs
from evalgym.trainers.losses import bradley_terry_loss
from evalgym.trainers.loop import PARAM_DTYPES, dist_state, run
from evalgym.trainers.sft import row_batches
from evalgym.types import Problem, Verdict


class RMConfig(DPOConfig):
    lr: float = 1e-3


def load_reward_model(name: str, dtype: str = "auto") -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from evalgym.models import resolve_model

    hf_logging.disable_progress_bar()
    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    prev = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point of training it
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=PARAM_DTYPES[dtype])
    finally:
        hf_logging.set_verbosity(prev)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_response(tokenizer: Any, prompt: list[dict[str, str]], response: str, max_len: int) -> list[int]:
    text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])[-max_len:]


class RewardScorer(torch.nn.Module):
    """The reward model as the trained module: scores of the last token of each sequence, several sequences
    packed end to end in a row (padding-free) or one per padded row."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, tokens_RW: torch.Tensor, attention_RW: torch.Tensor | None, last_N: torch.Tensor,
                row_N: torch.Tensor, positions_RW: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.model.base_model(input_ids=tokens_RW, attention_mask=attention_RW, position_ids=positions_RW,
                                       use_cache=False).last_hidden_state
        return self.model.score(hidden[row_N, last_N]).float()[:, 0]


def scores(scorer: Any, seqs: list[list[int]], pad_id: int, *, packing: bool = True) -> torch.Tensor:
    """The reward model's score of each token sequence, all in one forward."""
    from evalgym.trainers.batch import pack

    dev = next(scorer.parameters()).device
    if packing:
        p = pack([(s, [0] * len(s)) for s in seqs], pad_id)
        rows = torch.tensor([r for r, _, _ in p.spans], device=dev)
        last = torch.tensor([a + n - 1 for _, a, n in p.spans], device=dev)
        return scorer(p.tokens_RW.to(dev), None, last, rows, positions_RW=p.positions_RW.to(dev))
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        attn[b, :len(s)] = 1
    return scorer(ids.to(dev), attn.to(dev), torch.tensor([len(s) - 1 for s in seqs], device=dev),
                  torch.arange(len(seqs), device=dev))


def train_rm(cfg: RMConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    dist_state()  # the CPU-aware accelerate state comes first
    pairs = load_pairs(cfg)
    torch.manual_seed(cfg.seed)  # the new scalar head is initialized here: seed it, whatever ran before
    model, tokenizer = load_reward_model(cfg.model, cfg.dtype)
    enc = [(encode_response(tokenizer, p["prompt"], p["chosen"], cfg.max_len),
            encode_response(tokenizer, p["prompt"], p["rejected"], cfg.max_len)) for p in pairs]
    make_batch = row_batches(cfg, len(enc), "rm",
                             [(pr["env_id"], pr["hash"]) if "hash" in pr else None for pr in pairs])

    def loss_fn(scorer: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        s = scores(scorer, [enc[i][0] for i in idx] + [enc[i][1] for i in idx], tokenizer.pad_token_id,
                   packing=cfg.packing)
        loss, metrics = bradley_terry_loss(s[:len(idx)], s[len(idx):])
        return loss, {**metrics, "tokens": float(sum(len(enc[i][0]) + len(enc[i][1]) for i in idx))}

    return run(cfg, name="rm", make_batch=make_batch, loss_fn=loss_fn, model=model, tokenizer=tokenizer,
               wrap=RewardScorer, load_fn=load_reward_model, extra_meta={"pairs": len(pairs)}, progress=progress,
               after_save=after_save)


class RewardModelScorer:
    """A trained reward model behind the verifier protocol (``verify`` / ``verify_batch``)."""

    name = "reward-model"

    def __init__(self, path: str, *, max_len: int = 512, batch_size: int = 32):
        model, self.tokenizer = load_reward_model(path)
        self.model = RewardScorer(model.eval())
        self.path, self.max_len, self.batch_size = path, max_len, batch_size

    @torch.no_grad()
    def score_batch(self, problems: list[Problem], responses: list[str]) -> list[float]:
        seqs = [encode_response(self.tokenizer, [m.as_dict() for m in p.messages], r, self.max_len)
                for p, r in zip(problems, responses)]
        out: list[float] = []
        for lo in range(0, len(seqs), self.batch_size):
            out += scores(self.model, seqs[lo:lo + self.batch_size], self.tokenizer.pad_token_id, packing=False).tolist()
        return out

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        return [Verdict(reward=float(torch.sigmoid(torch.tensor(s))), correct=s > 0, details={"score": s},
                        verifier=self.name, verifier_version=self.path)
                for s in self.score_batch(problems, responses)]

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.verify_batch([problem], [response])[0]
