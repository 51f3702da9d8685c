"""The transformers backend: batched sampling with a KV cache, on CPU or GPU.

Its own decode loop rather than ``model.generate`` so that it can (a) give every sample its own
seeded generator (results independent of batching), (b) return the model's raw per-token logprobs,
(c) drop finished rows from the batch and the cache as they stop, and (d) prefill each distinct
prompt once, its cache shared by its ``n`` samples (a GRPO group's prompt is the bulk of the
prefill).

A trainer can share its model in memory: ``HFPolicy.from_model(model, tokenizer)`` samples with
the very weights being trained (no copy, no ``load_weights`` needed).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import (
    PolicyStats,
    Prompt,
    SamplingParams,
    apply_stop_strings,
    check_keys,
    encode,
    load_state_dict_from,
    sample_seed,
    stop_ids,
)
from evalgym.types import Completion


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(name: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise EvalgymError(f"dtype: unknown {name!r}; known: {sorted(table)}")
    return table[name]


class HFPolicy:
    """``HFPolicy("tiny")``, ``HFPolicy("smollm2-135m", device="cuda", dtype="bf16")``.

    ``threads`` sets torch's intra-op threads (process-wide); by default torch's own setting stands.
    """

    backend = "hf"

    def __init__(self, model: str, *, device: str | None = None, dtype: str | torch.dtype | None = None,
                 batch_size: int = 64, threads: int | None = None, _model: Any = None, _tokenizer: Any = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from evalgym.models import resolve_model

        hf_logging.disable_progress_bar()
        self.name = str(model)
        self.batch_size = int(batch_size)
        if _model is not None:
            self.model = _model
            self.tokenizer = _tokenizer
            self.device = str(next(_model.parameters()).device)
        else:
            path = resolve_model(model)
            self.device = device or default_device()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype, self.device))
            self.model.to(self.device).eval()
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: torch has one intra-op pool
        self.eos_ids = stop_ids(self.tokenizer, getattr(self.model.generation_config, "eos_token_id", None))
        # the prefill needs the last position's logits only (the whole [B, L, vocab] is large)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else next(iter(self.eos_ids), 0))
        self.stats = PolicyStats()

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str = "in-memory", batch_size: int = 64) -> HFPolicy:
        return cls(name, batch_size=batch_size, _model=model, _tokenizer=tokenizer)

    # -- generate ---------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams = SamplingParams(),
                 *, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        t0 = time.perf_counter()
        encoded = [encode(self.tokenizer, p) for p in prompts]
        keys = check_keys(keys, len(prompts))
        rows = [(i, j, ids, sample_seed(sampling.seed, keys[i], j))
                for i, ids in enumerate(encoded) for j in range(sampling.n)]
        # Longest first: rows of similar length share a batch, so less padding.
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r][2]))
        results: dict[int, Completion] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            outs = self._generate_batch([rows[r][2] for r in chunk], [rows[r][3] for r in chunk], sampling)
            results.update(zip(chunk, outs))
        grouped: list[list[Completion]] = [[] for _ in prompts]
        for r, (i, _j, _ids, _seed) in enumerate(rows):
            grouped[i].append(results[r])
        self.stats.prompts += len(prompts)
        self.stats.completions += len(rows)
        self.stats.prompt_tokens += sum(len(e) for e in encoded) * sampling.n
        self.stats.completion_tokens += sum(len(c.token_ids) for c in results.values())
        self.stats.generate_s += time.perf_counter() - t0
        return grouped

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], seeds: list[int | None], sp: SamplingParams) -> list[Completion]:
        dev = self.device
        B = len(prompts)
        L = max(len(p) for p in prompts)
        max_pos = getattr(self.model.config, "max_position_embeddings", None)
        if max_pos is not None and L + sp.max_tokens > max_pos:
            raise EvalgymError(f"prompt of {L} tokens + max_tokens {sp.max_tokens} exceeds the model's "
                               f"max_position_embeddings {max_pos}")
        # rows with the same prompt (n samples of it) prefill it once; the cache is then expanded
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        ids = torch.full((len(distinct), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(distinct), L), dtype=torch.long)
        for u, p in enumerate(distinct):
            ids[u, L - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[u, L - len(p):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator(device="cpu").manual_seed(s) if s is not None else None for s in seeds]
        tokens: list[list[int]] = [[] for _ in range(B)]
        logps: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        active = list(range(B))           # original row of each batch position
        stop_tail = max((len(s) for s in sp.stop), default=0) + 8

        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if len(distinct) < B:
            rows = torch.tensor(source, device=dev)
            cache.batch_select_indices(rows)
            logits, mask, pos = logits[rows], mask[rows], pos[rows]
        last_pos = pos[:, -1]
        for _step in range(sp.max_tokens):
            chosen, probs = self._choose(logits, sp, [gens[r] for r in active])
            if sp.sampled_logprobs:   # under the distribution the token was drawn from: tempered, nucleus renormalized
                lp = torch.log_softmax(logits / sp.temperature, dim=-1).gather(1, chosen[:, None])[:, 0].cpu()
                chosen_lp = (lp - probs.sum(-1).log() if sp.top_p < 1.0 else lp).tolist()
            else:
                chosen_lp = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0].tolist()
            keep = []
            for k, (r, t) in enumerate(zip(active, chosen.tolist())):
                tokens[r].append(t)
                logps[r].append(chosen_lp[k])
                if t in self.eos_ids:
                    finish[r] = "stop"
                elif sp.stop and any(s in self.tokenizer.decode(tokens[r][-stop_tail:], skip_special_tokens=True)
                                     for s in sp.stop):
                    finish[r] = "stop"
                elif len(tokens[r]) < sp.max_tokens:
                    keep.append(k)
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, chosen, last_pos = mask[idx], chosen[idx], last_pos[idx]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], dim=1)
            last_pos = last_pos + 1
            out = self.model(input_ids=chosen[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                             past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()

        completions = []
        for r in range(B):
            text = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
            if sp.stop:
                text, _ = apply_stop_strings(text, sp.stop)
            completions.append(Completion(text=text, token_ids=tuple(tokens[r]), logprobs=tuple(logps[r]),
                                          finish_reason=finish[r], prompt_token_ids=tuple(prompts[r])))
        return completions

    @staticmethod
    def _choose(logits: torch.Tensor, sp: SamplingParams,
                gens: list[torch.Generator | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next token of each row, and the (unnormalized) distribution it was drawn from, on the CPU (None
        when greedy): softmax(logits / T), zero outside the top-p nucleus."""
        if sp.greedy:
            return logits.argmax(dim=-1), None
        probs = torch.softmax(logits / sp.temperature, dim=-1)
        if sp.top_p < 1.0:
            sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            drop = (sorted_p.cumsum(-1) - sorted_p) >= sp.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, sorted_i, sorted_p)
        probs = probs.cpu()
        if all(g is None for g in gens):
            return torch.multinomial(probs, 1)[:, 0].to(logits.device), probs
        picks = [torch.multinomial(probs[k], 1, generator=g)[0] if g is not None else torch.multinomial(probs[k], 1)[0]
                 for k, g in enumerate(gens)]
        return torch.stack(picks).to(logits.device), probs

    # -- score ------------------------------------------------------------------------------------

    def score(self, prompt: Prompt, token_ids: Sequence[int]) -> list[float]:
        return self.score_batch([(prompt, token_ids)])[0]

    def score_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]]) -> list[list[float]]:
        return [own for own, _, _ in self._completion_logprobs(requests, 0)]

    def score_topk_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]],
                         k: int) -> list[tuple[list[list[int]], list[list[float]], list[float]]]:
        """The ``k`` likeliest next tokens at every completion position: per request (their ids,
        their logprobs, each ``[len(completion)][k]`` likeliest first; and the logprob of each
        completion token, as ``score_batch``). k above the vocabulary size: the whole vocabulary."""
        return [(ids, lps, own) for own, ids, lps in self._completion_logprobs(requests, k)]

    def _completion_logprobs(self, requests: Sequence[tuple[Prompt, Sequence[int]]],
                             k: int) -> list[tuple[list[float], list[list[int]], list[list[float]]]]:
        """Per request: each completion token's logprob, and (``k`` > 0) the top-k ids and logprobs at each
        completion position; scored in length-sorted batches, only completion positions through the
        output layer, a chunk of positions at a time (``evalgym.logprobs.scored_positions``)."""
        from evalgym.logprobs import scored_positions

        pairs = [(encode(self.tokenizer, p), [int(t) for t in toks]) for p, toks in requests]
        out: list[tuple[list[float], list[list[int]], list[list[float]]]] = [([], [], []) for _ in requests]
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), self.batch_size):
            chunk = [i for i in order[start:start + self.batch_size] if pairs[i][1]]
            if not chunk:
                continue
            L = max(len(pairs[i][0]) + len(pairs[i][1]) for i in chunk)
            ids = torch.full((len(chunk), L), self.pad_id, dtype=torch.long)
            attn = torch.zeros_like(ids)
            mask = torch.zeros((len(chunk), L - 1), dtype=torch.bool)
            for b, i in enumerate(chunk):
                p, c = pairs[i]
                ids[b, :len(p) + len(c)] = torch.tensor(p + c)
                attn[b, :len(p) + len(c)] = 1
                mask[b, len(p) - 1:len(p) - 1 + len(c)] = True
            own, top_ids, top_lps = scored_positions(self.model, ids.to(self.device), attn.to(self.device),
                                                     mask.to(self.device), k)
            own = own.cpu().tolist()
            top_ids = top_ids.cpu().tolist() if k else None
            top_lps = top_lps.cpu().tolist() if k else None
            at = 0
            for i in chunk:   # positions come back in row-major order: row by row, each completion in order
                n = len(pairs[i][1])
                out[i] = (own[at:at + n], top_ids[at:at + n] if k else [], top_lps[at:at + n] if k else [])
                at += n
        return out

    # -- weights ----------------------------------------------------------------------------------

    def load_weights(self, weights: Mapping[str, Any] | str) -> None:
        if isinstance(weights, str) and (Path(weights) / "adapter_config.json").is_file():
            from evalgym.models import resolve_model   # a LoRA checkpoint: its base with the adapter folded in

            weights = resolve_model(weights)
        state = load_state_dict_from(weights) if isinstance(weights, str) else dict(weights)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise EvalgymError(f"load_weights: weights do not match the model {self.name}: "
                               f"missing {missing[:5]}, unexpected {list(unexpected)[:5]}")

    def close(self) -> None:
        self.model = None
