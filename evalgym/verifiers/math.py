"""The math grader: is a model's final answer equivalent to the gold answer?

    grade("\\frac{1}{2}", "... so the answer is $0.5$.")   # pure, in-process -> {"reward": 1.0, ...}
    MathVerifier().check("1/2", response)                  # in a worker process, 1 s budget -> Verdict
    evalgym verify math --gold 1/2 --pred 0.5

Pipeline: ``math_extract`` finds the final answer in the response; ``math_parse`` normalizes it and
parses it into a sympy value or a structure (equation, interval, set, tuple, list of solutions,
matrix, choice letter); this file decides equivalence: exactly where it can (rationals, structure),
numerically where it must (irrationals, symbolic expressions at fixed points).

Choices made (and tested in tests/verifiers): numbers agree to a relative 1e-6, or to the precision
the gold was written with ("0.33" accepts 1/3); expressions agree when they are equal at 8 fixed
mixed-sign points, exactly where both are rational there, else to 30 digits (identities, trigonometric
ones included; ``|x|`` is not ``x``); "x = 5" answers "5", and "x + y = 17" answers "17" when the
question (``grade(..., question=)``) asks for x + y; comma lists of solutions are unordered, tuples
ordered; ``\\pm`` expands to both signs; a percent or degree sign may be dropped; units are ignored
unless both sides write known ones that differ (``5 m^2`` vs ``5 m^3``), and a letter after a number is
a variable (``3x^2`` is not ``3x^3``); a text gold (a name) is compared as words. Reward hacks are not
correct: hedged answers (several different boxes offered as alternatives, "5 or 6", enumerations),
empty answers, ``\\pm`` where one value is asked; a last box presented as a correction is the answer.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any, Sequence

import sympy

from evalgym.types import Problem, Verdict
from evalgym.verifiers.math_extract import MATH_SPAN, THINK, extract_answer
from evalgym.verifiers.math_normalize import normalize
from evalgym.verifiers.math_parse import MAX_ANSWER, PM, ParseError, ProseError, is_huge, parse_answer
from evalgym.verifiers.base import PooledVerifier

NAME = "math"
VERSION = "2"
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


# Points at which expressions are compared: mixed signs, not integers, not simple fractions of pi's
# multiples, so |x| vs x, x + sin(pi x) vs x and (x-1)(x-2)(x-3) + x vs x all differ at some of them.
_BASE_POINTS = tuple(sympy.Rational(n, 1000) for n in (1370, -2290, 710, -830, 1610, -470, 2930, -1190, 530, -3070))
N_POINTS = 8
MIN_DEFINED = 4


def _points(symbols: Sequence[sympy.Symbol]) -> list[dict[sympy.Symbol, sympy.Rational]]:
    n = len(_BASE_POINTS)
    return [{s: _BASE_POINTS[(j + 3 * i) % n] * (1 + sympy.Rational(i, 7)) for i, s in enumerate(symbols)}
            for j in range(N_POINTS)]


def _value_at(e: sympy.Basic, point: dict) -> sympy.Basic | complex | None:
    """The exact value when it is rational, else a 30-digit complex; None where ``e`` is undefined."""
    v = e.subs(point)
    if v.is_Rational:
        return v
    return _num(v)


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
        # Identities (trigonometric ones included) by evaluation at N_POINTS fixed points: exactly where
        # both sides are rational there (polynomials, rational functions), else to 30 digits. Every point
        # where both are defined must agree, and at least MIN_DEFINED must be defined.
        defined = 0
        for point in _points(symbols):
            gv, pv = _value_at(g, point), _value_at(p, point)
            if gv is None and pv is None:
                continue
            if gv is None or pv is None:
                return False
            if isinstance(gv, sympy.Basic) and isinstance(pv, sympy.Basic):
                if gv != pv:
                    return False
            elif not _close(complex(gv), complex(pv), 1e-12):
                return False
            defined += 1
        return defined >= MIN_DEFINED
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


def _rhs_if_assignment(v: Any, asked: Any = None) -> Any:
    """The value an equation states: ``x = 5``, ``f(2) = 8`` as the question asks for ``f(2)``,
    ``x + y = 17`` as it asks for ``x + y``, ``8^2 = 64`` (a true statement about numbers); else ``v``."""
    if isinstance(v, tuple) and v[0] == "eq":
        lhs, rhs = v[1], v[2]
        if isinstance(lhs, sympy.Symbol) or (isinstance(lhs, sympy.Basic) and lhs.is_Function):
            return rhs
        if isinstance(rhs, sympy.Symbol):
            return lhs
        if not (isinstance(lhs, sympy.Basic) and isinstance(rhs, sympy.Basic)):
            return v
        if asked is not None and expr_equal(asked, lhs):
            return rhs
        if not lhs.free_symbols and not rhs.free_symbols and expr_equal(lhs, rhs):
            return rhs
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


def _match_unordered(gs: Sequence[Any], ps: Sequence[Any], dec: int | None, asked: Any = None) -> bool:
    if len(gs) != len(ps):
        return False
    left = list(ps)
    for g in gs:
        for k, p in enumerate(left):
            if equivalent(g, p, dec, asked):
                del left[k]
                break
        else:
            return False
    return True


def equivalent(g: Any, p: Any, dec: int | None = None, asked: Any = None) -> bool:
    """Whether parsed pred ``p`` answers parsed gold ``g`` (``asked``: the expression the question asks
    for, parsed, when known)."""
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
        g2, p2 = _rhs_if_assignment(g, asked), _rhs_if_assignment(p, asked)
        return (g2 is not g or p2 is not p) and equivalent(g2, p2, dec)
    gm, pm = _members(g), _members(p)
    if gm is not None and pm is not None:
        return _match_unordered(gm, pm, dec, asked)
    if gm is not None and len(gm) == 1:
        return equivalent(gm[0], p, dec, asked)
    if pm is not None and len(pm) == 1:
        return equivalent(g, pm[0], dec, asked)
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


_ASK = re.compile(r"\b(?:what\s+is|what's|find|compute|calculate|determine|evaluate|value\s+of)\b", re.I)


@functools.lru_cache(maxsize=1024)
def asked_expression(question: str) -> Any:
    """The expression a question asks for: the first math span after its last "what is" / "find" /
    "compute"..., parsed (``"... what is $x + y$?"`` -> x + y); None when there is none."""
    last = None
    for last in _ASK.finditer(question[-3000:]):
        pass
    if last is None:
        return None
    m = MATH_SPAN.search(question[-3000:], last.end(), last.end() + 300)
    if not m:
        return None
    value = _parsed(next(g for g in m.groups() if g is not None))[0]
    return value if isinstance(value, sympy.Basic) else None


def _words(norm: str) -> str:
    """A text answer as lower-case words, without punctuation or a leading article."""
    w = re.sub(r"[^a-z0-9]+", " ", norm.lower()).strip()
    return re.sub(r"^(?:the|a|an) ", "", w)


def _units_differ(gflags: frozenset[str], pflags: frozenset[str]) -> bool:
    """Both answers carry known units and they are not the same (``m^2`` vs ``m^3``); a generic ``units``
    matches any unit of the same power; a plain noun ("apples") is never compared."""
    gu = next((f[5:] for f in gflags if f.startswith("unit:")), None)
    pu = next((f[5:] for f in pflags if f.startswith("unit:")), None)
    if gu is None or pu is None or "?" in (gu, pu) or gu == pu:
        return False
    if "/" not in gu + pu and "unit" in (gu.split("^")[0], pu.split("^")[0]):
        return gu.partition("^")[2] != pu.partition("^")[2]
    return True


def compare(gold: str, answer: str, question: str = "") -> tuple[bool, str]:
    """Equivalence of two answer strings (no extraction). Returns (equal, reason)."""
    if len(answer) > 2 * MAX_ANSWER:
        return False, f"answer longer than {MAX_ANSWER} characters"
    gv, gflags, gnorm = _parsed(gold)
    pv, pflags, pnorm = _parsed(answer)
    if _units_differ(gflags, pflags):
        return False, "different units"
    if gnorm == pnorm and gnorm:
        return True, "identical after normalization"
    # A text gold (a name, a day): the same words, or wrong. Also a gold of letters only that happens to
    # parse ("No" = N*o) when the answer is words ("no").
    if isinstance(gv, ProseError) or (isinstance(pv, ProseError) and re.fullmatch(r"[A-Za-z][A-Za-z ]*", gnorm)):
        same = _words(gnorm) == _words(pnorm) != ""
        return same, "same text" if same else "different text"
    if isinstance(gv, ParseError):
        raise GoldError(f"gold answer does not parse: {gv}")
    if isinstance(pv, ParseError):
        return False, f"answer does not parse: {pv}"
    if "choice" in gflags or "choice" in pflags:
        return (gv == pv), "choice letters"
    dec = _decimals(gnorm)
    if equivalent(gv, pv, dec, asked_expression(question) if question else None):
        return True, "equivalent"
    if ("percent" in gflags) != ("percent" in pflags) and isinstance(gv, sympy.Basic) and isinstance(pv, sympy.Basic):
        scaled = pv / 100 if "percent" in pflags else pv * 100
        if expr_equal(gv, scaled):
            return True, "equivalent up to a percent sign"
    return False, "not equivalent"


def grade(gold: str, response: str, question: str = "", think: tuple[str, str] | None = THINK) -> dict[str, Any]:
    """Grade one response against a gold answer, in-process. Pure; never raises.

    ``question``: the problem's text, when known (lets ``x + y = 17`` answer "what is $x + y$?").
    ``think``: the (open, close) tags of a reasoning section to drop before extracting; None keeps all."""
    try:
        ext = extract_answer(response, think=think)
        details: dict[str, Any] = {"extracted": ext.answer, "source": ext.source}
        if ext.answer is None:
            details["reason"] = ext.reason
            return {"reward": 0.0, "correct": False, "details": details}
        ok, reason = compare(gold, ext.answer, question)
        if not ok and ext.fallback is not None and reason.startswith("answer does not parse"):
            details["extracted"], details["source"] = ext.fallback, "bare_fallback"
            ok, reason = compare(gold, ext.fallback, question)
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

    default_think = THINK
    handles_think = True  # extraction cuts it, and says so when it was never closed

    def args(self, problem: Problem, response: str) -> tuple:
        question = "\n".join(m.content for m in problem.messages if m.role == "user")
        return (problem.answer, response, question, self.think)

    def check(self, gold: str, response: str, question: str = "") -> Verdict:
        return self.run([(gold, response, question, self.think)])[0]

    def check_batch(self, pairs: Sequence[tuple[str, ...]]) -> list[Verdict]:
        """``(gold, response)`` or ``(gold, response, question)`` tuples."""
        return self.run([(*p, "")[:3] + (self.think,) for p in pairs])
