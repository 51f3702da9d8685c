"""The math grader against the hand-labelled tables and against hostile predictions.

Every row of ``math_cases.CASES`` goes through ONE ``MathVerifier().check_batch`` call (worker
processes, 1 s budget each); each row is then its own test, named ``<shape_tag>-<index>`` so a failure
reads as e.g. ``test_table_row[hack_pm-290]``. The same for issue 15's tables, rows with their question,
none of which may end in a grader error: ``math_cases_tune`` (tuned on) and ``math_cases_unseen``
(scored once, 246/247, before it became a regression table here: perf/results/math_verifier_unseen_once.md). ``HOSTILE`` predictions must each get a verdict within
the budget (plus scheduling slack) without raising. A few rows also go through ``grade()`` in-process.

    .venv/bin/python -m pytest tests/verifiers/test_math_table.py -q
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from math_cases import CASES, HOSTILE  # noqa: E402
from math_cases_tune import rows as tune_rows  # noqa: E402
from math_cases_unseen import rows as unseen_rows  # noqa: E402

try:
    from evalgym.verifiers.math import MathVerifier, grade
except ModuleNotFoundError as exc:  # the grader is still being written: skip, do not hide other errors
    if exc.name not in ("evalgym.verifiers.math", "evalgym.verifiers", "evalgym"):
        raise
    pytest.skip(f"evalgym.verifiers.math not importable yet: {exc}", allow_module_level=True)

BUDGET_S = 1.0
SLACK_S = 0.2
HOSTILE_GOLDS = ("5", r"\frac{1}{2}", "x^2+2x+1")


def _short(s: str, n: int = 60) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 3] + "..."


def _row_id(i: int) -> str:
    return f"{CASES[i][3]}-{i}"


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(budget_s=BUDGET_S)
    yield v
    close = getattr(v, "close", None)
    if callable(close):
        close()


@pytest.fixture(scope="module")
def table_verdicts(verifier):
    verdicts = verifier.check_batch([(gold, response) for gold, response, _, _ in CASES])
    assert len(verdicts) == len(CASES)
    return verdicts


@pytest.mark.parametrize("i", range(len(CASES)), ids=_row_id)
def test_table_row(table_verdicts, i):
    gold, response, expected, tag = CASES[i]
    v = table_verdicts[i]
    assert v.correct == expected, (
        f"[{tag}] gold={gold!r} response={_short(response, 200)!r}: expected correct={expected}, "
        f"got correct={v.correct} reward={v.reward} error={v.error} "
        f"extracted={dict(v.details).get('extracted')!r} details={_short(repr(dict(v.details)), 300)}"
    )
    assert v.reward == (1.0 if v.correct else 0.0)


ISSUE15 = [("tune", r) for r in tune_rows()] + [("unseen", r) for r in unseen_rows()]


@pytest.fixture(scope="module")
def issue15_verdicts(verifier):
    return verifier.check_batch([(gold, response, question) for _, (gold, response, _, _, question) in ISSUE15])


@pytest.mark.parametrize("i", range(len(ISSUE15)), ids=lambda i: f"{ISSUE15[i][0]}-{ISSUE15[i][1][3]}-{i}")
def test_issue15_row(issue15_verdicts, i):
    table, (gold, response, expected, tag, question) = ISSUE15[i]
    v = issue15_verdicts[i]
    where = f"[{table}/{tag}] gold={gold!r} response={_short(response, 200)!r} question={question!r}"
    assert v.error is None, f"{where}: grader error {v.error!r}"
    assert v.correct == expected, (f"{where}: expected correct={expected}, got {v.correct}; extracted="
                                   f"{dict(v.details).get('extracted')!r} reason={dict(v.details).get('reason')!r}")


def test_table_timing(table_verdicts):
    slow = [(i, v.elapsed_s) for i, v in enumerate(table_verdicts) if v.elapsed_s > BUDGET_S + SLACK_S]
    assert not slow, f"rows over budget: {[(_row_id(i), round(t, 3)) for i, t in slow]}"
    timeouts = [_row_id(i) for i, v in enumerate(table_verdicts) if v.error == "timeout"]
    assert not timeouts, f"ordinary table rows timed out: {timeouts}"


def test_hostile_inputs_get_a_verdict(verifier):
    pairs = [(gold, pred) for pred in HOSTILE for gold in HOSTILE_GOLDS]
    verdicts = verifier.check_batch(pairs)
    assert len(verdicts) == len(pairs)
    problems = []
    for (gold, pred), v in zip(pairs, verdicts):
        where = f"gold={gold!r} pred={_short(repr(pred))}"
        if not 0.0 <= v.reward <= 1.0:
            problems.append(f"{where}: reward {v.reward}")
        if v.elapsed_s > BUDGET_S + SLACK_S:
            problems.append(f"{where}: elapsed {v.elapsed_s:.3f}s")
        if v.correct and v.reward != 1.0:
            problems.append(f"{where}: correct but reward {v.reward}")
        if v.error is not None and (v.correct or v.reward != 0.0):
            problems.append(f"{where}: error {v.error!r} yet reward {v.reward}")
    assert not problems, "\n".join(problems)


def test_hostile_inputs_are_not_correct(verifier):
    verdicts = verifier.check_batch([("7", pred) for pred in HOSTILE])
    wrong = [_short(repr(p)) for p, v in zip(HOSTILE, verdicts) if v.correct]
    assert not wrong, f"hostile predictions graded correct against gold 7: {wrong}"


def test_check_single(verifier):
    v = verifier.check("5", r"so the answer is \boxed{5}")
    assert v.correct and v.reward == 1.0 and v.error is None
    assert v.verifier and v.verifier_version
    assert 0.0 <= v.elapsed_s <= BUDGET_S + SLACK_S
    v = verifier.check("5", r"\boxed{6}")
    assert not v.correct and v.reward == 0.0


def test_check_timeout_is_a_verdict(verifier):
    v = verifier.check("5", r"10^{10^{10^{10}}}")
    assert not v.correct and v.reward == 0.0
    assert v.error in (None, "timeout")


def test_check_batch_empty(verifier):
    assert verifier.check_batch([]) == []


GRADE_ROWS = [
    ("5", r"The answer is \boxed{5}.", True),
    ("5", r"\boxed{6}", False),
    (r"\frac{1}{2}", "0.5", True),
    (r"\frac{1}{2}", r"\frac{1}{3}", False),
    ("(1,2)", "(2,1)", False),
    (r"\{1,2\}", r"\{2,1\}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("5", r"<think>\boxed{5}", False),
]


@pytest.mark.parametrize("gold,response,expected", GRADE_ROWS,
                         ids=[f"grade-{i}" for i in range(len(GRADE_ROWS))])
def test_grade_in_process(gold, response, expected):
    out = grade(gold, response)
    assert isinstance(out, dict)
    assert {"reward", "correct", "details"} <= set(out)
    assert isinstance(out["correct"], bool)
    assert out["reward"] == (1.0 if out["correct"] else 0.0)
    assert "extracted" in out["details"]
    assert out["correct"] == expected, out


# -- settings: the thinking section, the question ---------------------------------------------------

def test_think_tags_are_configurable():
    from evalgym.errors import EvalgymError
    from evalgym.verifiers.math_extract import check_think

    reasoning = "<reasoning>Is it \\boxed{4}? No.</reasoning> The answer is \\boxed{5}."
    assert grade("5", reasoning, think=("<reasoning>", "</reasoning>"))["correct"]
    assert not grade("5", reasoning)["correct"]  # the default strips <think> only: two different boxes
    assert grade("5", "<think>\\boxed{4}</think> so \\boxed{5}")["correct"]
    assert not grade("5", "<think>\\boxed{4}</think> so \\boxed{5}", think=None)["correct"]  # kept: a hedge
    assert not grade("5", "<r>I think \\boxed{5}", think=("<r>", "</r>"))["correct"]  # never closed
    assert check_think("reasoning") == ("<reasoning>", "</reasoning>") == check_think("<reasoning>")
    assert check_think(None) is None and check_think("") is None
    with pytest.raises(EvalgymError, match="think"):
        check_think(("<a>",))


def test_verifier_passes_think_and_question():
    from evalgym.types import ChatMessage, Problem

    v = MathVerifier(budget_s=BUDGET_S, think="reasoning")
    problem = Problem(id="p", env_id="e", env_version=0, domain="math",
                      messages=(ChatMessage("user", "If $2x + 2y = 34$, what is $x + y$?"),), answer="17")
    assert v.verify(problem, "<reasoning>\\boxed{16}</reasoning> \\boxed{x + y = 17}").correct
    assert not MathVerifier(budget_s=BUDGET_S).verify(problem, "<reasoning>\\boxed{16}</reasoning> \\boxed{17}").correct
    assert not v.check("17", "\\boxed{x + y = 17}").correct  # without the question: not known to be asked
    assert v.check("17", "\\boxed{x + y = 17}", "Find $x+y$.").correct
