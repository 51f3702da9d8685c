"""Parse a normalized answer (LaTeX or plain text) into a value that can be compared.

Values: a sympy expression; or a tagged tuple for structure:
``("eq", lhs, rhs)``, ``("rel", exprs, ops)`` (inequality chain), ``("seq", open, close, items)``
(tuple or interval), ``("set", items)``, ``("list", items)`` (comma-separated solutions),
``("union", parts)``, ``("matrix", rows)``, ``("choice", "B")``.

A ``\\pm`` inside an expression becomes the symbol ``PM``; the comparer expands it to both signs.
The parser is a small recursive-descent parser: no eval, bounded depth and length, and big powers or
factorials are left unevaluated so that building the value can never hang.

    parse_answer(normalize("$\\dfrac{1}{2}$")[0])  ->  Rational(1, 2)   # normalize: math_normalize.py
"""

from __future__ import annotations

import re
from typing import Any

import sympy
from sympy import Integer, Rational, Symbol

PM = Symbol("PM")
MAX_ANSWER = 1500
MAX_DEPTH = 120


class ParseError(ValueError):
    pass


class ProseError(ParseError):
    """The answer is words (a name, a day, "yes"), not mathematics."""


# -- tokenizer -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<num>\d+\.\d*|\.\d+|\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|])|(?P<id>[a-zA-Z])"
    r"|(?P<op>\*\*|<=|>=|!=|\\\\|[-+*/^_(){}\[\],;=<>!|&':])|(?P<ws>\s+)"
)
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
          "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
          "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_RELOPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "\\le": "<=", "\\leq": "<=",
           "\\ge": ">=", "\\geq": ">=", "\\lt": "<", "\\gt": ">", "\\ne": "!=", "\\neq": "!=",
           "\\leqslant": "<=", "\\geqslant": ">="}
