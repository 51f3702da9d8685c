"""Log-probabilities of chosen tokens without the full-vocabulary log-softmax of the batch.

Every loss and every scorer needs ``log π(y_t | y_<t)`` at a few positions (the completion tokens), and
some need the model's top-k at those positions (distillation's exact KL). The plain way —
``log_softmax(model(ids).logits.float())`` — materialises ``B × L × V`` floats several times: at a
152k vocabulary and 64 × 1024 tokens that is ~40 GB. Here the decoder runs once to hidden states, only
the positions that are scored go through the output layer, and they go through it in chunks of
``CHUNK`` positions; under autograd each chunk is recomputed in the backward pass
(``torch.utils.checkpoint``), so the peak holds one chunk's logits instead of the batch's.

    scorer = CausalLMScorer(model)                       # nn.Module: wrap it with DDP/FSDP as the model
    logp_BT = scorer(tokens_BL, attention_BL, mask_BT)   # [B, L-1], zero outside mask
    logp_BT, top_BTK, rest_BT = scorer(..., topk_ids_BTK=ids)   # + log-probs of given ids, and the rest

Models without a separate decoder and output layer (``get_decoder`` / ``get_output_embeddings``) are
scored from their full logits, still only at the masked positions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

CHUNK = 1024   # positions per output-layer chunk: 1024 × 49k vocabulary × 4 bytes = 200 MB of logits


def _logit_transform(model: Any) -> tuple[float | None, float | None]:
    """(soft cap, scale) some architectures apply to the output logits (Gemma 2, Cohere)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "final_logit_softcapping", None), getattr(cfg, "logit_scale", None)


def _chunk_logprobs(h_NH: torch.Tensor, weight_VH: torch.Tensor, bias_V: torch.Tensor | None,
                    targets_N: torch.Tensor, topk_NK: torch.Tensor | None, softcap: float | None,
                    scale: float | None, temperature: float = 1.0) -> tuple[torch.Tensor, ...]:
    logits = torch.nn.functional.linear(h_NH, weight_VH, bias_V).float()
    if scale is not None:
        logits = logits * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if temperature != 1.0:      # after the model's own transforms, as a sampler applies it
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, targets_N[:, None])[:, 0] - lse
    if topk_NK is None:
        return (chosen,)
    top = logits.gather(-1, topk_NK) - lse[:, None]
    if topk_NK.shape[-1] >= logits.shape[-1]:
        rest = torch.full_like(chosen, float("-inf"))
    else:
        rest = logits.scatter(-1, topk_NK, float("-inf")).logsumexp(-1) - lse
    return chosen, top, rest


def selective_logprobs(h_NH: torch.Tensor, weight_VH: torch.Tensor, targets_N: torch.Tensor, *,
                       bias_V: torch.Tensor | None = None, topk_NK: torch.Tensor | None = None,
                       softcap: float | None = None, scale: float | None = None, temperature: float = 1.0,
                       chunk: int = CHUNK) -> tuple[torch.Tensor, ...]:
    """``log softmax((h W^T + b) / temperature)[target]`` for N positions (and at ``topk_NK`` ids, plus the
    log-mass of all other ids), computed ``chunk`` positions at a time; with gradients, each chunk's logits are
    recomputed in backward instead of kept. Returns ``(logp_N,)`` or ``(logp_N, top_NK, rest_N)``."""
    outs: list[tuple[torch.Tensor, ...]] = []
    grad = torch.is_grad_enabled() and (h_NH.requires_grad or weight_VH.requires_grad)
    for lo in range(0, h_NH.shape[0], chunk):
        args = (h_NH[lo:lo + chunk], weight_VH, bias_V, targets_N[lo:lo + chunk],
                None if topk_NK is None else topk_NK[lo:lo + chunk], softcap, scale, temperature)
        outs.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False) if grad else _chunk_logprobs(*args))
    if not outs:
        empty = h_NH.new_zeros((0,), dtype=torch.float32)
        if topk_NK is None:
            return (empty,)
        return empty, h_NH.new_zeros((0, topk_NK.shape[-1]), dtype=torch.float32), empty
    return tuple(torch.cat(parts) for parts in zip(*outs))


