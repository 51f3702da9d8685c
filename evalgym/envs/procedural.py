"""Procedural math generators for small models trained on CPU: unlimited, seeded, with difficulty knobs.

Each generator is ``f(rng: random.Random, **knobs) -> (question, answer, reference, extra)``; problem
``i`` of an env with seed ``s`` uses ``Random(s + i)`` (redrawn until it lands in the env's split). Each
sets ``extra["canonical"]`` (what the problem is, e.g. ``"arithmetic:3 + 4"``) and has a space model
(``*_SPACE``: how many distinct problems its knobs allow, and which).

    gymnasium.make("evalgym/arithmetic-v1", digits=1, terms=2, ops="+-")          # split="train" by default
    gymnasium.make("evalgym/arithmetic-v1", digits=2, ops="+", split="eval")      # disjoint from train
    gymnasium.make("evalgym/linear-equations-v1", coef_max=5)
    gymnasium.make("evalgym/fractions-v1", den_max=6)
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from typing import Iterator

from evalgym.envs.sources import Fields, SpaceModel
from evalgym.errors import EvalgymError

SHORT_INSTRUCTION = "Put the final answer in \\boxed{}."


def _need(cond: bool, knob: str, msg: str) -> None:
    if not cond:
        raise EvalgymError(f"bad knob {knob!r}: {msg}")


def arithmetic(rng: random.Random, digits: int = 1, terms: int = 2, ops: str = "+-*") -> Fields:
    """An integer expression like ``7 + 3 * 2`` (usual precedence)."""
    _need(isinstance(digits, int) and 1 <= digits <= 9, "digits", "an integer in 1..9")
    _need(isinstance(terms, int) and 2 <= terms <= 10, "terms", "an integer in 2..10")
    _need(bool(ops) and set(ops) <= set("+-*"), "ops", "a non-empty string of + - *")
    hi = 10**digits - 1
    nums = [rng.randint(0, hi) for _ in range(terms)]
    chosen = [rng.choice(ops) for _ in range(terms - 1)]
    expr = str(nums[0]) + "".join(f" {o} {n}" for o, n in zip(chosen, nums[1:]))
    value = eval(expr, {"__builtins__": {}})  # noqa: S307 - digits and + - * we generated ourselves
    return (f"Compute {expr}.", str(value), f"{expr} = {value}. \\boxed{{{value}}}",
            {"expression": expr, "canonical": f"arithmetic:{expr}"})


def _arithmetic_check(digits: int = 1, terms: int = 2, ops: str = "+-*") -> None:
    arithmetic(random.Random(0), digits, terms, ops)


def _arithmetic_count(digits: int = 1, terms: int = 2, ops: str = "+-*") -> int:
    _arithmetic_check(digits, terms, ops)
    return 10 ** (digits * terms) * len(set(ops)) ** (terms - 1)


def _arithmetic_canonicals(digits: int = 1, terms: int = 2, ops: str = "+-*") -> Iterator[str]:
    numbers = [str(n) for n in range(10**digits)]
    for nums in itertools.product(numbers, repeat=terms):
        for chosen in itertools.product(sorted(set(ops)), repeat=terms - 1):
            yield "arithmetic:" + nums[0] + "".join(f" {o} {n}" for o, n in zip(chosen, nums[1:]))


ARITHMETIC_SPACE = SpaceModel(_arithmetic_count, _arithmetic_canonicals)


def linear_equations(rng: random.Random, coef_max: int = 9, solution_max: int = 10) -> Fields:
    """``a x + b = c`` with an integer solution."""
    _need(isinstance(coef_max, int) and coef_max >= 1, "coef_max", "an integer >= 1")
    _need(isinstance(solution_max, int) and solution_max >= 1, "solution_max", "an integer >= 1")
    a = rng.choice([k for k in range(-coef_max, coef_max + 1) if k not in (0,)])
    x = rng.randint(-solution_max, solution_max)
    b = rng.randint(-coef_max * 3, coef_max * 3)
    c = a * x + b
    lhs = f"{a}x" if a not in (1, -1) else ("x" if a == 1 else "-x")
    lhs += f" + {b}" if b > 0 else (f" - {-b}" if b < 0 else "")
    ref = f"{a}x = {c - b}, so x = {x}. \\boxed{{{x}}}"
    return f"Solve for x: {lhs} = {c}.", str(x), ref, {"a": a, "b": b, "c": c, "canonical": f"linear:{a},{b},{c}"}


def _linear_count(coef_max: int = 9, solution_max: int = 10) -> int:
    linear_equations(random.Random(0), coef_max, solution_max)
    return 2 * coef_max * (2 * solution_max + 1) * (6 * coef_max + 1)


def _linear_canonicals(coef_max: int = 9, solution_max: int = 10) -> Iterator[str]:
    for a in (k for k in range(-coef_max, coef_max + 1) if k):
        for x in range(-solution_max, solution_max + 1):
            for b in range(-coef_max * 3, coef_max * 3 + 1):
                yield f"linear:{a},{b},{a * x + b}"


LINEAR_SPACE = SpaceModel(_linear_count, _linear_canonicals)


def _tex(q: Fraction) -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def fractions(rng: random.Random, den_max: int = 9, terms: int = 2, ops: str = "+-") -> Fields:
    """Sums and products of fractions; the answer is the reduced fraction."""
    _need(isinstance(den_max, int) and den_max >= 2, "den_max", "an integer >= 2")
    _need(isinstance(terms, int) and 2 <= terms <= 6, "terms", "an integer in 2..6")
    _need(bool(ops) and set(ops) <= set("+-*"), "ops", "a non-empty string of + - *")
    pairs = [(rng.randint(1, den_max), rng.randint(2, den_max)) for _ in range(terms)]
    chosen = [rng.choice(ops) for _ in range(terms - 1)]
    text, value = f"{pairs[0][0]}/{pairs[0][1]}", Fraction(*pairs[0])
    for k, (o, (n, d)) in enumerate(zip(chosen, pairs[1:])):
        if o == "*" and k > 0:
            text = f"({text})"  # left to right, so the written precedence is the computed one
        text += f" {o} {n}/{d}"
        f = Fraction(n, d)
        value = value + f if o == "+" else value - f if o == "-" else value * f
    ans = _tex(value)
    return (f"Compute {text}. Give the answer as a reduced fraction.", ans, f"{text} = {ans}. \\boxed{{{ans}}}",
            {"canonical": f"fractions:{text}"})


def _fractions_count(den_max: int = 9, terms: int = 2, ops: str = "+-") -> int:
    fractions(random.Random(0), den_max, terms, ops)
    return (den_max * (den_max - 1)) ** terms * len(set(ops)) ** (terms - 1)


def _fractions_canonicals(den_max: int = 9, terms: int = 2, ops: str = "+-") -> Iterator[str]:
    pairs = [(n, d) for n in range(1, den_max + 1) for d in range(2, den_max + 1)]
    for chosen_pairs in itertools.product(pairs, repeat=terms):
        for chosen in itertools.product(sorted(set(ops)), repeat=terms - 1):
            text = f"{chosen_pairs[0][0]}/{chosen_pairs[0][1]}"
            for k, (o, (n, d)) in enumerate(zip(chosen, chosen_pairs[1:])):
                if o == "*" and k > 0:
                    text = f"({text})"
                text += f" {o} {n}/{d}"
            yield f"fractions:{text}"


FRACTIONS_SPACE = SpaceModel(_fractions_count, _fractions_canonicals)
