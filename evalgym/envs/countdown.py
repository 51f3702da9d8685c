"""Countdown: reach a target with the given numbers, each used once (TinyZero / d1 style).

    gymnasium.make("evalgym/countdown-v0", data_dir="../shared/data")  # the d1 3-number test set
    gymnasium.make("evalgym/countdown-gen-v1", count=3, max_number=20)  # unlimited, seeded; split="train"|"eval"

The reference solution comes from an exhaustive search over expressions (small counts only). A problem's
canonical content is its numbers (sorted: their order is wording) and target, the same for both envs, so
a d1 test problem drawn by the generator during training shows up as overlap.
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction
from functools import lru_cache
from typing import Any, Mapping

from evalgym.data import load_rows
from evalgym.envs.sources import Fields, GeneratedSource, RowsSource, SpaceModel
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
    canonical = f"countdown:{','.join(map(str, sorted(numbers)))}->{target}"
    return question, str(target), reference, {"numbers": list(numbers), "target": target, "canonical": canonical}


def row_fields(row: Mapping[str, Any]) -> Fields:
    if "input" in row:  # d1: {"input": "30,100,93", "output": "23"}
        numbers = [int(x) for x in str(row["input"]).split(",")]
        target = int(row["output"])
    else:  # Jiayi-Pan/Countdown-Tasks-3to4: {"nums": [...], "target": N}
        numbers, target = [int(x) for x in row["nums"]], int(row["target"])
    return _fields(numbers, target)


def _check(count: int, max_number: int) -> None:
    if not (isinstance(count, int) and 2 <= count <= 5):
        raise EvalgymError("bad knob 'count': an integer in 2..5")
    if not (isinstance(max_number, int) and max_number >= 2):
        raise EvalgymError("bad knob 'max_number': an integer >= 2")


def _target(numbers: tuple[int, ...], value: int) -> int:
    """A negative result becomes its absolute value when that is reachable too (targets read better)."""
    return -value if value < 0 and solve(tuple(numbers), -value) else value


def generate(rng: random.Random, count: int = 3, max_number: int = 20) -> Fields:
    """Draw numbers, then a target reachable by a random expression over them."""
    _check(count, max_number)
    numbers = [rng.randint(1, max_number) for _ in range(count)]
    order = numbers[:]
    rng.shuffle(order)
    value = order[0]
    for n in order[1:]:
        op = rng.choice("+-*" if value * n <= 1000 else "+-")
        value = value + n if op == "+" else value - n if op == "-" else value * n
    return _fields(numbers, _target(tuple(numbers), value))


def _reachable(order: tuple[int, ...]) -> set[int]:
    """Every value the generator's left-to-right expression over ``order`` can take."""
    values = {order[0]}
    for n in order[1:]:
        values = {v + n for v in values} | {v - n for v in values} | {v * n for v in values if v * n <= 1000}
    return values


@lru_cache(maxsize=16)
def _canonicals(count: int = 3, max_number: int = 20) -> frozenset[str]:
    _check(count, max_number)
    out = set()
    for numbers in itertools.combinations_with_replacement(range(1, max_number + 1), count):
        targets = {_target(numbers, v) for order in set(itertools.permutations(numbers)) for v in _reachable(order)}
        out.update(f"countdown:{','.join(map(str, numbers))}->{t}" for t in targets)
    return frozenset(out)


def _count(count: int = 3, max_number: int = 20) -> int | None:
    """Distinct (numbers, target) problems, by listing them; None when the listing is too large to do
    (more than ~2e5 multisets x orders x operator choices)."""
    _check(count, max_number)
    multisets = math.comb(max_number + count - 1, count)
    if multisets * math.factorial(count) * 3 ** (count - 1) > 200_000 or count > 3:
        return None
    return len(_canonicals(count, max_number))


SPACE = SpaceModel(_count, _canonicals)


def countdown_source(info: Any, split: str = "test", data_dir: str | None = None,
                     instruction: str = INSTRUCTION) -> RowsSource:
    if split != "test":
        raise EvalgymError(f"countdown: unknown split {split!r}; available: ['test']")
    rows = load_rows("countdown/countdown_cd3_test.jsonl", hub=("Jiayi-Pan/Countdown-Tasks-3to4", None, "train"),
                     data_dir_=data_dir)
    return RowsSource(info, rows, row_fields, split=split, instruction=instruction)


def countdown_gen_source(info: Any, seed: int = 0, split: str = "train", instruction: str = INSTRUCTION,
                         **knobs: Any) -> GeneratedSource:
    return GeneratedSource(info, generate, seed=seed, split=split, instruction=instruction, space=SPACE, **knobs)
