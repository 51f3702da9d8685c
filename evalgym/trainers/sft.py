"""Supervised fine-tuning on chat data, loss on assistant tokens only.

Data: a JSONL file of ``{"messages": [...]}`` rows (``data``), and/or the reference solutions of
evalgym envs (``envs``: each problem's prompt with its reference as the assistant turn; procedural
envs give unlimited rows, seeded by ``env_seed``).

    evalgym train sft --config sft.yaml steps=200 lr=1e-3
    train_sft(SFTConfig(model="tiny", envs=["arithmetic"], steps=200, run_dir="runs/sft"))
"""

from __future__ import annotations

import random
from typing import Any

import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.config import TrainConfig
from evalgym.trainers.losses import sft_loss
from evalgym.trainers.loop import LoopState, dist_state, run


class SFTConfig(TrainConfig):
    data: str | None = None           # JSONL of {"messages": [...]} rows
    envs: list[str] = []              # env ids whose references become assistant turns
    env_rows: int = 2000              # problems per env
    env_seed: int = 0                 # procedural envs: problem i is Random(env_seed + i)
    env_kwargs: dict[str, dict[str, Any]] = {}
    max_len: int = 512                # tokens per sequence (longer rows are truncated)


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 on assistant tokens (their
    content and end-of-turn token), found by rendering each prefix."""
    def render(msgs: list[dict[str, str]], gen: bool) -> list[int]:
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=gen, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    ids = render(messages, False)
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(render(messages[:i], True))
        end = len(render(messages[:i + 1], False))
        if ids[:end] != render(messages[:i + 1], False):
            raise EvalgymError("the chat template does not render conversations prefix-consistently; "
                               "assistant-only loss needs it")
        for k in range(start, min(end, len(ids))):
            mask[k] = 1
    return ids[:max_len], mask[:max_len]


def load_rows(cfg: SFTConfig) -> list[list[dict[str, str]]]:
    rows: list[list[dict[str, str]]] = []
    if cfg.data:
        from evalgym.data import jsonl_objects

        for n, row in jsonl_objects(cfg.data, "sft.data"):
            msgs = row.get("messages")
            if not (isinstance(msgs, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in msgs)):
                raise EvalgymError(f"{cfg.data}:{n}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}}")
            if not any(m["role"] == "assistant" for m in msgs):
                raise EvalgymError(f"{cfg.data}:{n}: no assistant message to learn from")
            rows.append([{"role": m["role"], "content": m["content"]} for m in msgs])
    from evalgym.rollouts import make_env

    for env_id in cfg.envs:
        env = make_env(env_id, **{**({"seed": cfg.env_seed} if _takes_seed(env_id) else {}), **cfg.env_kwargs.get(env_id, {})})
        for i in range(min(cfg.env_rows, env.source.size)):
            p = env.source.problem(i)
            if not p.reference:
                raise EvalgymError(f"sft.envs: {env_id} problem {p.id} has no reference solution to learn from")
            rows.append([m.as_dict() for m in p.messages] + [{"role": "assistant", "content": p.reference}])
    if not rows:
        raise EvalgymError("sft: no training rows; give `data` (a JSONL file) or `envs`")
    return rows


def _takes_seed(env_id: str) -> bool:
    import inspect

    from evalgym.envs.registry import CATALOG, resolve_id

    return "seed" in inspect.signature(CATALOG[resolve_id(env_id)].source).parameters


def batch_indices(n_rows: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Rows of optimizer step ``step``: epochs of seeded permutations, a pure function of the step."""
    out = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n_rows)
        perm = list(range(n_rows))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        take = min(batch_size - len(out), n_rows - offset)
        out.extend(perm[offset:offset + take])
        pos += take
    return out


