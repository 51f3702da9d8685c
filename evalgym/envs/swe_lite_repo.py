"""Procedural Python repositories with seeded bugs, for the ``swe-lite`` env.

    repo = generate_repo(random.Random(7), modules=2, functions=3, bugs=1)
    repo.buggy        # {"repo/acme/ledger.py": ..., "repo/tests/test_ledger.py": ..., "repo/README.md": ...}
    repo.fixed        # the package files as they were before the bug: the reference patch
    repo.hidden_tests # plain asserts over every function (graded by the code harness in a fresh copy)

A repository is a package of ``modules`` modules of ``functions`` small pure functions each (drawn from
templates with seeded constants, names unique across the package), a visible ``unittest`` suite (3 cases a
function) and hidden tests (5 other cases a function). Expected values come from running the correct
functions here, on code this module generated (trusted). ``bugs`` functions are then mutated, one seeded
AST mutation each (a comparison, arithmetic or boolean operator swapped, a constant off by one), and a
mutation is kept only if it makes at least one visible and at least one hidden case fail, so every buggy
repository fails its hidden tests and can be diagnosed from its visible ones; the reference (the code before
the mutation) passes all of them.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from typing import Any, Callable

PACKAGES = ("acme", "toolkit", "corelib", "utilkit", "mathbox", "textops", "ledgerly", "gridwork")
MODULES = ("ledger", "metrics", "text", "grid", "codec", "stats", "stock", "sched", "scores", "units")


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 40) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdeflmnorstuz ,.!") for _ in range(rng.randint(3, 14)))


# name, source template (NAME and constants filled by .format), constants drawn, argument generator
Template = tuple[str, str, Callable[[random.Random], dict[str, int]], Callable[[random.Random], tuple]]
TEMPLATES: list[Template] = [
    ("clamp", "def {name}(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
     lambda r: {}, lambda r: (r.randint(-30, 30), r.randint(-10, 0), r.randint(1, 10))),
    ("scale", "def {name}(xs):\n    return [x * {k} + {b} for x in xs]\n",
     lambda r: {"k": r.randint(2, 7), "b": r.randint(-5, 9)}, lambda r: (_ints(r, r.randint(1, 6)),)),
    ("count_mod", "def {name}(xs):\n    n = 0\n    for x in xs:\n        if x % {m} == {rem}:\n            n += 1\n"
     "    return n\n", lambda r: {"m": (m := r.randint(2, 5)), "rem": r.randint(0, m - 1)},
     lambda r: (_ints(r, r.randint(3, 9)),)),
    ("running_total", "def {name}(xs):\n    out = []\n    total = {start}\n    for x in xs:\n        total += x\n"
     "        out.append(total)\n    return out\n", lambda r: {"start": r.randint(0, 3)},
     lambda r: (_ints(r, r.randint(1, 7)),)),
    ("window_max", "def {name}(xs, w):\n    if w <= 0 or w > len(xs):\n        return []\n"
     "    return [max(xs[i:i + w]) for i in range(len(xs) - w + 1)]\n",
     lambda r: {}, lambda r: (_ints(r, r.randint(2, 8)), r.randint(1, 4))),
    ("digit_sum", "def {name}(n):\n    n = abs(n)\n    s = 0\n    while n > 0:\n        s += n % {base}\n"
     "        n //= {base}\n    return s\n", lambda r: {"base": r.choice((10, 10, 8, 16))},
     lambda r: (r.randint(-5000, 99999),)),
    ("shift_letters", "def {name}(s):\n    out = []\n    for ch in s:\n        if 'a' <= ch <= 'z':\n"
     "            out.append(chr((ord(ch) - 97 + {k}) % 26 + 97))\n        else:\n            out.append(ch)\n"
     "    return ''.join(out)\n", lambda r: {"k": r.randint(1, 25)}, lambda r: (_word(r),)),
    ("run_length", "def {name}(s):\n    if not s:\n        return []\n    out = []\n    cur, n = s[0], 1\n"
     "    for ch in s[1:]:\n        if ch == cur:\n            n += 1\n        else:\n            out.append((cur, n))\n"
     "            cur, n = ch, 1\n    out.append((cur, n))\n    return out\n",
     lambda r: {}, lambda r: ("".join(r.choice("aab") for _ in range(r.randint(0, 9))),)),
    ("poly", "def {name}(x):\n    return {a} * x * x + {b} * x + {c}\n",
     lambda r: {"a": r.randint(1, 5), "b": r.randint(-6, 6), "c": r.randint(-9, 9)}, lambda r: (r.randint(-12, 12),)),
    ("top_k", "def {name}(xs, k):\n    if k <= 0:\n        return []\n    return sorted(xs, reverse=True)[:k]\n",
     lambda r: {}, lambda r: (_ints(r, r.randint(2, 8)), r.randint(0, 4))),
    ("bucket", "def {name}(x):\n    if x < {t1}:\n        return 'low'\n    if x < {t2}:\n        return 'mid'\n"
     "    return 'high'\n", lambda r: {"t1": (t := r.randint(-5, 10)), "t2": t + r.randint(3, 12)},
     lambda r: (r.randint(-15, 30),)),
    ("mean_floor", "def {name}(xs):\n    if not xs:\n        return 0\n    return sum(xs) // len(xs)\n",
     lambda r: {}, lambda r: (_ints(r, r.randint(0, 7), 0, 50),)),
    ("both_divisible", "def {name}(n):\n    if n % {a} == 0 and n % {b} == 0:\n        return 'both'\n"
     "    if n % {a} == 0 or n % {b} == 0:\n        return 'one'\n    return 'none'\n",
     lambda r: {"a": (a := r.randint(2, 4)), "b": a + r.randint(1, 3)}, lambda r: (r.randint(0, 60),)),
    ("gcd", "def {name}(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)\n",
     lambda r: {}, lambda r: (r.randint(0, 120), r.randint(1, 90))),
    ("count_words", "def {name}(s):\n    return len([w for w in s.split() if len(w) >= {n}])\n",
     lambda r: {"n": r.randint(2, 4)}, lambda r: (" ".join(_word(r).strip() for _ in range(r.randint(1, 5))),)),
]


@dataclass(frozen=True)
class Function:
    module: str
    name: str
    source: str
    cases_visible: tuple[tuple[tuple, Any], ...]
    cases_hidden: tuple[tuple[tuple, Any], ...]


@dataclass(frozen=True)
class Repo:
    package: str
    modules: tuple[str, ...]
    buggy: dict[str, str]          # every file of the repository the model gets (paths under repo/)
    fixed: dict[str, str]          # the package's files before the bugs (the reference patch)
    hidden_tests: str
    bugs: tuple[dict[str, str], ...]  # (function, mutation) of each bug


class _OutOfSteps(Exception):
    pass


def _run(source: str, name: str, args: tuple, steps: int = 20000) -> tuple[bool, Any]:
    """Run a generated function on ``args`` (a mutant may loop forever: at most ``steps`` traced lines)."""
    import sys

    ns: dict[str, Any] = {}
    left = [steps]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != name:
            return None
        if event == "line":
            left[0] -= 1
            if left[0] < 0:
                raise _OutOfSteps
        return tracer

    try:
        exec(compile(source, name, "exec"), ns)  # noqa: S102  (code this module generated)
        sys.settrace(tracer)
        try:
            return True, ns[name](*[list(a) if isinstance(a, list) else a for a in args])
        finally:
            sys.settrace(None)
    except _OutOfSteps:
        return False, "too slow"
    except Exception as exc:  # noqa: BLE001
        return False, type(exc).__name__


class _Mutator(ast.NodeTransformer):
    """Applies mutation number ``pick`` of the function (counting sites in a fixed walk order)."""

    SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Mod: ast.FloorDiv,
             ast.FloorDiv: ast.Mod, ast.And: ast.Or, ast.Or: ast.And}

    def __init__(self, pick: int):
        self.pick, self.seen, self.what = pick, 0, ""

    def _site(self, label: str) -> bool:
        hit = self.seen == self.pick
        self.seen += 1
        if hit:
            self.what = label
        return hit

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        op = node.ops[0]
        if type(op) in self.SWAPS and self._site(f"comparison {type(op).__name__} -> {self.SWAPS[type(op)].__name__}"):
            node.ops[0] = self.SWAPS[type(op)]()
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if type(node.op) in self.SWAPS and self._site(f"operator {type(node.op).__name__} -> "
                                                      f"{self.SWAPS[type(node.op)].__name__}"):
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        if type(node.op) in (ast.Add, ast.Sub) and self._site(f"augmented {type(node.op).__name__}"):
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if self._site(f"boolean {type(node.op).__name__} -> {self.SWAPS[type(node.op)].__name__}"):
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if type(node.value) is int and self._site(f"constant {node.value} -> {node.value + 1}"):
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def mutate(source: str, pick: int) -> tuple[str, str] | None:
    """Mutation ``pick`` of a function's source: (new source, what changed), or None past the last site."""
    m = _Mutator(pick)
    tree = m.visit(ast.parse(source))
    if not m.what:
        return None
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n", m.what


