"""The OpenAI-compatible backend: any server speaking /v1/completions and /v1/chat/completions.

    policy = OpenAIPolicy("smollm2-135m", base_url="http://127.0.0.1:8000/v1")
    policy.generate([messages], SamplingParams(n=4, seed=0, max_tokens=128))

Two modes. ``mode="completions"`` (the default when the model's tokenizer is available here, i.e.
a built-in name or a local folder): the chat template is applied here by ``encode``, exactly as in
the other backends, and the prompt is sent as token ids; results carry token ids and logprobs.
``mode="chat"``: the server applies its own template (for hosted models whose tokenizer is not at
hand); token ids come back when the server returns them (vLLM: ``return_token_ids``).

``score`` asks for prompt logprobs (vLLM's ``prompt_logprobs``; falls back to the legacy
``echo`` + ``logprobs`` that other servers implement). ``load_weights`` works with a vLLM server
started with ``VLLM_SERVER_DEV_MODE=1`` (its ``/collective_rpc`` endpoint calls the worker's
``reload_weights``): the weights are written as safetensors to a folder the server can read
(``shared_dir``: same machine or a shared disk) and reloaded in place, then the prefix cache is
reset; other servers cannot take new weights, and say so.

Log-probs: the server decides their kind (vLLM: ``--logprobs-mode``); ``logprobs="sampled"`` declares a
server started with ``processed_logprobs`` (see the vLLM backend). A request that asks for the other kind at
a temperature where they differ is an error.

Requests run concurrently (``max_concurrency`` at a time) on a thread pool.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import (
    PolicyStats,
    Prompt,
    SamplingParams,
    apply_stop_strings,
    chat_dicts,
    check_engine_logprobs,
    check_keys,
    encode,
    is_chat,
    load_state_dict_from,
    sample_seed,
)
from evalgym.types import Completion


class OpenAIPolicy:
    backend = "openai"

    def __init__(self, model: str, *, base_url: str, api_key: str | None = None, served_model: str | None = None,
                 mode: str | None = None, max_concurrency: int = 16, timeout_s: float = 600.0,
                 shared_dir: str | None = None, tokenizer: Any = None, logprobs: str = "model"):
        import requests

        if mode not in (None, "completions", "chat"):
            raise EvalgymError(f"openai: mode must be 'completions' or 'chat', got {mode!r}")
        if logprobs not in ("model", "sampled"):
            raise EvalgymError(f"openai: logprobs must be 'model' or 'sampled', got {logprobs!r}")
        self.logprobs = logprobs   # what the server returns; a vLLM server: --logprobs-mode raw_/processed_logprobs
        self.name = str(model)
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.session = requests.Session()
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.shared_dir = shared_dir
        self.tokenizer = tokenizer if tokenizer is not None else self._local_tokenizer(model)
        self.mode = mode or ("completions" if self.tokenizer is not None else "chat")
        if self.mode == "completions" and self.tokenizer is None:
            raise EvalgymError(f"openai: mode 'completions' needs the tokenizer of {model!r} here "
                               "(a built-in name or a local folder); use mode='chat' otherwise")
        self.served_model = served_model or self._served_model()
        self.stats = PolicyStats()

    # -- plumbing ---------------------------------------------------------------------------------

    @staticmethod
    def _local_tokenizer(model: str) -> Any:
        from evalgym.models import BUILTIN, resolve_model

        if model in BUILTIN or os.path.isdir(model):
            from transformers import AutoTokenizer
            return AutoTokenizer.from_pretrained(resolve_model(model))
        return None

    def _post(self, path: str, body: Mapping[str, Any], root: bool = False) -> Any:
        import requests

        url = (self.base_url.removesuffix("/v1") if root else self.base_url) + path
        try:
            r = self.session.post(url, json=body, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise EvalgymError(f"openai: cannot reach {url}: {e}") from e
        if r.status_code != 200:
            raise EvalgymError(f"openai: {url} answered {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def _served_model(self) -> str:
        import requests

        try:
            r = self.session.get(self.base_url + "/models", timeout=30)
            r.raise_for_status()
            ids = [m["id"] for m in r.json().get("data", [])]
        except (requests.RequestException, ValueError, KeyError) as e:
            raise EvalgymError(f"openai: cannot list models at {self.base_url}/models: {e}") from e
        if len(ids) == 1:
            return ids[0]
        if self.name in ids:
            return self.name
        raise EvalgymError(f"openai: the server at {self.base_url} serves {ids}; say which with served_model=")

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as ex:
            return list(ex.map(fn, items))

    # -- generate ---------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams = SamplingParams(),
                 *, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        t0 = time.perf_counter()
        check_engine_logprobs(f"openai {self.name}", self.logprobs, sampling,
                              "start the vLLM server with --logprobs-mode "
                              f"{'processed_logprobs' if sampling.logprobs == 'sampled' else 'raw_logprobs'} "
                              f"and give OpenAIPolicy(..., logprobs={sampling.logprobs!r})")
        keys = check_keys(keys, len(prompts))
        jobs = [(i, j, p, sample_seed(sampling.seed, keys[i], j)) for i, p in enumerate(prompts) for j in range(sampling.n)]
        results = self._map(lambda job: self._one(job[2], sampling, job[3]), jobs)
        grouped: list[list[Completion]] = [[] for _ in prompts]
        for (i, _j, _p, _s), c in zip(jobs, results):
            grouped[i].append(c)
        self.stats.prompts += len(prompts)
        self.stats.completions += len(jobs)
        self.stats.completion_tokens += sum(len(c.token_ids) for c in results)
        self.stats.generate_s += time.perf_counter() - t0
        return grouped

    def _common(self, sp: SamplingParams, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.served_model, "n": 1, "temperature": sp.temperature, "top_p": sp.top_p,
                                "max_tokens": sp.max_tokens, "return_token_ids": True}
        if sp.stop:
            body["stop"] = list(sp.stop)
        if seed is not None:
            body["seed"] = seed
        return body

    def _one(self, prompt: Prompt, sp: SamplingParams, seed: int | None) -> Completion:
        if self.mode == "chat" and is_chat(prompt):
            body = {**self._common(sp, seed), "messages": chat_dicts(prompt), "logprobs": True, "top_logprobs": 0}
            resp = self._post("/chat/completions", body)
            choice = resp["choices"][0]
            text = choice["message"].get("content") or ""
            content = (choice.get("logprobs") or {}).get("content") or []
            logprobs = tuple(float(x["logprob"]) for x in content)
            # vLLM returns the ids of the prompt its own template produced (top level for chat)
            prompt_ids = tuple(resp.get("prompt_token_ids") or choice.get("prompt_token_ids") or ())
        else:
            ids = encode(self.tokenizer, prompt) if self.tokenizer is not None else None
            body = {**self._common(sp, seed), "prompt": ids if ids is not None else prompt, "logprobs": 0}
            resp = self._post("/completions", body)
            choice = resp["choices"][0]
            text = choice.get("text") or ""
            logprobs = tuple(float(x) for x in ((choice.get("logprobs") or {}).get("token_logprobs") or ()))
            prompt_ids = tuple(choice.get("prompt_token_ids") or resp.get("prompt_token_ids") or ids or ())
        token_ids = tuple(int(t) for t in (choice.get("token_ids") or ()))
        if token_ids and len(logprobs) != len(token_ids):
            logprobs = ()
        if sp.stop:
            text, _ = apply_stop_strings(text, sp.stop)  # servers already cut; harmless when they did
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(text=text, token_ids=token_ids, logprobs=logprobs if token_ids else (),
                          finish_reason=reason, prompt_token_ids=prompt_ids)

    # -- score ------------------------------------------------------------------------------------

    def score(self, prompt: Prompt, token_ids: Sequence[int]) -> list[float]:
        return self.score_batch([(prompt, token_ids)])[0]

    def score_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]]) -> list[list[float]]:
        if self.tokenizer is None:
            raise EvalgymError(f"openai: scoring needs the tokenizer of {self.name!r} here (token ids go to the server)")
        return self._map(lambda req: self._score_one(*req), list(requests))

    def _score_one(self, prompt: Prompt, token_ids: Sequence[int]) -> list[float]:
        p = encode(self.tokenizer, prompt)
        c = [int(t) for t in token_ids]
        if not c:
            return []
        body = {"model": self.served_model, "prompt": p + c, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0}
        try:
            choice = self._post("/completions", body)["choices"][0]
        except EvalgymError:
            choice = None
        plp = (choice or {}).get("prompt_logprobs")
        if plp:
            return [float(plp[len(p) + n][str(t)]["logprob"]) for n, t in enumerate(c)]
        # the legacy way: echo the prompt with its logprobs
        body = {"model": self.served_model, "prompt": p + c, "max_tokens": 0, "echo": True, "logprobs": 0}
        lps = self._post("/completions", body)["choices"][0]["logprobs"]["token_logprobs"]
        return [float(x) for x in lps[len(p):len(p) + len(c)]]

    # -- weights ----------------------------------------------------------------------------------

    def load_weights(self, weights: Mapping[str, Any] | str) -> None:
        from safetensors.torch import save_file

        if isinstance(weights, str):
            weights = load_state_dict_from(weights)

        with tempfile.TemporaryDirectory(prefix="evalgym-weights-", dir=self.shared_dir) as tmp:
            state = {k.removeprefix("module."): v.detach().contiguous().cpu() for k, v in weights.items()}
            save_file(_untie(state), os.path.join(tmp, "model.safetensors"))
            self._reload(tmp)

    def _reload(self, path: str) -> None:
        try:
            self._post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": os.path.abspath(path)}},
                       root=True)
        except EvalgymError as e:
            raise EvalgymError(
                f"openai: the server cannot take new weights ({e}); only a vLLM server started with "
                "VLLM_SERVER_DEV_MODE=1 can, reading them from a folder it can see") from e
        self._post("/reset_prefix_cache", {}, root=True)

    def close(self) -> None:
        self.session.close()


def _untie(state: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory (tied embeddings): clone the duplicates. Both
    names are kept: vLLM's CPU models hold their own copy of a tied lm_head and load it by name."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        out[k] = v.clone() if v.data_ptr() in seen else v
        seen.add(v.data_ptr())
    return out
