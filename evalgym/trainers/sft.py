"""Supervised fine-tuning on chat data, loss on assistant tokens only.

Data: chat rows ``{"messages": [...]}`` (``data``: a JSONL file, parquet, or an HF dataset folder), and/or
the reference solutions of evalgym envs (``envs``: each problem's prompt with its reference as the assistant
turn; procedural envs give unlimited rows, seeded by ``env_seed``; an agentic env's row is its reference
tool-calling episode, played in its sandbox, with its tools). A row may carry ``tools`` (OpenAI specs): it is
rendered as rollouts render it (the template's ``tools=``, or the Hermes fallback of ``render_chat``).
A step's rows are packed end to end into padding-free rows (``packing: true``; positions restart per
sequence, attention stays within it), one forward.

    evalgym train sft --config sft.yaml steps=200 lr=1e-3
    train_sft(SFTConfig(model="tiny", envs=["arithmetic"], steps=200, run_dir="runs/sft"))
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import Field

from evalgym.errors import EvalgymError
from evalgym.trainers.batch import pack, padded
from evalgym.trainers.config import RowsConfig
from evalgym.trainers.loop import LoopState, dist_state, run
from evalgym.types import content_hash


class SFTConfig(RowsConfig):
    data: str | None = None           # chat rows: JSONL / parquet / HF dataset folder of {"messages": [...]}
    envs: list[str] = []              # env ids whose references become assistant turns
    env_rows: int = Field(2000, ge=1)  # problems per env
    env_seed: int = Field(0, ge=0)    # procedural envs: problem i is Random(env_seed + i)
    env_kwargs: dict[str, dict[str, Any]] = {}


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int,
                  tools: list[dict[str, Any]] | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 on assistant tokens (their
    content and end-of-turn token), found by rendering each prefix."""
    from evalgym.policies.tool_template import render as render_text   # = apply_chat_template without tools

    def render(msgs: list[dict[str, str]], gen: bool) -> list[int]:
        text = render_text(tokenizer, msgs, tools, gen)
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


def load_rows(cfg: SFTConfig) -> tuple[list[list[dict[str, str]]], list[Any], list[Any]]:
    """The chat rows, the env ``Problem`` each came from (a data row: its ``(env_id, hash)`` when it names
    them, as ``evalgym synth`` rows do, so trained_problems.json lists them; else None) and each row's tools."""
    rows: list[list[dict[str, str]]] = []
    problems: list[Any] = []
    tools: list[Any] = []
    if cfg.data:
        from evalgym.data import jsonl_objects

        for n, row in jsonl_objects(cfg.data, "sft.data"):
            msgs = row.get("messages")
            if not (isinstance(msgs, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in msgs)):
                raise EvalgymError(f"{cfg.data}:{n}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}}")
            if not any(m["role"] == "assistant" for m in msgs):
                raise EvalgymError(f"{cfg.data}:{n}: no assistant message to learn from")
            rows.append([{"role": m["role"], "content": m["content"]} for m in msgs])
            problems.append((row["env_id"], row["hash"]) if row.get("env_id") and row.get("hash") else None)
            if not isinstance(row.get("tools") or [], list):
                raise EvalgymError(f"{cfg.data}:{n}: tools: expected a list of tool specs")
            tools.append(row.get("tools") or None)
    from evalgym.rollouts import make_env

    if cfg.env_seed and not any(_takes_seed(e) for e in cfg.envs):
        raise EvalgymError(f"sft.env_seed: {cfg.env_seed}, but none of envs {cfg.envs} is procedural (seeded)")
    for env_id in cfg.envs:
        kwargs = {**({"seed": cfg.env_seed} if _takes_seed(env_id) else {}), **cfg.env_kwargs.get(env_id, {})}
        env = make_env(env_id, **kwargs)
        specs = getattr(env, "tool_specs", None)     # an agentic env: its reference episodes, tool replies real
        n = min(cfg.env_rows, env.source.size)
        for i in range(n):
            p = env.source.problem(i)
            if not p.reference:
                raise EvalgymError(f"sft.envs: {env_id} problem {p.id} has no reference solution to learn from")
            if specs is None:
                rows.append([m.as_dict() for m in p.messages] + [{"role": "assistant", "content": p.reference}])
            problems.append(p)
            tools.append(specs)
        if specs is not None:
            from evalgym.agentic.demos import reference_chats

            rows += reference_chats(lambda: make_env(env_id, **kwargs), range(n))
        env.close()
    if not rows:
        raise EvalgymError("sft: no training rows; give `data` (a JSONL file) or `envs`")
    return rows, problems, tools


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


