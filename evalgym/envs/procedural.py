"""Procedural math generators for small models trained on CPU: unlimited, seeded, with difficulty knobs.

Each generator is ``f(rng: random.Random, **knobs) -> (question, answer, reference, extra)``; problem
``i`` of an env with seed ``s`` uses ``Random(s + i)``.

    gymnasium.make("evalgym/arithmetic-v0", digits=1, terms=2, ops="+-")
    gymnasium.make("evalgym/linear-equations-v0", coef_max=5)
    gymnasium.make("evalgym/fractions-v0", den_max=6)
"""

from __future__ import annotations

import random
from fractions import Fraction

from evalgym.envs.sources import Fields
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
    return f"Compute {expr}.", str(value), f"{expr} = {value}. \\boxed{{{value}}}", {"expression": expr}


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
    return f"Solve for x: {lhs} = {c}.", str(x), ref, {"a": a, "b": b, "c": c}


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
    return f"Compute {text}. Give the answer as a reduced fraction.", ans, f"{text} = {ans}. \\boxed{{{ans}}}", {}
