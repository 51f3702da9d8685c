"""The agentic envs' Gymnasium contract, budgets, knobs and splits (real sessions, real graders)."""

from __future__ import annotations

import json
import os
import random
import shutil

import gymnasium
import pytest

import evalgym  # noqa: F401  (registers the envs)
from evalgym.agentic.demos import call
from evalgym.envs.sources import distinct_indices
from evalgym.envs.swe_lite_repo import generate_repo, mutate
from evalgym.errors import EvalgymError
from evalgym.rollouts import make_env
from evalgym.types import content_hash

needs_sandbox = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                   reason="sandbox sessions need root and bubblewrap here")


@needs_sandbox
def test_gymnasium_contract(data_dir):
    env = gymnasium.make("evalgym/python-math-v0", split="test", data_dir=str(data_dir))
    obs, info = env.reset(seed=0, options={"index": 5})
    assert "python" in obs and [t["function"]["name"] for t in info["tools"]] == ["python", "submit"]
    obs, reward, terminated, truncated, info = env.step(call("python", code="print(6 * 7)"))
    assert (obs, reward, terminated, truncated) == ("42\n", 0.0, False, False)
    assert info["messages"][-1] == {"role": "tool", "content": "42\n"} and info["messages"][-2]["role"] == "assistant"
    assert "netns" in info["isolation"]
    answer = info["problem"].answer
    obs, reward, terminated, truncated, info = env.step(f"It is {answer}. {call('submit', answer=answer)}")
    assert (reward, terminated, truncated) == (1.0, True, False) and info["verdict"].correct
    assert info["metrics"] == {"success": 1.0, "turns": 2.0, "tool_calls": 2.0, "tool_errors": 0.0,
                               "code_errors": 0.0, "tool_time_s": info["metrics"]["tool_time_s"], "submitted": 1.0,
                               "truncated": 0.0}
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("more")
    env.reset(options={"index": 5})  # a final answer without a tool call ends it too, graded as written
    obs, reward, terminated, truncated, info = env.step(f"The answer is \\boxed{{{answer}}}.")
    assert (reward, terminated) == (1.0, True) and info["metrics"]["submitted"] == 0.0


@needs_sandbox
def test_turn_budget_and_reply_cap():
    env = make_env("python-math", dataset="arithmetic", split="test", max_turns=2)
    env.budgets = type(env.budgets)(**{**env.budgets.__dict__, "reply_chars": 100})
    env.reset(options={"index": 0})
    obs, *_ , info = env.step(call("python", code="print('x' * 500)"))
    assert obs.startswith("x" * 100) and obs.endswith("[reply truncated: 401 more characters]")
    obs, reward, terminated, truncated, info = env.step(call("python", code="1"))
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["verdict"].details["reason"] == "no answer: the turns budget ran out" and info["verdict"].error is None


def test_python_math_problems_are_their_base_problems(data_dir):
    pm = make_env("python-math", dataset="gsm8k", split="test", data_dir=str(data_dir))
    base = make_env("gsm8k", split="test", data_dir=str(data_dir))
    for i in (0, 7):
        a, b = pm.source.problem(i), base.source.problem(i)
        assert content_hash(a) == content_hash(b) and a.answer == b.answer and a.env_id == "evalgym/python-math-v0"
        assert b.prompt_text.split("\n\n")[0] in a.prompt_text and "`submit`" in a.prompt_text
    # a procedural base: the agentic "test" split is the base's "eval" split (disjoint from train)
    test = make_env("python-math", dataset="arithmetic", split="test").source
    train = make_env("python-math", dataset="arithmetic", split="train").source
    assert {content_hash(test.problem(i)) for i in range(30)}.isdisjoint({content_hash(train.problem(i)) for i in range(200)})
    with pytest.raises(EvalgymError, match="dataset must be one of"):
        make_env("python-math", dataset="gsm9k")


def test_swe_lite_knobs_splits_and_bugs():
    small = make_env("swe-lite").source.problem(0)
    big = make_env("swe-lite", modules=4, functions=5, bugs=3).source.problem(0)
    assert len(small.extra["modules"]) == 2 and len(big.extra["modules"]) == 4 and len(big.extra["bugs"]) == 3
    assert big.extra["hidden_tests"].count("assert ") == 4 * 5 * 8 and "3 bugs" in big.prompt_text
    eval_src, train_src = (make_env("swe-lite", split=s).source for s in ("eval", "train"))
    ev = {content_hash(eval_src.problem(i)) for i in distinct_indices(eval_src, 20)}
    assert len(ev) == 20 and ev.isdisjoint({content_hash(train_src.problem(i)) for i in range(100)})
    with pytest.raises(EvalgymError, match="modules in 1"):
        make_env("swe-lite", modules=99)
    repo = generate_repo(random.Random(1), modules=2, functions=3, bugs=2)
    assert len(repo.bugs) == 2 and repo.buggy.keys() > repo.fixed.keys()
    sites = [mutate("def f(x):\n    return x + 1\n", k) for k in range(3)]  # the constant, then the operator
    assert [w for _s, w in sites[:2]] == ["constant 1 -> 2", "operator Add -> Sub"] and sites[2] is None
    assert sites[1][0] == "def f(x):\n    return x - 1\n"
