"""A policy with no model for the lm-eval tests: it finds which env problem a rendered prompt asks and
answers with a scripted policy (``reference``, ``noisy``, ``hedger``). Its samples are seeded by
(problem id, sample index), never by call order, so lm-eval and ``rollouts.collect`` get the same
responses whatever their batching, and any score difference is a grading difference."""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from evalgym.policies.base import SamplingParams, encode, is_chat
from evalgym.policies.scripted import POLICIES
from evalgym.types import Completion, Problem


class ScriptedPolicy:
    backend = "scripted"

    def __init__(self, tokenizer: Any, problems: Sequence[Problem], script: str = "reference", name: str = "scripted",
                 key: Callable[[Problem], str] = lambda p: p.prompt_text):
        self.tokenizer, self.name, self.script = tokenizer, name, POLICIES[script]
        # what to look for, through the tokenizer's round trip (the tiny char tokenizer maps non-ASCII
        # to <unk>); longest first, so a prompt that contains another one wins
        keyed = [(tokenizer.decode(encode(tokenizer, key(p))), p) for p in problems]
        self.problems = sorted(keyed, key=lambda kp: -len(kp[0]))
        self.calls = 0

    def _problem(self, prompt: Any) -> Problem:
        if is_chat(prompt):
            prompt = encode(self.tokenizer, prompt)
        text = prompt if isinstance(prompt, str) else self.tokenizer.decode(list(prompt))
        for k, p in self.problems:
            if k in text:
                return p
        raise AssertionError(f"no known problem in prompt {text[-200:]!r}")

    def generate(self, prompts: Sequence[Any], sampling: SamplingParams, *, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        self.calls += 1
        out = []
        for prompt in prompts:
            p = self._problem(prompt)
            out.append([Completion(text=self.script(p, random.Random(f"{p.id}/{j}"))) for j in range(sampling.n)])
        return out

    def close(self) -> None:
        pass
