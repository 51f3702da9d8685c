"""The math grader: is a model's final answer equivalent to the gold answer?

    grade("\\frac{1}{2}", "... so the answer is $0.5$.")   # pure, in-process -> {"reward": 1.0, ...}
    MathVerifier().check("1/2", response)                  # in a worker process, 1 s budget -> Verdict
    evalgym verify math --gold 1/2 --pred 0.5

Pipeline: ``math_extract`` finds the final answer in the response; ``math_parse`` normalizes it and
parses it into a sympy value or a structure (equation, interval, set, tuple, list of solutions,
matrix, choice letter); this file decides equivalence: exactly where it can (rationals, structure),
numerically where it must (irrationals, symbolic expressions at seeded random points).

Choices made (and tested in tests/verifiers): numbers agree to a relative 1e-6, or to the precision
the gold was written with ("0.33" accepts 1/3); "x = 5" answers "5"; comma lists of solutions are
unordered, tuples ordered; ``\\pm`` expands to both signs; a percent or degree sign may be dropped;
units and ``\\text{}`` are ignored. Reward hacks are not correct: hedged answers (several boxes, "5 or
6", enumerations), empty answers, ``\\pm`` where one value is asked.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any, Sequence

import sympy

from evalgym.types import Problem, Verdict
from evalgym.verifiers.math_extract import extract_answer
from evalgym.verifiers.math_normalize import normalize
from evalgym.verifiers.math_parse import MAX_ANSWER, PM, ParseError, is_huge, parse_answer
from evalgym.verifiers.base import PooledVerifier

NAME = "math"
VERSION = "1"
REL_TOL = 1e-6
_HUGE = 10**7


class _TooBig(Exception):
    pass


@functools.lru_cache(maxsize=8192)
def _parsed(answer: str) -> tuple[Any, frozenset[str], str]:
    """(value, flags, normalized text); value is a ParseError when the answer does not parse."""
    norm, flags = normalize(answer)
    try:
        value: Any = parse_answer(norm) if "choice" not in flags else ("choice", norm)
    except ParseError as exc:
        value = exc
    return value, frozenset(flags), norm


# -- numbers and expressions ---------------------------------------------------------------------

def _num(e: sympy.Basic) -> complex | None:
    if is_huge(e):  # towers: refuse numeric evaluation rather than hang
        raise _TooBig
    v = e.evalf(30)
    if v.has(sympy.nan, sympy.zoo) or not v.is_number:
        return None
    if v in (sympy.oo, -sympy.oo):
        return complex(float(v), 0.0)
    re_, im = v.as_real_imag()
    try:
        return complex(float(re_), float(im))
    except (TypeError, OverflowError):
        return None


def _close(a: complex, b: complex, rel: float = REL_TOL) -> bool:
    if a == b:
        return True
    if any(map(lambda z: z != z or abs(z) == float("inf"), (a.real, a.imag, b.real, b.imag))):
        return False
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _decimals(text: str) -> int | None:
    """Digits after the point when the gold is a plain decimal like ``0.33``."""
    m = re.fullmatch(r"-?\d*\.(\d+)", text)
    return len(m.group(1)) if m else None


def expr_equal(g: sympy.Basic, p: sympy.Basic, gold_decimals: int | None = None) -> bool:
    if g == p:
        return True
    if is_huge(g) or is_huge(p):  # towers and their functions: only identical forms are decidable in budget
        return False
    symbols = sorted((g.free_symbols | p.free_symbols) - {PM}, key=str)
    try:
        if not symbols:
            if g.is_Rational and p.is_Rational:  # exact numbers compare exactly: 5 != 5.0000001
                return gold_decimals is not None and round(float(p), gold_decimals) == round(float(g), gold_decimals)
            gv, pv = _num(g), _num(p)
            if gv is None or pv is None:
                return False
            if _close(gv, pv):
                return True
            if gold_decimals is not None and gv.imag == 0 and pv.imag == 0:
                return round(pv.real, gold_decimals) == round(gv.real, gold_decimals)
            return False
        if g.free_symbols - {PM} != p.free_symbols - {PM}:
            return False
        rng = random.Random(1234)
        agree = 0
        for _ in range(6):
            point = {s: sympy.Float(rng.randint(-97, 97) / rng.randint(1, 13), 30) for s in symbols}
            gv, pv = _num(g.subs(point)), _num(p.subs(point))
            if gv is None and pv is None:
                continue
            if gv is None or pv is None or not _close(gv, pv, 1e-9):
                return False
            agree += 1
            if agree == 3:
                return True
        return agree > 0
    except _TooBig:
        return False
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError, AttributeError):
        return False


# -- structures ----------------------------------------------------------------------------------

def _expand_pm(v: Any) -> Any:
    if isinstance(v, sympy.Basic) and v.has(PM):
        return ("list", (v.subs(PM, 1), v.subs(PM, -1)))
    return v


def _as_interval(v: Any) -> Any:
    """``x > 3`` -> ``("seq", "(", ")", (3, oo))``; ``x < 2 or x > 3`` -> a union; others unchanged."""
    if isinstance(v, tuple) and v[0] == "list" and all(isinstance(i, tuple) and i[0] == "rel" for i in v[1]):
        parts = tuple(_as_interval(i) for i in v[1])
        return ("union", parts) if all(p[0] == "seq" for p in parts) else v
    if not (isinstance(v, tuple) and v[0] == "rel"):
        return v
    exprs, ops = v[1], v[2]
    var = [e for e in exprs if isinstance(e, sympy.Symbol)]
    if len(var) != 1 or any(o == "!=" for o in ops):
        return v
    if len(exprs) == 2:
        x_left = exprs[0] == var[0]
        op, bound = ops[0], exprs[1] if x_left else exprs[0]
        upper = (op in ("<", "<=")) == x_left
        closed = "=" in op
        if upper:
            return ("seq", "(", "]" if closed else ")", (-sympy.oo, bound))
        return ("seq", "[" if closed else "(", ")", (bound, sympy.oo))
    if len(exprs) == 3 and exprs[1] == var[0] and ops[0][0] == ops[1][0] == "<":
        return ("seq", "[" if ops[0] == "<=" else "(", "]" if ops[1] == "<=" else ")", (exprs[0], exprs[2]))
    return v


def _rhs_if_assignment(v: Any) -> Any:
    if isinstance(v, tuple) and v[0] == "eq":
        lhs, rhs = v[1], v[2]
        if isinstance(lhs, sympy.Symbol) or (isinstance(lhs, sympy.Basic) and lhs.is_Function):
            return rhs
        if isinstance(rhs, sympy.Symbol):
            return lhs
    return v


def _members(v: Any) -> tuple[Any, ...] | None:
    if isinstance(v, tuple) and v[0] in ("list", "set"):
        out: list[Any] = []
        for item in v[1]:
            expanded = _expand_pm(item)
            out.extend(expanded[1] if expanded is not item else (item,))
        return tuple(out)
    return None


def _proportional(a: sympy.Basic, b: sympy.Basic) -> bool:
    """a = c * b for a nonzero constant c, checked at seeded random points (equations up to scaling)."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols or a.free_symbols != b.free_symbols:
        return False
    rng = random.Random(99)
    ratios = []
    for _ in range(4):
        point = {s: sympy.Rational(rng.randint(-97, 97), rng.randint(1, 13)) for s in symbols}
        av, bv = _num(a.subs(point)), _num(b.subs(point))
        if av is None or bv is None or bv == 0:
            continue
        ratios.append(av / bv)
    return len(ratios) >= 2 and ratios[0] != 0 and all(_close(r, ratios[0], 1e-9) for r in ratios)