_SYMPY_FUNCS = {"sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "sec": sympy.sec, "csc": sympy.csc,
                "cot": sympy.cot, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
                "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "ln": sympy.log, "exp": sympy.exp}


def tokenize(s: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append((kind, m.group(0)))
    return out


def _pow(base: Any, exp: Any) -> Any:
    big = (exp.is_Number and abs(exp) > 2000) or (exp.is_Number is False and not exp.free_symbols)
    if big and base.is_Number:
        return sympy.Pow(base, exp, evaluate=False)
    if exp.is_Integer and abs(exp) > 64 and (base.free_symbols or base.is_Add):
        return sympy.Pow(base, exp, evaluate=False)
    return sympy.Pow(base, exp)


def is_huge(x: Any) -> bool:
    """Holds a value too large to evaluate or to take functions of: a power tower or a power above
    10^300-ish, an integer above 10^300, or a factorial/binomial left unevaluated for its size
    (sin(10^10^10) would need 10^10 digits of pi)."""
    for n in sympy.preorder_traversal(x):
        if isinstance(n, sympy.Pow) and n.exp.is_number and not n.exp.is_zero and \
                (n.exp.has(sympy.Pow, sympy.factorial) or abs(n.exp) > 300):
            return True
        if n.is_Integer and abs(n) > 10**300:
            return True
        if isinstance(n, (sympy.factorial, sympy.binomial)) and n.args[0].is_Number and abs(n.args[0]) > 500:
            return True
    return False


def _is_expr(v: Any) -> bool:
    return isinstance(v, sympy.Basic)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.t = tokens
        self.i = 0
        self.depth = 0
        self._last_was_frac = False

    # helpers
    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def val(self) -> str | None:
        p = self.peek()
        return p[1] if p else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        p = self.peek()
        if p is None:
            raise ParseError("unexpected end of answer")
        if expected is not None and p[1] != expected:
            raise ParseError(f"expected {expected!r}, got {p[1]!r}")
        self.i += 1
        return p

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("answer nested too deeply")

    # grammar
    def answer(self) -> Any:
        items = self.items(stop=())
        if self.peek() is not None:
            raise ParseError(f"unexpected {self.val()!r}")
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def items(self, stop: tuple[str, ...]) -> list[Any]:
        out = [self.union()]
        while self.val() in (",", ";"):
            self.take()
            if self.peek() is None or self.val() in stop:
                break
            out.append(self.union())
        return out

    def union(self) -> Any:
        first = self.relation()
        if self.val() != "\\cup":
            return first
        parts = [first]
        while self.val() == "\\cup":
            self.take()
            parts.append(self.relation())
        return ("union", tuple(parts))

    def relation(self) -> Any:
        exprs = [self.expr()]
        ops: list[str] = []
        while self.val() in _RELOPS:
            ops.append(_RELOPS[self.take()[1]])
            exprs.append(self.expr())
        if not ops:
            return exprs[0]
        if ops == ["="]:
            return ("eq", exprs[0], exprs[1])
        if "=" in ops:
            raise ParseError("chained equation")
        return ("rel", tuple(exprs), tuple(ops))

    def expr(self) -> Any:
        self.enter()
        left = self.term()
        while self.val() in ("+", "-", "\\pm", "\\mp"):
            op = self.take()[1]
            right = self.term()
            left = self._arith(op, left, right)
        self.depth -= 1
        return left

    def _arith(self, op: str, a: Any, b: Any) -> Any:
        if not (_is_expr(a) and _is_expr(b)):
            raise ParseError("arithmetic on a tuple, set or relation")
        if is_huge(a) or is_huge(b):  # keep towers inert: sympy's auto-simplification would evaluate them
            if op in ("\\pm", "\\mp"):
                raise ParseError("\\pm with an astronomically large term")
            if op == "-":
                b, op = sympy.Mul(-1, b, evaluate=False), "+"
            if op == "/":
                b, op = sympy.Pow(b, -1, evaluate=False), "*"
            return sympy.Add(a, b, evaluate=False) if op == "+" else sympy.Mul(a, b, evaluate=False)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op in ("\\pm", "\\mp"):
            return a + PM * b if op == "\\pm" else a - PM * b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        raise ParseError(op)

    def term(self) -> Any:
        left = self.unary()
        while True:
            v = self.val()
            if v in ("*", "\\cdot", "\\times", "/", "\\div"):
                self.take()
                op = "/" if v in ("/", "\\div") else "*"
                left = self._arith(op, left, self.unary())
            elif self._starts_atom():
                right = self.unary(implicit=True)
                if _is_expr(left) and left.is_Integer and _is_expr(right) and right.is_Rational \
                        and not right.is_Integer and self._last_was_frac:
                    left = left + right if left >= 0 else left - right  # mixed number 2\frac{1}{2}
                else:
                    left = self._arith("*", left, right)
            else:
                return left

    def _starts_atom(self) -> bool:
        p = self.peek()
        if p is None:
            return False
        kind, v = p
        if kind in ("num", "id"):
            return True
        if kind == "cmd":
            return v not in _RELOPS and v not in ("\\cdot", "\\times", "\\div", "\\pm", "\\mp", "\\cup",
                                                   "\\end", "\\}", "\\in")
        return v in ("(", "[", "{")

    def unary(self, implicit: bool = False) -> Any:
        v = self.val()
        if v in ("-", "+", "\\pm", "\\mp") and not implicit:
            self.take()
            inner = self.unary()
            if not _is_expr(inner):
                raise ParseError("sign before a tuple or set")
            return {"-": -inner, "+": inner, "\\pm": PM * inner, "\\mp": -PM * inner}[v]
        return self.power()

    def power(self) -> Any:
        self._last_was_frac = False
        base = self.postfix()
        if self.val() in ("^", "**"):
            self.take()
            if self.val() in ("-", "+"):
                sign = -1 if self.take()[1] == "-" else 1
                exp = sign * self.arg()
            else:
                exp = self.arg()
            if not (_is_expr(base) and _is_expr(exp)):
                raise ParseError("power of a tuple or set")
            self._last_was_frac = False
            return _pow(base, exp)
        return base

    def postfix(self) -> Any:
        a = self.atom()
        while self.val() in ("!", "'"):
            if self.take()[1] == "'":
                raise ParseError("primes are not supported")
            if not _is_expr(a) or (a.is_Number and abs(a) > 500):
                a = sympy.factorial(a, evaluate=False)
            else:
                a = sympy.factorial(a)
        return a

    def arg(self) -> Any:
        """A LaTeX macro argument: ``{...}`` or a single token (``\\frac12``: one digit)."""
        p = self.peek()
        if p is None:
            raise ParseError("missing argument")
        if p[1] == "{":
            self.take()
            inner = self.relation()
            self.take("}")
            return inner
        if p[0] == "num" and len(p[1]) > 1 and "." not in p[1]:
            self.t[self.i] = ("num", p[1][1:])
            return Integer(p[1][0])
        return self.postfix()

    def atom(self) -> Any:
        self.enter()
        try:
            return self._atom()
        finally:
            self.depth -= 1

    def _atom(self) -> Any:
        kind, v = self.take()
        if kind == "num":
            if self.val() == "_" and "." not in v:  # 204_5: a numeral in base 5
                self.take()
                base = self.arg()
                if not (_is_expr(base) and base.is_Integer and 2 <= base <= 36):
                    raise ParseError("bad numeral base")
                try:
                    return Integer(int(v, int(base)))
                except ValueError:
                    raise ParseError(f"{v} is not a base-{base} numeral") from None
            return Rational(v) if "." in v else Integer(v)
        if kind == "id":
            if self.val() == "_":
                self.take()
                sub = self.arg()
                return Symbol(f"{v}_{sub}")
            return {"i": sympy.I, "e": sympy.E}.get(v, Symbol(v))
        if v in ("(", "["):
            return self.bracketed(v)
        if v == "{":
            inner = self.items(stop=("}",))
            self.take("}")
            return inner[0] if len(inner) == 1 else ("set", tuple(inner))
        if v == "\\{":
            if self.val() == "\\}":
                self.take()
                return ("set", ())
            inner = self.items(stop=("\\}",))
            self.take("\\}")
            return ("set", tuple(inner))
        if v in ("|", "\\|", "\\vert"):
            inner = self.expr()
            self.take(v)
            if not _is_expr(inner):
                raise ParseError("absolute value of a tuple")
            return sympy.Abs(inner)
        if kind == "cmd":
            return self.command(v[1:])
        raise ParseError(f"unexpected {v!r}")

    def bracketed(self, open_: str) -> Any:
        items = self.items(stop=(")", "]"))
        close = self.take()[1]
        if close not in (")", "]"):
            raise ParseError(f"unclosed {open_!r}")
        if len(items) == 1 and open_ == "(" and close == ")":
            return items[0]
        if len(items) == 1 and open_ == "[" and close == "]" and _is_expr(items[0]):
            return items[0]
        return ("seq", open_, close, tuple(items))

    def command(self, name: str) -> Any:
        if name == "frac":
            num, den = self.arg(), self.arg()
            if not (_is_expr(num) and _is_expr(den)):
                raise ParseError("\\frac of a tuple")
            self._last_was_frac = True
            return num / den
        if name == "sqrt":
            index = Integer(2)
            if self.val() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            body = self.arg()
            if not _is_expr(body):
                raise ParseError("\\sqrt of a tuple")
            if is_huge(body):
                return sympy.Pow(body, 1 / index, evaluate=False)
            return sympy.root(body, index)
        if name == "binom":
            n, k = self.arg(), self.arg()
            big = any(_is_expr(a) and a.is_Number and abs(a) > 10**4 for a in (n, k))
            return sympy.binomial(n, k, evaluate=not big)
        if name == "pi":
            return sympy.pi
        if name == "infty":
            return sympy.oo
        if name in ("emptyset", "varnothing"):
            return ("set", ())
        if name in _GREEK:
            return Symbol(name)
        if name == "begin":
            return self.matrix()
        if name == "log":
            base = None
            if self.val() == "_":
                self.take()
                base = self.arg()
            x = self.func_arg()
            if not _is_expr(x) or (base is not None and not _is_expr(base)):
                raise ParseError("\\log of a tuple")
            if is_huge(x) or (base is not None and is_huge(base)):
                return sympy.log(x, evaluate=False)
            return sympy.log(x, base) if base is not None else sympy.log(x)
        if name in _SYMPY_FUNCS:
            power = None
            if self.val() == "^":
                self.take()
                power = self.arg()
            x = self.func_arg()
            if not _is_expr(x):
                raise ParseError(f"\\{name} of a tuple")
            out = _SYMPY_FUNCS[name](x, evaluate=not is_huge(x))
            return _pow(out, power) if power is not None else out
        raise ParseError(f"unsupported command \\{name}")

    def func_arg(self) -> Any:
        """A function's argument: ``{...}``, ``(...)``, or without brackets the run of numbers, letters and
        Greek letters that follows, as written: ``\\sin 2x`` is sin(2x), ``\\sin x \\cos x`` is sin(x) cos(x),
        ``\\sin x^2`` is sin(x^2)."""
        if self.val() == "{":
            return self.arg()
        if self.val() == "(":
            return self.unary(implicit=True)
        x = self.unary(implicit=True)
        while self._starts_plain_factor():
            right = self.power()
            if not (_is_expr(x) and _is_expr(right)):
                raise ParseError("function of a tuple")
            x = self._arith("*", x, right)
        return x

    def _starts_plain_factor(self) -> bool:
        p = self.peek()
        return p is not None and (p[0] in ("num", "id") or p[1] == "\\pi" or p[1][1:] in _GREEK)

    def matrix(self) -> Any:
        self.take("{")
        env = ""
        while self.val() not in ("}", None):
            env += self.take()[1]
        self.take("}")
        if env not in ("pmatrix", "bmatrix", "matrix", "Bmatrix", "smallmatrix", "array"):
            raise ParseError(f"unsupported environment {env}")
        if env == "array" and self.val() == "{":  # column spec
            while self.take()[1] != "}":
                pass
        rows: list[tuple[Any, ...]] = []
        row: list[Any] = []
        while True:
            if self.val() == "\\end":
                self.take()
                self.take("{")
                while self.take()[1] != "}":
                    pass
                break
            row.append(self.expr())
            if self.val() == "\\end":
                continue
            sep = self.take()[1]
            if sep == "&":
                continue
            if sep == "\\\\":
                rows.append(tuple(row))
                row = []
                continue
            raise ParseError(f"unexpected {sep!r} in matrix")
        if row:
            rows.append(tuple(row))
        return ("matrix", tuple(rows))


_PROSE = re.compile(r"(?<![\\a-zA-Z])(?:[a-zA-Z]{3,}|so|is|it|or|an|as|at|be|by|if|in|of|on|to|we|no)(?![a-zA-Z])")


def parse_answer(s: str) -> Any:
    """Parse a normalized answer. Raises ParseError for what is not a well-formed answer."""
    if not s:
        raise ParseError("empty answer")
    word = _PROSE.search(re.sub(r"\\(?:begin|end)\{\w+\}", "", s))
    if word:
        raise ProseError(f"prose in the answer ({word.group(0)!r})")
    if len(s) > MAX_ANSWER:
        raise ParseError(f"answer longer than {MAX_ANSWER} characters")
    try:
        return _Parser(tokenize(s)).answer()
    except RecursionError:
        raise ParseError("answer nested too deeply") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(f"{type(exc).__name__}: {exc}"[:200]) from None
