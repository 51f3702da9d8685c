"""Procedural function-writing tasks, seeded, with generated tests: easy enough for a tiny model on CPU.

    gymnasium.make("evalgym/code-gen-v1", seed=0, tasks="scale,add,reverse")

Problem ``i`` draws a task template and its constants from ``Random(seed + i)``; the reference solution
is the template's body, and the tests are asserts on inputs drawn from the same generator, with expected
values computed from the reference. What a problem *is* (its canonical content, which splits and
contamination checks compare) is the function asked for, ``code:scale:returns x multiplied by 3``; the
test inputs are not part of it. The default templates hold 41 such functions.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from evalgym.envs.sources import Fields, SpaceModel
from evalgym.errors import EvalgymError

# name -> (description, reference body, argument name, input generator(rng, k))
_INT = lambda rng, k: rng.randint(-20, 20)  # noqa: E731
_LIST = lambda rng, k: [rng.randint(-9, 9) for _ in range(rng.randint(1, 6))]  # noqa: E731
_STR = lambda rng, k: "".join(rng.choice("abcde") for _ in range(rng.randint(0, 8)))  # noqa: E731
TEMPLATES: dict[str, tuple[str, str, str, Callable[[random.Random, Any], Any]]] = {
    "scale": ("returns x multiplied by {k}", "return x * {k}", "x", _INT),
    "add": ("returns x plus {k}", "return x + {k}", "x", _INT),
    "is_multiple": ("returns True if x is divisible by {k}, else False", "return x % {k} == 0", "x", _INT),
    "total": ("returns the sum of the numbers in the list xs", "return sum(xs)", "xs", _LIST),
    "largest": ("returns the largest number in the non-empty list xs", "return max(xs)", "xs", _LIST),
    "squares": ("returns a list of the squares of the numbers in xs", "return [v * v for v in xs]", "xs", _LIST),
    "reverse": ("returns the string s reversed", "return s[::-1]", "s", _STR),
    "count": ("returns how many times the letter '{c}' appears in s", "return s.count('{c}')", "s", _STR),
    "repeat": ("returns the string s repeated {k} times", "return s * {k}", "s", _STR),
}


def _names(tasks: str, tests: int) -> list[str]:
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [n for n in names if n not in TEMPLATES]
    if unknown or not names:
        raise EvalgymError(f"bad knob 'tasks': unknown {unknown}; choose from {sorted(TEMPLATES)}")
    if not (isinstance(tests, int) and 1 <= tests <= 20):
        raise EvalgymError("bad knob 'tests': an integer in 1..20")
    return names


def generate(rng: random.Random, tasks: str = ",".join(TEMPLATES), tests: int = 4) -> Fields:
    names = _names(tasks, tests)
    name = rng.choice(names)
    desc, body, arg, draw = TEMPLATES[name]
    k, c = rng.randint(2, 9), rng.choice("abcde")
    desc, body = desc.format(k=k, c=c), body.format(k=k, c=c)
    program = f"def {name}({arg}):\n    {body}\n"
    namespace: dict[str, Any] = {}
    exec(program, namespace)  # noqa: S102 - our own template, to compute expected values
    cases = [draw(rng, k) for _ in range(tests)]
    asserts = "\n".join(f"assert {name}({v!r}) == {namespace[name](v)!r}" for v in cases)
    question = f"Write a Python function `{name}({arg})` that {desc}.\nFor example:\n{asserts.splitlines()[0]}"
    extra = {"test": asserts, "entry_point": name, "prompt": "", "prelude": "", "check": False,
             "canonical": f"code:{name}:{desc}"}
    return question, program, f"```python\n{program}```", extra


def _canonicals(tasks: str = ",".join(TEMPLATES), tests: int = 4) -> list[str]:
    out = set()
    for name in _names(tasks, tests):
        desc = TEMPLATES[name][0]
        for k in range(2, 10):
            for c in "abcde":
                out.add(f"code:{name}:{desc.format(k=k, c=c)}")
    return sorted(out)


SPACE = SpaceModel(lambda **knobs: len(_canonicals(**knobs)), _canonicals)