def row_batches(cfg: TrainConfig, n_rows: int, trainer: str):
    """``make_batch(step, micro, state) -> this process's row indices`` for trainers over a fixed set
    of rows: seeded epochs (``batch_indices``), the global batch split into ``grad_accum``
    micro-batches and then across processes."""
    ps = dist_state()
    world, rank = ps.num_processes, ps.process_index
    micro_size = cfg.batch_size // cfg.grad_accum
    if micro_size * cfg.grad_accum != cfg.batch_size or micro_size % world:
        raise EvalgymError(f"{trainer}.batch_size {cfg.batch_size} must split evenly into grad_accum "
                           f"{cfg.grad_accum} micro-batches over {world} processes")

    def make_batch(step: int, micro: int, state: LoopState) -> list[int]:
        return batch_indices(n_rows, micro_size, cfg.seed, step * cfg.grad_accum + micro)[rank::world]

    return make_batch


def pad_batch(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    L = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), L), dtype=torch.float32)
    for b, (s, m) in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        attn[b, :len(s)] = 1
        loss_mask[b, :len(m)] = torch.tensor(m, dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


def length_chunks(seqs: list[tuple[list[int], list[int]]], min_rows: int = 8,
                  max_waste: float = 0.25) -> list[list[tuple[list[int], list[int]]]]:
    """Rows sorted by length and cut into chunks of at least ``min_rows`` wherever padding the whole
    batch to its longest row would waste more than ``max_waste`` of its positions (e.g. 90-token
    arithmetic rows next to 225-token countdown rows); otherwise one chunk."""
    longest = max((len(r[0]) for r in seqs), default=0)
    if not seqs or sum(len(r[0]) for r in seqs) >= (1 - max_waste) * longest * len(seqs):
        return [list(seqs)]   # in the batch's own order: the same padded forward as without chunks
    rows = sorted(seqs, key=lambda r: len(r[0]))
    chunks, start = [], 0
    while start < len(rows):
        end = min(len(rows), start + min_rows)
        if len(rows) - end < min_rows:
            end = len(rows)
        chunks.append(rows[start:end])
        start = end
    return chunks


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t >= 1, shape [B, L-1]."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]


def batch_sft_loss(model: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int,
                   chunked: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch's token-mean NLL over its assistant tokens. ``chunked``: summed over
    ``length_chunks`` (the same value and gradient as one padded forward, without computing the short
    rows' padding)."""
    chunks = [pad_batch(c, pad_id) for c in (length_chunks(seqs) if chunked else [seqs])]
    dev = next(model.parameters()).device
    total = sum(float(c["loss_mask"][:, 1:].sum()) for c in chunks)
    loss = torch.zeros((), device=dev)
    for chunk in chunks:
        chunk = {k: v.to(dev) for k, v in chunk.items()}
        logp = token_logprobs(model, chunk["input_ids"], chunk["attention_mask"])
        mask = chunk["loss_mask"][:, 1:]
        loss = loss + sft_loss(logp, mask) * (float(mask.sum()) / max(total, 1.0))
    return loss, {"tokens": total}


def train_sft(cfg: SFTConfig, *, progress: bool = True) -> dict[str, Any]:
    rows = load_rows(cfg)
    tokenizer = _tokenizer_of(cfg.model)
    encoded = [tokenize_chat(tokenizer, r, cfg.max_len) for r in rows]
    rows_of = row_batches(cfg, len(encoded), "sft")

    def make_batch(step: int, micro: int, state: LoopState) -> list[tuple[list[int], list[int]]]:
        return [encoded[i] for i in rows_of(step, micro, state)]

    def loss_fn(model: Any, seqs: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, dict[str, float]]:
        # DDP expects one forward per backward: a wrapped model gets one padded forward
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        return batch_sft_loss(model, seqs, tokenizer.pad_token_id, chunked=not ddp)

    return run(cfg, make_batch=make_batch, loss_fn=loss_fn, tokenizer=tokenizer,
               extra_meta={"trainer": "sft", "rows": len(rows)}, progress=progress)


def _tokenizer_of(name: str) -> Any:
    from transformers import AutoTokenizer

    from evalgym.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(name))