class CausalLMScorer(torch.nn.Module):
    """A causal LM as a module whose forward returns next-token log-probs of the given tokens at masked
    positions. Wrap this (not the bare model) in DDP / FSDP: one forward per backward, whatever path the
    forward takes inside (shared prompts, packed rows)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def _parts(self) -> tuple[Any, Any] | None:
        dec = getattr(self.model, "get_decoder", None)
        head = getattr(self.model, "get_output_embeddings", None)
        if dec is None or head is None:
            return None
        d, h = dec(), head()
        if d is None or not isinstance(h, torch.nn.Linear):
            return None
        return d, h

    def forward(self, tokens_BL: torch.Tensor, attention_BL: torch.Tensor | None, mask_BT: torch.Tensor, *,
                position_ids_BL: torch.Tensor | None = None, topk_ids_BTK: torch.Tensor | None = None,
                share_prompts: bool = False, temperature: float = 1.0) -> Any:
        """``mask_BT`` ``[B, L-1]``: positions t whose next token t+1 is scored. ``attention_BL`` None with
        ``position_ids_BL`` = packed rows (positions restart at 0 for each sequence; attention stays within a
        sequence). ``share_prompts``: consecutive rows with the same prompt run it once (see
        :func:`shared_prompt_hidden`). ``temperature``: log-probs of the model's distribution at that sampling
        temperature (logits / T), what a policy sampled at T is. Returns ``logp_BT`` or
        ``(logp_BT, top_BTK, rest_BT)``."""
        sel = mask_BT.bool()
        targets = tokens_BL[:, 1:][sel]
        topk = None if topk_ids_BTK is None else topk_ids_BTK[sel]
        parts = self._parts()
        if parts is None:   # no separate head: full logits, but log-softmax only at scored positions
            logits = self.model(input_ids=tokens_BL, attention_mask=attention_BL, position_ids=position_ids_BL).logits
            h, weight, bias = logits[:, :-1][sel], None, None
            res = _from_logits(h, targets, topk, temperature)
        else:
            decoder, head = parts
            if share_prompts and position_ids_BL is None and not _checkpointing(self.model):
                h = shared_prompt_hidden(decoder, tokens_BL, attention_BL, mask_BT)
            else:
                out = decoder(input_ids=tokens_BL, attention_mask=attention_BL, position_ids=position_ids_BL,
                              use_cache=False)
                h = out.last_hidden_state[:, :-1][sel]
            weight, bias = head.weight, head.bias
            softcap, scale = _logit_transform(self.model)
            res = selective_logprobs(h, weight, targets, bias_V=bias, topk_NK=topk, softcap=softcap, scale=scale,
                                     temperature=temperature)
        logp = torch.zeros(mask_BT.shape, dtype=torch.float32, device=tokens_BL.device).masked_scatter(sel, res[0])
        if topk is None:
            return logp
        K = topk.shape[-1]
        top = torch.zeros((*mask_BT.shape, K), dtype=torch.float32, device=tokens_BL.device)
        top = top.masked_scatter(sel[..., None].expand(-1, -1, K), res[1])
        rest = torch.zeros(mask_BT.shape, dtype=torch.float32, device=tokens_BL.device).masked_scatter(sel, res[2])
        return logp, top, rest


def _from_logits(logits_NV: torch.Tensor, targets_N: torch.Tensor, topk_NK: torch.Tensor | None,
                 temperature: float = 1.0) -> tuple[torch.Tensor, ...]:
    logits = logits_NV.float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, -1)
    chosen = logits.gather(-1, targets_N[:, None])[:, 0] - lse
    if topk_NK is None:
        return (chosen,)
    rest = (logits.scatter(-1, topk_NK, float("-inf")).logsumexp(-1) - lse if topk_NK.shape[-1] < logits.shape[-1]
            else torch.full_like(chosen, float("-inf")))
    return chosen, logits.gather(-1, topk_NK) - lse[:, None], rest


def _checkpointing(model: Any) -> bool:
    """Gradient checkpointing in training turns the KV cache off: prompts cannot be shared then."""
    return bool(getattr(model, "is_gradient_checkpointing", False)) and model.training


def shared_prompt_hidden(decoder: Any, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Final hidden states at the masked positions of ``[B, L]`` right-padded rows, computing each run of
    consecutive rows with the same prompt (a group's G samples) once: the prompt's KV cache is computed once
    and expanded to the group's rows (gradients flow back through the expansion), so a group costs one
    prompt and G completions instead of G prompts + completions. A row's prompt ends at its first masked
    position; what follows (sampled turns, env turns) is its completion. Every row needs ≥ 1 masked
    position. Equal to a plain forward up to float rounding (tests/test_logprobs.py)."""
    B, L = ids.shape
    if not bool(mask.bool().any(dim=1).all()):
        raise ValueError("shared_prompt_hidden: every row needs at least one masked position")
    prompt_lens = (mask.bool().int().argmax(dim=1) + 1).tolist()
    lengths = attn.sum(dim=1).long().tolist()
    comp_lens = [n - p for n, p in zip(lengths, prompt_lens)]
    firsts: list[int] = []
    group = []
    for b in range(B):
        f = firsts[-1] if firsts else None
        same = f is not None and prompt_lens[f] == prompt_lens[b] and torch.equal(ids[f, :prompt_lens[b]],
                                                                                   ids[b, :prompt_lens[b]])
        if not same:
            firsts.append(b)
        group.append(len(firsts) - 1)
    dev = ids.device
    if len(firsts) == B:
        out = decoder(input_ids=ids, attention_mask=attn, use_cache=False)
        return out.last_hidden_state[:, :-1][mask.bool()]
    Lp, Lc = max(prompt_lens[f] for f in firsts), max(comp_lens)
    p_ids = torch.zeros((len(firsts), Lp), dtype=ids.dtype, device=dev)   # left-padded: each ends at Lp - 1
    p_attn = torch.zeros((len(firsts), Lp), dtype=attn.dtype, device=dev)
    for g, f in enumerate(firsts):
        p_ids[g, Lp - prompt_lens[f]:] = ids[f, :prompt_lens[f]]
        p_attn[g, Lp - prompt_lens[f]:] = 1
    c_ids = torch.zeros((B, Lc), dtype=ids.dtype, device=dev)
    c_attn = torch.zeros((B, Lc), dtype=attn.dtype, device=dev)
    c_score = torch.zeros((B, Lc), dtype=torch.bool, device=dev)   # index j scores from position prompt-1+j
    for b in range(B):
        p, n = prompt_lens[b], comp_lens[b]
        c_ids[b, :n] = ids[b, p:p + n]
        c_attn[b, :n] = 1
        c_score[b, :n] = mask[b, p - 1:p - 1 + n].bool()
    out = decoder(input_ids=p_ids, attention_mask=p_attn, position_ids=(p_attn.cumsum(-1) - 1).clamp(min=0),
                  use_cache=True)
    rows = torch.tensor(group, device=dev)
    cache = out.past_key_values
    cache.batch_select_indices(rows)
    positions = torch.tensor(prompt_lens, device=dev)[:, None] + torch.arange(Lc, device=dev)[None, :]
    c_out = decoder(input_ids=c_ids, attention_mask=torch.cat([p_attn[rows], c_attn], dim=1),
                    position_ids=positions, past_key_values=cache, use_cache=True)
    # the token at prompt + j is scored from the position before it: the prompt's last for j = 0
    hidden = torch.cat([out.last_hidden_state[rows, -1:], c_out.last_hidden_state[:, :-1]], dim=1)
    return hidden[c_score]