def row_batches(cfg: RowsConfig, n_rows: int, trainer: str,
                trained: Sequence[tuple[str, str] | None] | None = None) -> Callable[[int, int, LoopState], list[int]]:
    """``make_batch(step, micro, state) -> this process's row indices`` for trainers over a fixed set
    of rows: seeded epochs (``batch_indices``), the global batch split into ``grad_accum``
    micro-batches and then across processes. ``trained[i]``: (env id, content hash) of the problem row i
    comes from (None: not from an env), recorded in the loop state as the row is used."""
    ps = dist_state()
    world, rank = ps.num_processes, ps.process_index
    micro_size = cfg.batch_size // cfg.grad_accum
    if micro_size * cfg.grad_accum != cfg.batch_size or micro_size % world:
        raise EvalgymError(f"{trainer}.batch_size {cfg.batch_size} must split evenly into grad_accum "
                           f"{cfg.grad_accum} micro-batches over {world} processes")

    def make_batch(step: int, micro: int, state: LoopState) -> list[int]:
        idx = batch_indices(n_rows, micro_size, cfg.seed, step * cfg.grad_accum + micro)[rank::world]
        for i in idx if trained is not None else ():
            if trained[i] is not None:
                state.trained.setdefault(trained[i][0], set()).add(trained[i][1])
        return idx

    return make_batch


def sft_loss_of(scorer: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int, *, packing: bool,
                num_tokens: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-mean NLL of the assistant tokens of ``seqs`` (``(ids, mask)`` rows), in one forward: packed
    rows (padding-free) or one padded batch. ``num_tokens`` replaces this micro-batch's own count when it is
    part of a larger batch."""
    dev = next(scorer.parameters()).device
    if packing:
        p = pack(seqs, pad_id)
        logp = scorer(p.tokens_RW.to(dev), None, p.mask_RT.to(dev), position_ids_BL=p.positions_RW.to(dev))
        mask = p.mask_RT.to(dev)
    else:
        b = padded(seqs, pad_id)
        logp = scorer(b["tokens"].to(dev), b["attention"].to(dev), b["mask"].to(dev))
        mask = b["mask"].to(dev)
    tokens = float(mask.sum())
    loss = -(logp * mask).sum() / (num_tokens if num_tokens else max(tokens, 1.0))
    return loss, {"tokens": tokens}


def train_sft(cfg: SFTConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    rows, problems, tools = load_rows(cfg)
    tokenizer = tokenizer_of(cfg.model)
    encoded = [tokenize_chat(tokenizer, r, cfg.max_len, t) for r, t in zip(rows, tools)]
    rows_of = row_batches(cfg, len(encoded), "sft")

    hashes = [p if p is None or isinstance(p, tuple) else (p.env_id, content_hash(p)) for p in problems]

    def make_batch(step: int, micro: int, state: LoopState) -> list[tuple[list[int], list[int]]]:
        idx = rows_of(step, micro, state)
        for i in idx:   # what the checkpoint's trained_problems.json lists
            if hashes[i] is not None:
                state.trained.setdefault(hashes[i][0], set()).add(hashes[i][1])
        return [encoded[i] for i in idx]

    def loss_fn(scorer: Any, seqs: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, dict[str, float]]:
        return sft_loss_of(scorer, seqs, tokenizer.pad_token_id, packing=cfg.packing)

    def weights(micros: list[list[tuple[list[int], list[int]]]]) -> list[float]:
        # micro-batches weighed by their loss tokens: the update is the batch's token-mean NLL
        counts = [sum(sum(m[1:]) for _, m in seqs) for seqs in micros]
        return [c / max(sum(counts), 1) for c in counts]

    return run(cfg, name="sft", make_batch=make_batch, loss_fn=loss_fn, tokenizer=tokenizer,
               extra_meta={"rows": len(rows)}, progress=progress, after_save=after_save, micro_weights=weights)


def tokenizer_of(name: str) -> Any:
    from transformers import AutoTokenizer

    from evalgym.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(name))