def _cases(rng: random.Random, source: str, name: str, draw: Callable, n: int) -> list[tuple[tuple, Any]]:
    out: list[tuple[tuple, Any]] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        args = draw(rng)
        ok, value = _run(source, name, args)
        if ok and repr(args) not in seen:
            seen.add(repr(args))
            out.append((args, value))
            if len(out) == n:
                break
    return out


def _fails(source: str, name: str, cases: Any) -> bool:
    return any(_run(source, name, args) != (True, want) for args, want in cases)


def _module_text(funcs: list[Function]) -> str:
    return '"""Helpers."""\n\n\n' + "\n\n".join(f.source for f in funcs)


def _test_text(package: str, module: str, funcs: list[Function]) -> str:
    lines = ["import unittest", "", f"from {package}.{module} import {', '.join(f.name for f in funcs)}", "", "",
             f"class Test{module.capitalize()}(unittest.TestCase):"]
    for f in funcs:
        lines.append(f"    def test_{f.name}(self):")
        lines += [f"        self.assertEqual({f.name}{_call(args)}, {want!r})" for args, want in f.cases_visible]
        lines.append("")
    lines += ["", 'if __name__ == "__main__":', "    unittest.main()", ""]
    return "\n".join(lines)


def _call(args: tuple) -> str:
    return "(" + ", ".join(repr(a) for a in args) + ")"