def _match_unordered(gs: Sequence[Any], ps: Sequence[Any], dec: int | None) -> bool:
    if len(gs) != len(ps):
        return False
    left = list(ps)
    for g in gs:
        for k, p in enumerate(left):
            if equivalent(g, p, dec):
                del left[k]
                break
        else:
            return False
    return True


def equivalent(g: Any, p: Any, dec: int | None = None) -> bool:
    """Whether parsed pred ``p`` answers parsed gold ``g``."""
    g, p = _as_interval(_expand_pm(g)), _as_interval(_expand_pm(p))
    if isinstance(g, sympy.Basic) and isinstance(p, sympy.Basic):
        return expr_equal(g, p, dec)
    gt = g[0] if isinstance(g, tuple) else "expr"
    pt = p[0] if isinstance(p, tuple) else "expr"
    if gt == "eq" and pt == "eq":
        if g[1] == p[1]:
            return equivalent(g[2], p[2], dec)
        if not all(isinstance(x, sympy.Basic) for x in (g[1], g[2], p[1], p[2])):
            return False
        try:
            return _proportional(g[1] - g[2], p[1] - p[2])
        except (_TooBig, TypeError, ValueError, ZeroDivisionError, OverflowError):
            return False
    if gt == "eq" or pt == "eq":
        g2, p2 = _rhs_if_assignment(g), _rhs_if_assignment(p)
        return (g2 is not g or p2 is not p) and equivalent(g2, p2, dec)
    gm, pm = _members(g), _members(p)
    if gm is not None and pm is not None:
        return _match_unordered(gm, pm, dec)
    if gm is not None and len(gm) == 1:
        return equivalent(gm[0], p, dec)
    if pm is not None and len(pm) == 1:
        return equivalent(g, pm[0], dec)
    if gt == pt == "seq":
        return (g[1], g[2]) == (p[1], p[2]) and len(g[3]) == len(p[3]) and \
            all(equivalent(a, b, dec) for a, b in zip(g[3], p[3]))
    if gt == pt == "union":
        return _match_unordered(g[1], p[1], dec)
    if gt == pt == "matrix":
        return len(g[1]) == len(p[1]) and all(
            len(r1) == len(r2) and all(equivalent(a, b, dec) for a, b in zip(r1, r2))
            for r1, r2 in zip(g[1], p[1]))
    if gt == pt == "choice":
        return g[1] == p[1]
    if gt == pt == "rel":
        return g[2] == p[2] and len(g[1]) == len(p[1]) and all(equivalent(a, b, dec) for a, b in zip(g[1], p[1]))
    return False


