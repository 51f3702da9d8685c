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
from evalgym.trainers.loop import dist_state, run
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
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(prev)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_response(tokenizer: Any, prompt: list[dict[str, str]], response: str, max_len: int) -> list[int]:
    text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])[-max_len:]


def scores(model: Any, seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    dev = next(model.parameters()).device
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        attn[b, :len(s)] = 1
    return model(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits[:, 0].float()


def train_rm(cfg: RMConfig, *, progress: bool = True) -> dict[str, Any]:
    dist_state()  # the CPU-aware accelerate state comes first
    pairs = load_pairs(cfg)
    torch.manual_seed(cfg.seed)  # the new scalar head is initialized here: seed it, whatever ran before
    model, tokenizer = load_reward_model(cfg.model, cfg.dtype)
    enc = [(encode_response(tokenizer, p["prompt"], p["chosen"], cfg.max_len),
            encode_response(tokenizer, p["prompt"], p["rejected"], cfg.max_len)) for p in pairs]
    make_batch = row_batches(cfg, len(enc), "rm")

    def loss_fn(model: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        s = scores(model, [enc[i][0] for i in idx] + [enc[i][1] for i in idx], tokenizer.pad_token_id)
        loss, metrics = bradley_terry_loss(s[:len(idx)], s[len(idx):])
        return loss, {**metrics, "tokens": float(sum(len(enc[i][0]) + len(enc[i][1]) for i in idx))}

    return run(cfg, make_batch=make_batch, loss_fn=loss_fn, model=model, tokenizer=tokenizer,
               load_fn=load_reward_model, extra_meta={"trainer": "rm", "pairs": len(pairs)}, progress=progress)


class RewardModelScorer:
    """A trained reward model behind the verifier protocol (``verify`` / ``verify_batch``)."""

    name = "reward-model"

    def __init__(self, path: str, *, max_len: int = 512, batch_size: int = 32):
        self.model, self.tokenizer = load_reward_model(path)
        self.model.eval()
        self.path, self.max_len, self.batch_size = path, max_len, batch_size

    @torch.no_grad()
    def score_batch(self, problems: list[Problem], responses: list[str]) -> list[float]:
        seqs = [encode_response(self.tokenizer, [m.as_dict() for m in p.messages], r, self.max_len)
                for p, r in zip(problems, responses)]
        out: list[float] = []
        for lo in range(0, len(seqs), self.batch_size):
            out += scores(self.model, seqs[lo:lo + self.batch_size], self.tokenizer.pad_token_id).tolist()
        return out

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        return [Verdict(reward=float(torch.sigmoid(torch.tensor(s))), correct=s > 0, details={"score": s},
                        verifier=self.name, verifier_version=self.path)
                for s in self.score_batch(problems, responses)]

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.verify_batch([problem], [response])[0]