def generate_repo(rng: random.Random, modules: int = 2, functions: int = 3, bugs: int = 1) -> Repo:
    if not 1 <= modules <= len(MODULES) or not 1 <= functions <= len(TEMPLATES) or not 1 <= bugs <= modules * functions:
        raise ValueError(f"swe-lite: modules in 1..{len(MODULES)}, functions in 1..{len(TEMPLATES)}, bugs in "
                         f"1..modules*functions; got modules={modules}, functions={functions}, bugs={bugs}")
    package = rng.choice(PACKAGES)
    mods = rng.sample(MODULES, modules)
    by_module: dict[str, list[Function]] = {}
    for mod in mods:
        funcs = []
        for base, text, consts, draw in rng.sample(TEMPLATES, functions):
            name = f"{mod}_{base}"
            source = ast.unparse(ast.parse(text.format(name=name, **consts(rng)))) + "\n"  # one formatting for all
            cases = _cases(rng, source, name, draw, 8)
            funcs.append(Function(mod, name, source, tuple(cases[:3]), tuple(cases[3:])))
        by_module[mod] = funcs
    fixed = {f"repo/{package}/{mod}.py": _module_text(fs) for mod, fs in by_module.items()}
    applied: list[dict[str, str]] = []
    candidates = [f for fs in by_module.values() for f in fs]
    rng.shuffle(candidates)
    for f in candidates:
        if len(applied) == bugs:
            break
        picks = list(range(40))
        rng.shuffle(picks)
        for pick in picks:
            got = mutate(f.source, pick)
            if got is None:
                continue
            src, what = got
            if _fails(src, f.name, f.cases_visible) and _fails(src, f.name, f.cases_hidden):
                fs = by_module[f.module]
                fs[fs.index(f)] = Function(f.module, f.name, src, f.cases_visible, f.cases_hidden)
                applied.append({"function": f.name, "module": f.module, "mutation": what})
                break
    if len(applied) < bugs:
        raise ValueError("swe-lite: could not place the bugs")  # a redraw (next rng state) will
    buggy = {f"repo/{package}/__init__.py": f'"""The {package} package."""\n', "repo/tests/__init__.py": ""}
    buggy.update({f"repo/{package}/{mod}.py": _module_text(fs) for mod, fs in by_module.items()})
    buggy.update({f"repo/tests/test_{mod}.py": _test_text(package, mod, fs) for mod, fs in by_module.items()})
    buggy["repo/README.md"] = (f"# {package}\n\nSmall helpers in `{package}/`. Run the tests from this folder:\n\n"
                               "    python3 -m unittest -q\n")
    hidden = "\n".join(f"assert {f.name}{_call(args)} == {want!r}" for fs in by_module.values() for f in fs
                       for args, want in f.cases_visible + f.cases_hidden) + "\n"
    return Repo(package, tuple(mods), buggy, fixed, hidden, tuple(applied))