# -- grading -------------------------------------------------------------------------------------

class GoldError(ValueError):
    """The gold answer itself cannot be read: a dataset problem, reported as Verdict.error."""


def compare(gold: str, answer: str) -> tuple[bool, str]:
    """Equivalence of two answer strings (no extraction). Returns (equal, reason)."""
    if len(answer) > 2 * MAX_ANSWER:
        return False, f"answer longer than {MAX_ANSWER} characters"
    gv, gflags, gnorm = _parsed(gold)
    pv, pflags, pnorm = _parsed(answer)
    if gnorm == pnorm and gnorm:
        return True, "identical after normalization"
    if isinstance(gv, ParseError):
        raise GoldError(f"gold answer does not parse: {gv}")
    if isinstance(pv, ParseError):
        return False, f"answer does not parse: {pv}"
    if "choice" in gflags or "choice" in pflags:
        return (gv == pv), "choice letters"
    dec = _decimals(gnorm)
    if equivalent(gv, pv, dec):
        return True, "equivalent"
    if ("percent" in gflags) != ("percent" in pflags) and isinstance(gv, sympy.Basic) and isinstance(pv, sympy.Basic):
        scaled = pv / 100 if "percent" in pflags else pv * 100
        if expr_equal(gv, scaled):
            return True, "equivalent up to a percent sign"
    return False, "not equivalent"


def grade(gold: str, response: str) -> dict[str, Any]:
    """Grade one response against a gold answer, in-process. Pure; never raises."""
    try:
        ext = extract_answer(response)
        details: dict[str, Any] = {"extracted": ext.answer, "source": ext.source}
        if ext.answer is None:
            details["reason"] = ext.reason
            return {"reward": 0.0, "correct": False, "details": details}
        ok, reason = compare(gold, ext.answer)
        if not ok and ext.fallback is not None and reason.startswith("answer does not parse"):
            details["extracted"], details["source"] = ext.fallback, "bare_fallback"
            ok, reason = compare(gold, ext.fallback)
        details["reason"] = reason
        return {"reward": 1.0 if ok else 0.0, "correct": ok, "details": details}
    except RecursionError:
        return {"reward": 0.0, "correct": False, "details": {"reason": "answer nested too deeply"}}
    except GoldError as exc:
        return {"reward": 0.0, "correct": False, "error": str(exc), "details": {"gold": gold[:200]}}
    except Exception as exc:  # noqa: BLE001 - a bug in the grader is reported as an error, not a 0
        return {"reward": 0.0, "correct": False, "error": f"internal: {type(exc).__name__}: {exc}"[:300],
                "details": {}}


class MathVerifier(PooledVerifier):
    """The math grader behind the env contract: every check in a worker process under ``budget_s``."""

    name = NAME
    version = VERSION
    modules = ("evalgym.verifiers.math",)
    grade = staticmethod(grade)

    def args(self, problem: Problem, response: str) -> tuple:
        return (problem.answer, response)

    def check(self, gold: str, response: str) -> Verdict:
        return self.run([(gold, response)])[0]

    def check_batch(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        return self.run([tuple(p) for p in pairs])
