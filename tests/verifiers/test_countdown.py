"""The countdown grader (``evalgym.verifiers.countdown``).

Covers: correct expressions reach the target; each given number must be used exactly once (reuse,
a missing number and duplicates in the given numbers); exact fraction arithmetic in division;
division by zero; injection attempts (``__import__``, attribute access, ``**``, lambda, calls,
comprehensions, non-integer literals) score 0 with a reason and never run; where the expression is
read from (``<answer>`` before ``\\boxed{}``, the last tag wins, ``\\times``, a trailing ``= target``);
and ``CountdownVerifier().verify_batch`` (worker processes) on all 256 references of the d1 test set.
"""

from __future__ import annotations

import gymnasium
import pytest

from evalgym.types import Problem
from evalgym.verifiers.countdown import CountdownVerifier, extract_expression, grade


def _ok(numbers, target, response):
    r = grade(numbers, target, response)
    assert set(r) >= {"reward", "correct", "details"}
    return r


@pytest.mark.parametrize("numbers,target,expr", [
    ([30, 100, 93], 23, "93 + (30 - 100)"),
    ([30, 100, 93], 23, "93 - 100 + 30"),
    ([2, 3, 4], 24, "2 * 3 * 4"),
    ([2, 3, 4], 14, "(3 + 4) * 2"),
    ([3, 3, 5], 11, "3 + 3 + 5"),          # duplicates in the given numbers
    ([6, 4, 3], 8, "6 / 3 * 4"),
    ([6, 4, 3], 8, "4 / 3 * 6"),           # 4/3 is not a float: exact fractions give exactly 8
    ([7, 2, 10], 35, "7 / 2 * 10"),
    ([1, 3, 9], 2, "9 / 3 - 1"),
])
def test_correct_expression(numbers, target, expr):
    r = _ok(numbers, target, f"reasoning...\n<answer>{expr}</answer>")
    assert r["reward"] == 1.0 and r["correct"] is True, r
    assert r["details"]["extracted"] == expr
    assert r["details"]["reason"] == "reaches the target"


def test_wrong_value():
    r = _ok([2, 3, 4], 10, "<answer>2 + 3 + 4</answer>")
    assert (r["reward"], r["correct"]) == (0.0, False)
    assert "evaluates to 9" in r["details"]["reason"]


def test_inexact_division_is_not_rounded():
    r = _ok([7, 2, 1], 3, "<answer>7 / 2 * 1</answer>")  # 3.5, not 3
    assert r["reward"] == 0.0
    assert r["details"]["value"] == "7/2"


@pytest.mark.parametrize("numbers,target,expr", [
    ([2, 3, 4], 9, "2 + 3 + 4 + 4"),       # reuse
    ([2, 3, 4], 5, "2 + 3"),               # missing number
    ([2, 3, 4], 12, "3 * 4"),              # missing number, right value
    ([3, 3, 5], 13, "3 + 5 + 5"),          # one 3 given twice, 5 used twice
    ([3, 3, 5], 8, "3 + 5"),               # a duplicate given number left unused
    ([2, 3, 4], 24, "2 * 3 * 4 * 1"),      # extra number
    ([2, 3, 4], 9, "23 + 4 - 18"),         # digits glued into other numbers
])
def test_each_number_exactly_once(numbers, target, expr):
    r = _ok(numbers, target, f"<answer>{expr}</answer>")
    assert (r["reward"], r["correct"]) == (0.0, False), r
    assert "exactly once" in r["details"]["reason"]


def test_division_by_zero():
    r = _ok([5, 3, 3], 1, "<answer>5 / (3 - 3)</answer>")
    assert r["reward"] == 0.0
    assert "division by zero" in r["details"]["reason"]


@pytest.mark.parametrize("expr,node", [
    ("__import__('os').system('touch /tmp/evalgym_pwned')", "Call"),
    ("(2).real + 3 + 4", "Attribute"),
    ("(2).__class__.__mro__", "Attribute"),
    ("2 ** 3 + 4", "BinOp"),
    ("9 ** 9 ** 9 + 2 + 3 + 4", "BinOp"),
    ("lambda: 2 + 3 + 4", "Lambda"),
    ("(lambda: 9)()", "Call"),
    ("[x for x in (2, 3, 4)]", "ListComp"),
    ("2.0 + 3 + 4", "Constant"),
    ("True + 3 + 4", "Constant"),
    ("'2' + 3 + 4", "Constant"),
    ("-2 + 3 + 4", "UnaryOp"),
    ("2 // 3 + 4", "BinOp"),
    ("2 % 3 + 4", "BinOp"),
    ("x + 3 + 4", "Name"),
])
def test_injection_and_foreign_syntax_rejected(expr, node, tmp_path):
    r = _ok([2, 3, 4], 9, f"<answer>{expr}</answer>")
    assert (r["reward"], r["correct"]) == (0.0, False), r
    assert node in r["details"]["reason"], r["details"]
    assert not (tmp_path / "evalgym_pwned").exists()


