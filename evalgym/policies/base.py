"""The policy protocol: what every rollout engine (hf, vllm, openai) implements.

    policy = make_policy("hf", "tiny")
    groups = policy.generate([messages, "raw text", [1, 2, 3]], SamplingParams(n=4, seed=0))
    lps = policy.score(messages, groups[0][0].token_ids)   # per-token logprobs of given tokens
    policy.load_weights(trainer_model.state_dict())         # new weights, same engine

Prompts come in three shapes, rendered to token ids the same way by every backend (``encode``):
a chat (a sequence of ``ChatMessage`` or ``{"role", "content"}`` dicts) goes through the model's
chat template with the generation prompt; a ``str`` is raw text, tokenized without special tokens;
a sequence of ints is already token ids. Tools (OpenAI-style function specs) reach the template through
``encode(tokenizer, chat, tools=...)`` / ``render_chat``; templates that do not render ``tools`` get the
Hermes convention (see ``tool_template``). Agentic episodes render their first prompt here and send token
ids afterwards, so every backend sees the same ids.

Logprobs are the model's own (temperature 1, no top-p), for both ``generate`` and ``score``: what a
teacher's score and a trainer that trains the untempered model need. ``SamplingParams(logprobs="sampled")``
asks ``generate`` for the log-prob of each token under the distribution it was drawn from (logits /
temperature, then the top-p nucleus renormalized): what the importance ratio of a trainer that trains the
tempered policy needs (GRPO at temperature T, as TRL and veRL do). Greedy decoding gives the model's own.
Seeds are per sample: sample ``j`` of prompt
``i`` in a call with ``seed=s`` draws from ``sample_seed(s, keys[i] or i, j)``, so results do not
depend on how the engine batches. (Same seed, same backend, same weights → same samples; different
backends sample from different RNGs, so only greedy decoding is expected to agree across them.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

from evalgym.errors import EvalgymError
from evalgym.types import ChatMessage, Completion

Prompt = Union[str, Sequence[int], Sequence[Union[ChatMessage, Mapping[str, str]]]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature=0`` is greedy (then ``n`` copies are identical)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: str = "model"    # "model": the model's own (T = 1); "sampled": under the sampling distribution

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise EvalgymError(f"sampling.n must be an integer >= 1, got {self.n!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0 and math.isfinite(self.temperature)):
            raise EvalgymError(f"sampling.temperature must be >= 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise EvalgymError(f"sampling.top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise EvalgymError(f"sampling.max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise EvalgymError(f"sampling.stop must be non-empty strings, got {self.stop!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise EvalgymError(f"sampling.seed must be an integer or None, got {self.seed!r}")
        if self.logprobs not in ("model", "sampled"):
            raise EvalgymError(f"sampling.logprobs must be 'model' or 'sampled', got {self.logprobs!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def reshapes(self) -> bool:
        """Whether tokens are drawn from another distribution than the model's own: temperature not 0 or 1,
        or top-p below 1 (then ``model`` and ``sampled`` log-probs differ)."""
        return not self.greedy and (self.temperature != 1.0 or self.top_p < 1.0)

    @property
    def sampled_logprobs(self) -> bool:
        """Whether ``generate`` must return log-probs other than the model's own."""
        return self.logprobs == "sampled" and self.reshapes

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingParams:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise EvalgymError(f"sampling: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def sample_seed(seed: int | None, prompt_index: int, sample_index: int) -> int | None:
    """The seed of one sample; a stable 63-bit hash so every backend and process agrees."""
    if seed is None:
        return None
    digest = hashlib.blake2b(f"{seed}/{prompt_index}/{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def check_keys(keys: Sequence[int] | None, n_prompts: int) -> list[int]:
    if keys is None:
        return list(range(n_prompts))
    if len(keys) != n_prompts:
        raise EvalgymError(f"generate: {len(keys)} keys for {n_prompts} prompts")
    return [int(k) for k in keys]


def is_chat(prompt: Prompt) -> bool:
    return not isinstance(prompt, str) and len(prompt) > 0 and not isinstance(prompt[0], int)


def chat_dicts(prompt: Prompt) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(prompt):
        if isinstance(m, ChatMessage):
            out.append(m.as_dict())
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        else:
            raise EvalgymError(f"prompt message {i}: expected a ChatMessage or a {{'role','content'}} dict, got {m!r}")
    return out


def encode(tokenizer: Any, prompt: Prompt, tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """Token ids of a prompt: the one rendering every backend shares (``tools``: for a chat prompt)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if len(prompt) == 0:
        raise EvalgymError("prompt is empty")
    if isinstance(prompt[0], int):
        return [int(t) for t in prompt]
    text = render_chat(tokenizer, prompt, tools=tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_chat(tokenizer: Any, messages: Prompt, *, tools: Sequence[Mapping[str, Any]] | None = None,
                add_generation_prompt: bool = True) -> str:
    """A chat's prompt text through the model's chat template (with ``tools``, and ``tool`` messages)."""
    if not getattr(tokenizer, "chat_template", None):
        raise EvalgymError(f"model {getattr(tokenizer, 'name_or_path', '?')} has no chat template; "
                           "give raw text or token ids instead of chat messages")
    from evalgym.policies.tool_template import render

    return render(tokenizer, chat_dicts(messages), tools, add_generation_prompt)


def stop_ids(tokenizer: Any, config_eos: Any = None) -> set[int]:
    """End-of-sequence ids: the tokenizer's eos plus the generation config's (it may list several)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if isinstance(config_eos, int):
        ids.add(config_eos)
    elif isinstance(config_eos, (list, tuple)):
        ids.update(int(i) for i in config_eos)
    return ids


def apply_stop_strings(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string (excluded, as in vLLM and OpenAI)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


@runtime_checkable
class Policy(Protocol):
    """A rollout engine. ``name`` is the model it serves (a built-in name, folder or hub id)."""

    name: str
    tokenizer: Any

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams,
                 *, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, in prompt order. ``keys[i]`` replaces prompt i's
        position in its samples' seeds (``sample_seed(seed, keys[i], j)``): callers that split work
        into several calls keep every sample's seed stable."""
        ...

    def score(self, prompt: Prompt, token_ids: Sequence[int]) -> list[float]:
        """Per-token logprobs of ``token_ids`` as the continuation of ``prompt``."""
        ...

    def score_batch(self, requests: Sequence[tuple[Prompt, Sequence[int]]]) -> list[list[float]]:
        ...

    def load_weights(self, weights: Mapping[str, Any] | str) -> None:
        """Replace the served weights in place: a state dict, or a folder of HF safetensors."""
        ...

    def close(self) -> None:
        ...


@dataclass
class PolicyStats:
    """Counters every backend keeps (for benchmarks and progress bars)."""

    prompts: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


BACKENDS = ("hf", "vllm", "openai")


def make_policy(backend: str, model: str, **kwargs: Any) -> Policy:
    """Build a policy by backend name: ``hf``, ``vllm`` or ``openai`` (kwargs go to its class)."""
    if backend == "hf":
        from evalgym.policies.hf import HFPolicy
        return HFPolicy(model, **kwargs)
    if backend == "vllm":
        from evalgym.policies.vllm import VLLMPolicy
        return VLLMPolicy(model, **kwargs)
    if backend == "openai":
        from evalgym.policies.openai import OpenAIPolicy
        return OpenAIPolicy(model, **kwargs)
    raise EvalgymError(f"backend: unknown policy backend {backend!r}; known: {list(BACKENDS)}")


def load_state_dict_from(path: str) -> dict[str, Any]:
    """All tensors of an HF folder's safetensors files (for ``load_weights(path)``)."""
    from pathlib import Path

    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise EvalgymError(f"load_weights: no *.safetensors files in {path}")
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(str(f)))
    # save_pretrained leaves a tied lm_head out; engines that keep their own copy (vLLM on CPU) need it
    config = Path(path) / "config.json"
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state and config.exists():
        import json
        if json.loads(config.read_text()).get("tie_word_embeddings"):
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def check_engine_logprobs(name: str, engine: str, sampling: SamplingParams, how: str) -> None:
    """For engines whose log-prob kind is fixed when they start (vLLM's ``logprobs_mode``): refuse a request
    whose ``sampling.logprobs`` differs from the engine's ``engine`` kind where the two differ (not greedy,
    temperature != 1 or top-p < 1). ``how``: how to start the engine with the other kind."""
    if sampling.reshapes and sampling.logprobs != engine:
        raise EvalgymError(f"{name}: sampling.logprobs {sampling.logprobs!r} at temperature {sampling.temperature}, "
                           f"top_p {sampling.top_p}, but this engine returns {engine!r} log-probs (fixed when it "
                           f"starts): {how}")
