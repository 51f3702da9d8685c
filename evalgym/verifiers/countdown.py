"""Countdown grader: the answer is an arithmetic expression that uses every given number exactly once
(``+ - * /`` and parentheses) and evaluates to the target.

    grade([30, 100, 93], 23, "<answer>100 - 93 + 30 - ...</answer>")

A ``<think>…</think>`` section is cut first (``CountdownVerifier(think=...)`` sets other tags, None keeps
it). The expression is taken from the last ``<answer>…</answer>`` or ``\\boxed{}``, else the last line that
has an ``=`` (left side) or the last line. It is evaluated by walking its Python AST with exact
fractions: no ``eval``, only numbers, the four operations and parentheses.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction
from typing import Any, Sequence

from evalgym.types import Problem
from evalgym.verifiers.base import PooledVerifier
from evalgym.verifiers.math_extract import THINK, find_boxed

NAME = "countdown"
VERSION = "2"  # 2: a <think> section is cut before extraction
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


class BadExpression(ValueError):
    pass


def _eval(node: ast.AST, used: list[int], depth: int = 0) -> Fraction:
    if depth > 50:
        raise BadExpression("expression nested too deeply")
    if isinstance(node, ast.Expression):
        return _eval(node.body, used, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left, used, depth + 1), _eval(node.right, used, depth + 1)
        if isinstance(node.op, ast.Div) and right == 0:
            raise BadExpression("division by zero")
        return _OPS[type(node.op)](left, right)
    raise BadExpression(f"only integers, + - * / and parentheses are allowed, found {type(node).__name__}")


def extract_expression(response: str) -> str | None:
    tags = re.findall(r"<answer>(.*?)</answer>", response, re.S | re.I)
    boxes = [b for b in find_boxed(response) if b]
    text = tags[-1] if tags else boxes[-1] if boxes else None
    if text is None:
        lines = [ln for ln in response.strip().splitlines() if re.search(r"\d", ln)]
        if not lines:
            return None
        text = lines[-1]
    text = text.replace("\\times", "*").replace("\\cdot", "*").replace("×", "*").replace("÷", "/")
    text = text.replace("\\div", "/").replace("$", "").replace("−", "-")
    if "=" in text:
        text = text.split("=")[0]
    if not (tags or boxes):  # a free-text line: keep its last run of expression characters
        runs = [r for r in re.findall(r"[\d\s+\-*/().]+", text) if re.search(r"\d", r)]
        text = runs[-1] if runs else ""
    return text.strip() or None


def grade(numbers: Sequence[int], target: int, response: str) -> dict[str, Any]:
    expr = extract_expression(response)
    details: dict[str, Any] = {"extracted": expr}
    if expr is None:
        return {"reward": 0.0, "correct": False, "details": {**details, "reason": "no expression found"}}
    if len(expr) > 200:
        return {"reward": 0.0, "correct": False, "details": {**details, "reason": "expression too long"}}
    used: list[int] = []
    try:
        value = _eval(ast.parse(expr, mode="eval"), used)
    except (SyntaxError, BadExpression, ValueError) as exc:
        return {"reward": 0.0, "correct": False, "details": {**details, "reason": f"bad expression: {exc}"[:200]}}
    if Counter(used) != Counter(int(n) for n in numbers):
        reason = f"uses {sorted(used)}, must use each of {sorted(numbers)} exactly once"
        return {"reward": 0.0, "correct": False, "details": {**details, "reason": reason}}
    ok = value == target
    details["value"] = str(value)
    details["reason"] = "reaches the target" if ok else f"evaluates to {value}, not {target}"
    return {"reward": 1.0 if ok else 0.0, "correct": ok, "details": details}


class CountdownVerifier(PooledVerifier):
    name = NAME
    version = VERSION
    default_think = THINK
    modules = ("evalgym.verifiers.countdown",)
    grade = staticmethod(grade)

    def args(self, problem: Problem, response: str) -> tuple:
        return (tuple(problem.extra["numbers"]), int(problem.extra["target"]), response)