@pytest.mark.parametrize("expr", ["import os", "2 + 3; 4", "2 +", "exec('1')  # 2 3 4"])
def test_unparseable_or_statement_rejected(expr):
    r = _ok([2, 3, 4], 9, f"<answer>{expr}</answer>")
    assert r["reward"] == 0.0 and r["details"]["reason"].startswith("bad expression")


def test_too_long_expression_rejected():
    expr = "+".join(["0"] * 150) + "+2+3+4"
    r = _ok([2, 3, 4], 9, f"<answer>{expr}</answer>")
    assert r["reward"] == 0.0 and r["details"]["reason"] == "expression too long"


def test_no_expression():
    r = _ok([2, 3, 4], 9, "I do not know.")
    assert r["reward"] == 0.0 and r["details"]["extracted"] is None


def test_answer_tag_preferred_over_boxed():
    assert extract_expression(r"\boxed{2 * 3 * 4} then <answer>2 + 3 + 4</answer>") == "2 + 3 + 4"
    assert _ok([2, 3, 4], 9, r"<answer>2 + 3 + 4</answer> \boxed{2 * 3 * 4}")["reward"] == 1.0
    assert _ok([2, 3, 4], 24, r"<answer>2 + 3 + 4</answer> \boxed{2 * 3 * 4}")["reward"] == 0.0


def test_boxed_when_no_tag():
    r = _ok([2, 3, 4], 24, r"So the answer is $\boxed{2 \times 3 \times 4}$.")
    assert r["reward"] == 1.0 and r["details"]["extracted"] == "2 * 3 * 4"
    assert _ok([6, 4, 3], 8, r"\boxed{6 \div 3 \cdot 4}")["reward"] == 1.0


def test_last_answer_tag_wins_and_rhs_dropped():
    r = _ok([2, 3, 4], 9, "<answer>2 + 3</answer> wait, <answer>2 + 3 + 4 = 9</answer>")
    assert r["reward"] == 1.0 and r["details"]["extracted"] == "2 + 3 + 4"
    assert _ok([2, 3, 4], 5, "<answer>2 + 3</answer> no: <answer>2 + 3 + 4</answer>")["reward"] == 0.0


def _problem(numbers, target):
    return Problem(id=f"cd/{target}", env_id="evalgym/countdown-v0", env_version=0, domain="countdown",
                   messages=(), answer=str(target), extra={"numbers": list(numbers), "target": target})


def test_verifier_returns_verdicts_with_reasons():
    v = CountdownVerifier()
    probs = [_problem([6, 4, 3], 8)] * 3
    verdicts = v.verify_batch(probs, ["<answer>6 / 3 * 4</answer>", "<answer>__import__('os')</answer>",
                                      "<answer>6 + 4 + 3</answer>"])
    assert [x.reward for x in verdicts] == [1.0, 0.0, 0.0]
    assert [x.correct for x in verdicts] == [True, False, False]
    assert all(x.error is None and x.verifier == "countdown" and x.verifier_version for x in verdicts)
    assert "Call" in verdicts[1].details["reason"]
    with pytest.raises(ValueError):
        v.verify_batch(probs, ["x"])


def test_d1_test_set_references_all_score_one(data_dir):
    env = gymnasium.make("evalgym/countdown-v0", data_dir=str(data_dir)).unwrapped
    assert env.source.size == 256
    problems = [env.source.problem(i) for i in range(env.source.size)]
    assert all(p.reference for p in problems), "some d1 problems have no reference solution"
    verdicts = CountdownVerifier().verify_batch(problems, [p.reference for p in problems])
    bad = [(p.id, p.extra["numbers"], p.answer, p.reference, v.error, dict(v.details))
           for p, v in zip(problems, verdicts) if v.reward != 1.0 or v.error]
    assert not bad, "references not scored 1.0:\n" + "\n".join(map(repr, bad[:20]))
    # and the grader is not trivially generous: every problem rejects a swapped answer
    swapped = CountdownVerifier().verify_batch(problems, [problems[(i + 1) % 256].reference for i in range(256)])
    assert sum(v.reward for v in swapped) < 10
