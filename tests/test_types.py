"""``evalgym.types``: the frozen values that flow between env, policy, verifier and trainer.

Covers: ``to_dict`` / ``from_dict`` round-trip of a TrajectoryGroup with nested Problem, Step,
Completion and Verdict (equal afterwards, including the compare=False fields ``extra``/``details``;
JSON-serializable; tuples come back as tuples); unknown fields rejected; Verdict reward validation
(out of range, NaN, bool, str); Completion logprob/token alignment; TrajectoryGroup problem check and
``zero_variance``; frozen dataclasses; ``messages_from`` on str / dicts / ChatMessages / bad items.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from evalgym.types import (ChatMessage, CheckpointRef, Completion, EvalRow, Problem, Step, Trajectory,
                           TrajectoryGroup, Verdict, from_dict, messages_from, to_dict)


def _problem(pid: str = "countdown-v0/test/3") -> Problem:
    return Problem(id=pid, env_id="evalgym/countdown-v0", env_version=0, domain="countdown",
                   messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Numbers: 6, 4, 3. Target: 8.")),
                   answer="8", reference="<answer>6 / 3 * 4</answer>", index=3,
                   extra={"numbers": [6, 4, 3], "target": 8, "nested": {"k": [1, {"z": None}]}})


def _trajectory(problem: Problem, reward: float, sample: int) -> Trajectory:
    steps = []
    for turn in range(2):
        completion = Completion(text=f"<answer>{turn}</answer>", token_ids=(11, 12, 13), logprobs=(-0.5, -1.25, 0.0),
                                finish_reason="length" if turn == 0 else "stop", prompt_token_ids=(1, 2))
        verdict = Verdict(reward=reward if turn else 0.0, correct=bool(reward) and turn == 1, error=None,
                          details={"extracted": str(turn), "parsed": [turn, "x"], "reason": "r"},
                          elapsed_s=0.012, verifier="countdown", verifier_version="1")
        msgs = problem.messages + ((ChatMessage("assistant", "<answer>0</answer>"), ChatMessage("user", "again"))
                                   if turn else ())
        steps.append(Step(messages=msgs, completion=completion, verdict=verdict, reward=verdict.reward))
    return Trajectory(problem=problem, steps=tuple(steps), reward=reward, truncated=False, sample_index=sample,
                      policy="Qwen/Qwen2.5-0.5B", policy_step=100, teacher_logprobs=(-0.1, -0.2, -0.3),
                      metrics={"success": float(reward), "turns": 2.0, "tool_calls": 3.0, "tool_errors": 1.0})


def _group() -> TrajectoryGroup:
    p = _problem()
    return TrajectoryGroup(problem=p, trajectories=(_trajectory(p, 1.0, 0), _trajectory(p, 0.0, 1)))


def test_round_trip_trajectory_group():
    group = _group()
    data = to_dict(group)
    text = json.dumps(data)  # plain JSON: no tuples, dataclasses or mappingproxies left
    back = from_dict(TrajectoryGroup, json.loads(text))
    assert back == group
    assert to_dict(back) == data  # also the compare=False fields: Problem.extra, Verdict.details, elapsed_s
    assert back.problem.extra["nested"] == {"k": [1, {"z": None}]}
    assert back.trajectories[1].steps[0].verdict.details["parsed"] == [0, "x"]
    assert back.trajectories[0].steps[1].verdict.elapsed_s == 0.012
    assert dict(back.trajectories[0].metrics) == {"success": 1.0, "turns": 2.0, "tool_calls": 3.0, "tool_errors": 1.0}
    assert dict(back.trajectories[1].metrics)["success"] == 0.0
    old = {k: v for k, v in data["trajectories"][0].items() if k != "metrics"}  # written before metrics existed
    assert dict(from_dict(Trajectory, old).metrics) == {}


def test_round_trip_restores_types():
    back = from_dict(TrajectoryGroup, json.loads(json.dumps(to_dict(_group()))))
    t = back.trajectories[0]
    assert isinstance(back.trajectories, tuple) and isinstance(t, Trajectory)
    assert isinstance(t.steps, tuple) and isinstance(t.steps[0], Step)
    assert isinstance(t.steps[0].completion, Completion) and isinstance(t.steps[0].verdict, Verdict)
    assert isinstance(t.problem.messages, tuple) and isinstance(t.problem.messages[0], ChatMessage)
    assert t.steps[0].completion.token_ids == (11, 12, 13) and isinstance(t.steps[0].completion.token_ids, tuple)
    assert t.teacher_logprobs == (-0.1, -0.2, -0.3) and isinstance(t.teacher_logprobs, tuple)
    assert t.steps[0].completion.truncated and not t.steps[1].completion.truncated
    assert back.rewards == (1.0, 0.0) and t.correct and not back.trajectories[1].correct
    hash(t.steps[0].completion)  # frozen + tuples: hashable


def test_round_trip_other_records():
    for value in (CheckpointRef(path="runs/a/step_000100", step=100, run_id="a", parent="runs/a/step_000050"),
                  EvalRow(run_id="a", step=100, model="m", task="gsm8k", task_version="0", metric="accuracy",
                          value=0.5, ci_low=0.45, ci_high=0.55, n=1319, manifest={"seed": 0})):
        back = from_dict(type(value), json.loads(json.dumps(to_dict(value))))
        assert back == value and to_dict(back) == to_dict(value)


def test_from_dict_rejects_unknown_field_and_type():
    data = to_dict(_problem())
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="colour"):
        from_dict(Problem, data)
    with pytest.raises(TypeError):
        from_dict(dict, {})


@pytest.mark.parametrize("reward", [1.5, -0.1, float("nan"), float("inf"), True, "1.0", None])
def test_verdict_reward_validated(reward):
    with pytest.raises(ValueError, match="reward"):
        Verdict(reward=reward, correct=False)


@pytest.mark.parametrize("reward", [0, 1, 0.0, 0.25, 1.0])
def test_verdict_reward_in_range_accepted(reward):
    assert Verdict(reward=reward, correct=reward == 1).reward == reward


def test_completion_logprobs_must_align():
    with pytest.raises(ValueError, match="logprobs"):
        Completion(text="hi", token_ids=(1, 2, 3), logprobs=(-0.1, -0.2))
    with pytest.raises(ValueError):
        Completion(text="hi", token_ids=(), logprobs=(-0.1,))
    assert Completion(text="hi", token_ids=(1, 2)).logprobs == ()  # no logprobs is allowed


def test_trajectory_group_rejects_foreign_trajectory():
    p, q = _problem("a/1"), _problem("a/2")
    with pytest.raises(ValueError, match="a/2"):
        TrajectoryGroup(problem=p, trajectories=(_trajectory(p, 1.0, 0), _trajectory(q, 1.0, 1)))


@pytest.mark.parametrize("rewards,expected", [
    ((), True), ((1.0,), True), ((1.0, 1.0, 1.0), True), ((0.0, 0.0), True),
    ((0.0, 1.0), False), ((1.0, 1.0, 0.5), False), ((0.25, 0.25), True),
])
def test_zero_variance(rewards, expected):
    p = _problem()
    group = TrajectoryGroup(problem=p, trajectories=tuple(_trajectory(p, r, i) for i, r in enumerate(rewards)))
    assert group.rewards == rewards
    assert group.zero_variance is expected


@pytest.mark.parametrize("make,field", [
    (lambda: ChatMessage("user", "x"), "content"),
    (_problem, "answer"),
    (lambda: Completion(text="x"), "text"),
    (lambda: Verdict(reward=1.0, correct=True), "reward"),
    (_group, "trajectories"),
    (lambda: _group().trajectories[0], "reward"),
    (lambda: _group().trajectories[0].steps[0], "reward"),
])
def test_frozen(make, field):
    value = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, getattr(value, field))


def test_prompt_text_is_last_user_message():
    p = _problem()
    assert p.prompt_text == "Numbers: 6, 4, 3. Target: 8."
    assert dataclasses.replace(p, messages=(ChatMessage("system", "s"),)).prompt_text == ""


def test_messages_from_str():
    assert messages_from("What is 2+2?") == (ChatMessage("user", "What is 2+2?"),)


def test_messages_from_dicts_and_messages():
    out = messages_from([{"role": "system", "content": "s"}, ChatMessage("user", "u"),
                         {"role": "assistant", "content": "a", "name": "ignored"}])
    assert out == (ChatMessage("system", "s"), ChatMessage("user", "u"), ChatMessage("assistant", "a"))
    assert isinstance(out, tuple)
    assert [m.as_dict() for m in out] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                          {"role": "assistant", "content": "a"}]
    assert messages_from([]) == ()


@pytest.mark.parametrize("bad,index", [
    ([{"role": "user", "content": "ok"}, {"role": "user"}], 1),
    ([{"role": "user", "content": "ok"}, ChatMessage("user", "ok"), "just a string"], 2),
    ([42], 0),
    ([{"content": "no role"}], 0),
])
def test_messages_from_rejects_bad_item_with_index(bad, index):
    with pytest.raises(ValueError, match=rf"messages\[{index}\]"):
        messages_from(bad)


def test_nan_is_not_a_reward_even_via_from_dict():
    data = to_dict(Verdict(reward=0.0, correct=False))
    data["reward"] = math.nan
    with pytest.raises(ValueError):
        from_dict(Verdict, data)
