"""The reasoning section (``<think>…</think>`` by default) is cut before answers are extracted, and its
tags are a setting of the verifier (``think=``) and of the env (``gymnasium.make(..., think=...)``).

Each setting is checked on and off: the same response changes its reward.

    .venv/bin/python -m pytest tests/verifiers/test_think.py -q
"""

from __future__ import annotations

import gymnasium
import pytest

import evalgym  # noqa: F401  (registers the envs)
from evalgym.errors import EvalgymError
from evalgym.types import ChatMessage, Problem
from evalgym.verifiers.countdown import CountdownVerifier
from evalgym.verifiers.math_extract import strip_think

COUNTDOWN = Problem(id="c", env_id="e", env_version=0, domain="countdown",
                    messages=(ChatMessage("user", "Use 3, 5, 7 to make 22."),), answer="",
                    extra={"numbers": [3, 5, 7], "target": 22})


def test_strip_think():
    assert strip_think("<think>a</think> b") == " b"
    assert strip_think("<think>a</think><think>b</think>c") == "c"
    assert strip_think("<think>never closed") is None
    assert strip_think("no tags") == "no tags"
    assert strip_think("<r>a</r>b", ("<r>", "</r>")) == "b"
    assert strip_think("<think>a</think>b", None) == "<think>a</think>b"


def test_countdown_cuts_think_by_default():
    response = "<think>maybe <answer>3 + 5 + 7</answer></think> <answer>3 * 5 + 7</answer>"
    default, kept = CountdownVerifier(), CountdownVerifier(think=None)
    assert default.verify(COUNTDOWN, response).correct
    assert not default.verify(COUNTDOWN, "<think>3 * 5 + 7 ... never closed").correct
    # kept: the last <answer> inside and after the section is the same one here, so use a response whose
    # only answer sits in the reasoning
    only_inside = "<think><answer>3 * 5 + 7</answer></think> I am done."
    assert kept.verify(COUNTDOWN, only_inside).correct
    assert not default.verify(COUNTDOWN, only_inside).correct


def test_custom_tags_on_a_verifier():
    v = CountdownVerifier(think="reasoning")
    response = "<reasoning><answer>3 + 5 + 7</answer></reasoning><answer>3 * 5 + 7</answer>"
    assert v.verify(COUNTDOWN, response).correct
    assert not CountdownVerifier().verify(COUNTDOWN, "<reasoning>x</reasoning><think>3 * 5 + 7").correct


def _step(env_kwargs: dict, template: str) -> float:
    env = gymnasium.make("evalgym/arithmetic-v1", **env_kwargs)
    _, info = env.reset(seed=0, options={"index": 0})
    answer = info["problem"].answer
    return env.step(template.format(wrong=int(answer) + 1, right=answer))[1]


def test_env_kwarg_changes_the_outcome():
    custom = "<reasoning>\\boxed{{{wrong}}}</reasoning> so \\boxed{{{right}}}"
    assert _step({"think": "reasoning"}, custom) == 1.0
    assert _step({}, custom) == 0.0  # two different boxes, no correction: a hedge
    think = "<think>\\boxed{{{wrong}}}</think> so \\boxed{{{right}}}"
    assert _step({}, think) == 1.0
    assert _step({"think": None}, think) == 0.0


def test_bad_think_setting_names_the_field():
    with pytest.raises(EvalgymError, match="think"):
        gymnasium.make("evalgym/arithmetic-v1", think=5)
    with pytest.raises(EvalgymError, match="think"):
        gymnasium.make("evalgym/humaneval-v0", think="reasoning")
