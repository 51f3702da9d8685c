"""The async episode runner, for real: the tiny model sampling on the hf backend (and the Ray engines), real
sandbox sessions, real graders. Token-exactness is checked turn by turn: each step's prompt ids extend the
previous step's prompt + sampled ids, the env's ids are exactly the template's text for the tool replies, and
(for the character-level tiny model, whose tokenization is unique) the whole episode equals the conversation
encoded in one go whenever the sampler wrote no special token."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from evalgym.agentic.demos import TranscriptPolicy, call, reference_turns
from evalgym.agentic.runner import run_episodes
from evalgym.agentic.tools import ParsedTurn, ToolCall, register_parser
from evalgym.policies.base import SamplingParams, encode
from evalgym.rollouts import collect, collect_many, make_env
from evalgym.trainers.batch import episode_tokens, is_token_exact

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="sandbox sessions need root and bubblewrap here")


class EveryTurnRunsPython:
    """A tool-call format in which every completion is a python call printing its own length: real sampled
    text from an untrained model still drives a many-turn episode."""

    name = "test-every-turn-python"

    def parse(self, text: str) -> ParsedTurn:
        return ParsedTurn(calls=(ToolCall("python", {"code": f"print('turn', {len(text)})"}),))


register_parser(EveryTurnRunsPython())
SP = SamplingParams(temperature=1.0, max_tokens=16)


def replies(t, k: int) -> list[str]:
    """The tool replies to turn ``k`` (they open what turn k + 1 saw)."""
    msgs = t.steps[k + 1].messages
    last = max(i for i, m in enumerate(msgs) if m.role == "assistant")
    return [m.content for m in msgs[last + 1:]]


def check_token_exact(t, tok, tools) -> None:
    steps = t.steps
    for k in range(1, len(steps)):
        prev, cur = steps[k - 1].completion, steps[k].completion
        head = list(prev.prompt_token_ids) + list(prev.token_ids)
        assert list(cur.prompt_token_ids[:len(head)]) == head, f"step {k} does not extend step {k - 1}"
        appended = tok.decode(list(cur.prompt_token_ids[len(head):]), skip_special_tokens=False)
        replies = [m for m in steps[k].messages if m.role == "tool"][-1:]
        assert replies and f"<tool_response>\n{replies[0].content}\n</tool_response>" in appended
        assert appended.endswith("<|im_start|>assistant\n")
        def round_trips(c) -> bool:  # sampled ids that are their text's tokenization (no special/unknown ids)
            ids = list(c.token_ids[:-1] if c.finish_reason == "stop" else c.token_ids)
            return tok(c.text, add_special_tokens=False)["input_ids"] == ids

        if all(round_trips(s.completion) for s in steps[:k]):
            msgs = [m.as_dict() for m in steps[k].messages]
            assert list(cur.prompt_token_ids) == encode(tok, msgs, tools=tools), f"step {k}: not the one-go encoding"
    ep = episode_tokens(t)
    assert is_token_exact(t) and ep.has_logprobs == bool(steps[0].completion.logprobs)  # a script has none
    assert ep.num_sampled == sum(len(s.completion.token_ids) for s in steps)
    if ep.has_logprobs:
        assert [lp for lp, s in zip(ep.logprobs, ep.sampled) if s] == [x for s in steps for x in s.completion.logprobs]


def test_real_sampling_many_turns_token_exact(tiny_policy):
    env = make_env("python-math", dataset="arithmetic", split="test", parser="test-every-turn-python", max_turns=3)
    groups, stats = run_episodes(tiny_policy, [(env, 0), (env, 1)], n=2, sampling=SP, seed=5)
    assert [len(g) for g in groups] == [2, 2] and stats.episodes == 4 and stats.turns == 12
    for g in groups:
        for t in g:
            assert len(t.steps) == 3 and t.truncated and t.reward == 0.0
            assert t.metrics["tool_calls"] == 3 and t.metrics["turns"] == 3 and t.metrics["truncated"] == 1.0
            assert t.final.verdict.details["reason"] == "no answer: the turns budget ran out"
            assert replies(t, 0)[0].startswith("turn ")
            check_token_exact(t, tiny_policy.tokenizer, env.tool_specs)
    # per-sample seeds: the same run gives the same tokens; another seed, other tokens
    again, _ = run_episodes(tiny_policy, [(env, 0), (env, 1)], n=2, sampling=SP, seed=5)
    ids = lambda gs: [s.completion.token_ids for g in gs for t in g for s in t.steps]  # noqa: E731
    assert ids(again) == ids(groups)
    other, _ = run_episodes(tiny_policy, [(env, 0)], n=2, sampling=SP, seed=6)
    assert ids(other) != ids(groups[:1])


def test_token_budget_ends_the_episode(tiny_policy):
    env = make_env("python-math", dataset="arithmetic", split="test", parser="test-every-turn-python", max_turns=50,
                   max_tokens=1400)
    (ts,), _ = run_episodes(tiny_policy, [(env, 0)], n=1, sampling=SamplingParams(temperature=1.0, max_tokens=40))
    t = ts[0]
    last = t.final.completion
    assert t.truncated and t.final.verdict.details["reason"] == "no answer: the tokens budget ran out"
    assert len(last.prompt_token_ids) + len(last.token_ids) <= 1400 + 200  # at most one turn's tool reply over
    check_token_exact(t, tiny_policy.tokenizer, env.tool_specs)


def test_reference_transcripts_score_one_through_collect_and_evaluate(tiny_path):
    from transformers import AutoTokenizer

    from evalgym.evaluate import EvalSampling, evaluate

    tok = AutoTokenizer.from_pretrained(tiny_path)
    env = make_env("code-tools", dataset="mbpp", split="test")
    policy = TranscriptPolicy(tok, problems=[env.source.problem(i) for i in range(3)])
    result = evaluate(policy, env, indices=[0, 1, 2], sampling=EvalSampling(max_tokens=1500))
    scores = {s.metric: s.value for s in result.scores}
    assert scores["acc"] == 1.0 and scores["episode_success"] == 1.0 and scores["episode_tool_calls"] == 2.0
    assert scores["episode_tool_errors"] == 0.0 and scores["grader_errors"] == 0.0
    assert result.records[0].turns == 2 and "tests pass" in result.records[0].transcript[1]["content"]
    # a mixture of an agentic env and a text env, in item order
    text = make_env("arithmetic", split="eval")
    policy.add([text.source.problem(0)])
    mixed = collect_many(policy, [(env, 1), (text, 0), (env, 2)], n=1, sampling=SamplingParams(max_tokens=1500))
    assert [g.problem.env_id for g in mixed.groups] == ["evalgym/code-tools-v0", "evalgym/arithmetic-v1",
                                                      "evalgym/code-tools-v0"]
    assert [g.trajectories[0].reward for g in mixed.groups][0::2] == [1.0, 1.0]


def test_malformed_calls_and_unknown_tools_are_replies_not_crashes(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    env = make_env("python-math", dataset="arithmetic", split="test", tool_time_s=1.0)
    p = env.source.problem(0)
    script = ['<tool_call>{"name": "python", "arguments": {"code": "1"</tool_call>',   # bad JSON
              call("calculator", x=1) + call("python", code=1),                     # unknown tool, bad args
              call("python", code="import time; time.sleep(5)"),                    # over the tool budget
              call("python", code="2"),                                             # budget spent
              call("submit", answer=p.answer)]
    policy = TranscriptPolicy(tok, lambda prob: script, problems=[p])
    (ts,), _ = run_episodes(policy, [(env, 0)], sampling=SamplingParams(max_tokens=400))
    t = ts[0]
    assert t.reward == 1.0 and t.metrics["tool_errors"] == 5.0 and t.metrics["tool_calls"] == 6.0, t.metrics
    assert "malformed tool call" in replies(t, 0)[0]
    assert "unknown tool 'calculator'" in replies(t, 1)[0] and "arguments.code must be of type string" in replies(t, 1)[1]
    assert "timed out after 1s" in replies(t, 2)[0] and "budget of 1s is spent" in replies(t, 3)[0]
    check_token_exact(t, tok, env.tool_specs)


def test_episodes_overlap_tool_waits_with_generation(tiny_path):
    """Eight episodes whose every tool call takes 0.5 s: run one at a time they take 8 x 3 x 0.5 s; in flight
    together, the waits overlap and the engine keeps generating for the episodes that are not waiting."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    env = make_env("python-math", dataset="arithmetic", split="test")
    problems = [env.source.problem(i) for i in range(8)]
    script = lambda p: [call("python", code="import time; time.sleep(0.5)")] * 3 + [call("submit", answer=p.answer)]  # noqa: E731
    policy = TranscriptPolicy(tok, script, problems=problems)
    t0 = time.perf_counter()
    groups, stats = run_episodes(policy, [(env, i) for i in range(8)], sampling=SamplingParams(max_tokens=200),
                                 max_in_flight=8)
    wall = time.perf_counter() - t0
    assert all(g[0].reward == 1.0 for g in groups) and stats.max_in_flight == 8
    assert wall < 8 * 3 * 0.5 / 2, wall
    assert stats.generate_calls < 8 * 4  # requests of several episodes batched into one call
    one, _ = run_episodes(policy, [(env, i) for i in range(2)], sampling=SamplingParams(max_tokens=200), max_in_flight=1)
    assert all(g[0].reward == 1.0 for g in one)