@torch.inference_mode()
def scored_positions(model: Any, tokens_BL: torch.Tensor, attention_BL: torch.Tensor, mask_BT: torch.Tensor,
                     k: int = 0, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """For teachers and scorers (no gradient): at the masked positions, in row-major order, the log-prob of
    the next token ``[N]`` and, with ``k`` > 0, the ``k`` likeliest next tokens and their log-probs
    ``[N, k]`` — one chunk of positions' logits at a time, never the batch's ``[B, L, V]``."""
    sel = mask_BT.bool()
    targets = tokens_BL[:, 1:][sel]
    parts = CausalLMScorer(model)._parts()
    if parts is None:
        h = model(input_ids=tokens_BL, attention_mask=attention_BL).logits[:, :-1][sel]
        project = (lambda x: x.float())
    else:
        decoder, head = parts
        h = decoder(input_ids=tokens_BL, attention_mask=attention_BL, use_cache=False).last_hidden_state[:, :-1][sel]
        softcap, scale = _logit_transform(model)

        def project(x: torch.Tensor) -> torch.Tensor:
            logits = torch.nn.functional.linear(x, head.weight, head.bias).float()
            logits = logits * scale if scale is not None else logits
            return torch.tanh(logits / softcap) * softcap if softcap is not None else logits
    own, ids, lps = [], [], []
    for lo in range(0, h.shape[0], chunk):
        logits = project(h[lo:lo + chunk])
        lse = torch.logsumexp(logits, -1)
        own.append(logits.gather(-1, targets[lo:lo + chunk, None])[:, 0] - lse)
        if k:
            top = logits.topk(min(k, logits.shape[-1]), dim=-1)
            ids.append(top.indices)
            lps.append(top.values - lse[:, None])
    if not own:
        empty = torch.zeros(0)
        return empty, (torch.zeros((0, k), dtype=torch.long) if k else None), (torch.zeros((0, k)) if k else None)
    return torch.cat(own), (torch.cat(ids) if k else None), (torch.cat(lps) if k else None)


def full_logprobs(model: Any, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """The reference path: ``log_softmax`` of every position's full logits, ``[B, L-1]`` at the next tokens
    (what every loss did before; kept for tests and the memory benchmark)."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
