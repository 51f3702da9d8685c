"""Countdown: reach a target with the given numbers, each used once (TinyZero / d1 style).

    gymnasium.make("evalgym/countdown-v0", data_dir="../shared/data")  # the d1 3-number test set
    gymnasium.make("evalgym/countdown-gen-v0", count=3, max_number=20)  # unlimited, seeded

The reference solution comes from an exhaustive search over expressions (small counts only).
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from functools import lru_cache
from typing import Any, Mapping

from evalgym.data import load_rows
from evalgym.envs.sources import Fields, GeneratedSource, RowsSource
from evalgym.errors import EvalgymError

INSTRUCTION = ("Use each number exactly once with + - * / and parentheses. "
               "Give the final expression in <answer> </answer> tags, for example <answer>(1 + 2) * 3</answer>.")


@lru_cache(maxsize=4096)
def solve(numbers: tuple[int, ...], target: int) -> str | None:
    """An expression using every number once that equals target, or None."""
    def search(items: tuple[tuple[Fraction, str], ...]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = tuple(x for k, x in enumerate(items) if k not in (i, j))
            cands = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"{ea} * {eb}")]
            if b != 0:
                cands.append((a / b, f"{ea} / ({eb})" if " " in eb else f"{ea} / {eb}"))
            for value, text in cands:
                found = search(rest + ((value, text),))
                if found:
                    return found
        return None

    found = search(tuple((Fraction(n), str(n)) for n in numbers))
    if found and found.startswith("(") and found.endswith(")"):
        inner = found[1:-1]
        depth, balanced = 0, True
        for c in inner:
            depth += (c == "(") - (c == ")")
            balanced &= depth >= 0
        found = inner if balanced else found
    return found


def _fields(numbers: list[int], target: int) -> Fields:
    question = f"Numbers: {', '.join(map(str, numbers))}. Target: {target}."
    expr = solve(tuple(numbers), target)
    reference = f"<answer>{expr}</answer>" if expr else ""
    return question, str(target), reference, {"numbers": list(numbers), "target": target}


def row_fields(row: Mapping[str, Any]) -> Fields:
    if "input" in row:  # d1: {"input": "30,100,93", "output": "23"}
        numbers = [int(x) for x in str(row["input"]).split(",")]
        target = int(row["output"])
    else:  # Jiayi-Pan/Countdown-Tasks-3to4: {"nums": [...], "target": N}
        numbers, target = [int(x) for x in row["nums"]], int(row["target"])
    return _fields(numbers, target)


def generate(rng: random.Random, count: int = 3, max_number: int = 20) -> Fields:
    """Draw numbers, then a target reachable by a random expression over them."""
    if not (isinstance(count, int) and 2 <= count <= 5):
        raise EvalgymError("bad knob 'count': an integer in 2..5")
    if not (isinstance(max_number, int) and max_number >= 2):
        raise EvalgymError("bad knob 'max_number': an integer >= 2")
    numbers = [rng.randint(1, max_number) for _ in range(count)]
    order = numbers[:]
    rng.shuffle(order)
    value = Fraction(order[0])
    for n in order[1:]:
        op = rng.choice("+-*" if value * n <= 1000 else "+-")
        value = value + n if op == "+" else value - n if op == "-" else value * n
    if value < 0:
        value = -value if solve(tuple(numbers), int(-value)) else value
    return _fields(numbers, int(value))


def countdown_source(info: Any, split: str = "test", data_dir: str | None = None,
                     instruction: str = INSTRUCTION) -> RowsSource:
    if split != "test":
        raise EvalgymError(f"countdown: unknown split {split!r}; available: ['test']")
    rows = load_rows("countdown/countdown_cd3_test.jsonl", hub=("Jiayi-Pan/Countdown-Tasks-3to4", None, "train"),
                     data_dir_=data_dir)
    return RowsSource(info, rows, row_fields, split=split, instruction=instruction)


def countdown_gen_source(info: Any, seed: int = 0, instruction: str = INSTRUCTION, **knobs: Any) -> GeneratedSource:
    return GeneratedSource(info, generate, seed=seed, instruction=instruction, **knobs)