@pytest.mark.slow
def test_ray_engines_run_agentic_episodes(tiny_policy, tiny_path):
    from evalgym.rollouts_ray import RayEngine

    env = make_env("python-math", dataset="arithmetic", split="test", parser="test-every-turn-python", max_turns=3)
    local = collect(tiny_policy, env, indices=[0, 1], n=2, sampling=SP, seed=9)
    engine = RayEngine("hf", tiny_path, num_engines=2, num_cpus=2, policy_kwargs={"device": "cpu"})
    try:
        remote = collect(None, env, indices=[0, 1], n=2, sampling=SP, seed=9, engine=engine)
    finally:
        engine.close()
    ids = lambda r: [s.completion.token_ids for t in r.trajectories for s in t.steps]  # noqa: E731
    assert ids(remote) == ids(local) and len(ids(local)) == 12
    for t in remote.trajectories:
        check_token_exact(t, tiny_policy.tokenizer, env.tool_specs)


def test_reference_turns_cover_every_agentic_env(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    env = make_env("swe-lite", max_tokens=20000)
    policy = TranscriptPolicy(tok, problems=[env.source.problem(i) for i in range(2)])
    groups, _ = run_episodes(policy, [(env, 0), (env, 1)], sampling=SamplingParams(max_tokens=8000))
    for g in groups:
        t = g[0]
        assert t.reward == 1.0 and t.metrics["turns"] == 4.0 and t.metrics["tool_errors"] == 0.0, t.final.verdict
        assert "FAILED" in replies(t, 0)[0]
        assert len(reference_turns(t.problem)) == 4
