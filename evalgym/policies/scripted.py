"""Seeded scripted policies: baselines and grader probes that need no model.

A scripted policy maps (problem, rng) to a response text. ``reference`` and ``noisy`` read the
problem's gold answer on purpose (they are probes of the grader and the env, not learners):

- ``reference``: the env's reference solution (must score 1.0 everywhere).
- ``noisy``:     the right answer with probability ``p`` in a randomly chosen surface form (boxed,
                 "The answer is $...$", ``####``, inside ``<think>`` reasoning), else a wrong one.
                 Its score estimates ``p``: a grader that misses formats shows up as a lower score.
- ``hedger``:    boxes the right answer and a wrong one (a reward hack; must score 0).
- ``last-number``: repeats the last number of the prompt (a classic floor).
"""

from __future__ import annotations

import random
import re
from typing import Callable

from evalgym.types import Problem

ScriptedPolicy = Callable[[Problem, random.Random], str]


def _wrong(answer: str, rng: random.Random) -> str:
    nums = list(re.finditer(r"\d+", answer))
    if not nums:
        return answer + "+1"
    m = rng.choice(nums)
    return answer[: m.start()] + str(int(m.group(0)) + rng.randint(1, 9)) + answer[m.end():]


def _surface(answer: str, rng: random.Random) -> str:
    forms = [
        lambda a: f"Let me work through it.\nThe final answer is $\\boxed{{{a}}}$.",
        lambda a: f"Working...\nThe answer is ${a}$.",
        lambda a: f"<think>Try something, maybe 12345.</think>\nSo the result: \\boxed{{{a}}}",
        lambda a: f"Step 1: compute.\n#### {a}" if re.fullmatch(r"-?\d+", a) else f"Final answer: ${a}$",
    ]
    return rng.choice(forms)(answer)


def reference(problem: Problem, rng: random.Random) -> str:
    return problem.reference


def noisy(problem: Problem, rng: random.Random, p: float = 0.7) -> str:
    right = rng.random() < p
    return _surface(problem.answer if right else _wrong(problem.answer, rng), rng)


def hedger(problem: Problem, rng: random.Random) -> str:
    return f"It is either \\boxed{{{problem.answer}}} or \\boxed{{{_wrong(problem.answer, rng)}}}."


def last_number(problem: Problem, rng: random.Random) -> str:
    nums = re.findall(r"-?\d+(?:\.\d+)?", problem.prompt_text)
    return f"\\boxed{{{nums[-1] if nums else 0}}}"


POLICIES: dict[str, ScriptedPolicy] = {
    "reference": reference, "noisy": noisy, "hedger": hedger, "last-number": last_number,
}
