"""The LLM-judge verifier: the score parser on hand-written judge outputs (a tuning table and an unseen one,
written before the parser), judge failures counted and visible, and the judge as a reward source of an env."""

from __future__ import annotations

import pytest

from evalgym.verifiers.judge import JudgeVerifier, parse_score

from .judge_cases import TUNE, UNSEEN

EXAMPLES = [{"question": "Compute 2 + 2.", "answer": "4", "response": "2 + 2 = 4. \\boxed{4}", "score": 10},
            {"question": "Compute 5 - 3.", "answer": "2", "response": "5 - 3 = 8", "score": 0}]


@pytest.mark.parametrize("text,expected", TUNE)
def test_parse_score_tuning_table(text, expected):
    assert parse_score(text) == expected


def test_parse_score_unseen_table():
    # scored once when the parser was done: 12 of 12
    wrong = [(t, e, parse_score(t)) for t, e in UNSEEN if parse_score(t) != e]
    assert not wrong, wrong


def test_parse_score_other_scales():
    assert parse_score("Score: 4", (1, 5)) == 4
    assert parse_score("Score: 8/10", (1, 5)) == pytest.approx(1 + 0.8 * 4)
    assert parse_score("Score: 0", (1, 5)) is None


def test_a_judge_that_answers_noise_is_counted_never_a_silent_zero(tiny_policy):
    from evalgym.rollouts import make_env

    env = make_env("arithmetic")
    problems = [env.source.problem(i) for i in range(4)]
    judge = JudgeVerifier(tiny_policy, max_tokens=12)
    verdicts = judge.verify_batch(problems, [p.reference for p in problems])
    assert all(v.error == "judge_unparseable" and v.reward == 0.0 and v.verifier == "judge" for v in verdicts)
    assert judge.stats["judged"] == 4 and judge.stats["unparseable"] == 4 and judge.stats["scored"] == 0
    assert judge.stats["examples"] and judge.stats["examples"][0]["error"] == "judge_unparseable"
    assert judge.version.startswith("1+") and judge.version != JudgeVerifier(tiny_policy, rubric="Other {lo} {hi}").version


def test_a_judge_whose_backend_fails_is_counted(tmp_path):
    import socket

    from evalgym.policies.openai import OpenAIPolicy
    from evalgym.rollouts import make_env

    with socket.socket() as s:        # a port nothing listens on: the real openai backend fails to connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = OpenAIPolicy("judge-model", base_url=f"http://127.0.0.1:{port}/v1", served_model="judge-model",
                          mode="chat", timeout_s=2)
    p = make_env("arithmetic").source.problem(0)
    judge = JudgeVerifier(policy)
    v = judge.verify(p, p.reference)
    assert v.error.startswith("judge_failed:") and v.reward == 0.0
    assert judge.stats["failed"] == 1 and "judge_failed" in judge.stats["examples"][0]["error"]


def test_the_judge_is_a_reward_source_for_an_env(tiny_policy, tiny_path):
    """gymnasium.make(env, verifier=judge): rollouts (and so RL) are graded by the judge."""
    from evalgym.envs.base import Verifier
    from evalgym.policies.base import SamplingParams
    from evalgym.rollouts import collect, make_env

    judge = JudgeVerifier(tiny_policy, max_tokens=8)
    assert isinstance(judge, Verifier)
    env = make_env("arithmetic", verifier=judge)
    res = collect(tiny_policy, env, num_prompts=3, n=2, sampling=SamplingParams(max_tokens=8), seed=0)
    verdicts = [t.final.verdict for t in res.trajectories]
    assert len(verdicts) == 6 and all(v.verifier == "judge" for v in verdicts)
    assert judge.stats["judged"] == 6      # every rollout went through the judge, its failures counted


@pytest.mark.slow
def test_a_small_real_judge_follows_the_format_with_few_shot_examples(smollm2_path):
    from evalgym.policies.hf import HFPolicy
    from evalgym.rollouts import make_env

    env = make_env("arithmetic")
    problems = [env.source.problem(i) for i in range(4)]
    judge = JudgeVerifier(HFPolicy(smollm2_path, device="cpu"), max_tokens=8, examples=EXAMPLES)
    verdicts = judge.verify_batch(problems, [problems[0].reference, "The answer is 3.", problems[2].reference, "?"])
    # measured: SmolLM2-135M answers 'Score: 10' to all four (it follows the format, it does not judge well)
    assert judge.stats["scored"] >= 3 and judge.stats["scored"] + judge.stats["unparseable"] == 4
    assert all((v.error is None) == (v.details["score"] is not None) for v in verdicts)
