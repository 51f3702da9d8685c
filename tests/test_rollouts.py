"""The rollout collector: groups, rewards from the env's own verifier, multi-turn, mixtures,
seeded reproduction, JSONL output, and the Ray backend giving the same trajectories."""

from __future__ import annotations

import json
import os

import pytest

from evalgym.cli import main as cli
from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.rollouts import collect, collect_many, make_env
from evalgym.types import Trajectory, from_dict

SP = SamplingParams(max_tokens=24)


def token_ids(result):
    return [[s.completion.token_ids for s in t.steps] for t in result.trajectories]


def test_groups_and_rewards_come_from_the_envs_verifier(tiny_policy):
    r = collect(tiny_policy, "arithmetic", num_prompts=5, n=3, sampling=SP, seed=0, batch_prompts=2)
    assert len(r.groups) == 5 and all(len(g.trajectories) == 3 for g in r.groups)
    assert len({g.problem.id for g in r.groups}) == 5
    env = make_env("arithmetic")
    for g in r.groups:
        assert [t.sample_index for t in g.trajectories] == [0, 1, 2]
        for t in g.trajectories:
            assert t.problem == g.problem and len(t.steps) == 1 and t.policy == tiny_policy.name
            c = t.final.completion
            assert c.token_ids and len(c.logprobs) == len(c.token_ids)
            assert t.final.messages == g.problem.messages
            assert env.verifier.verify(g.problem, c.text) == t.final.verdict
            assert t.reward == t.final.verdict.reward
    st = r.stats
    assert st.trajectories == 15 and st.completion_tokens == sum(len(t.final.completion.token_ids) for t in r.trajectories)
    assert 0 <= st.verify_wait_share <= 1 and st.tokens_per_s > 0
    assert st.per_env[env.source.info.id]["trajectories"] == 15


def test_a_policy_that_answers_right_gets_reward_one(tiny_policy):
    """The plumbing end to end with a known-correct answer: a policy whose text is the reference."""
    env = make_env("arithmetic")

    class Oracle:
        name = "oracle"

        def generate(self, prompts, sampling, *, keys=None):
            from evalgym.types import Completion
            outs = []
            for p in prompts:
                problem = next(env.source.problem(i) for i in range(1000)
                               if list(env.source.problem(i).messages) == list(p))
                outs.append([Completion(text=problem.reference, finish_reason="stop")] * sampling.n)
            return outs

    r = collect(Oracle(), env, indices=[0, 1, 2], n=2, sampling=SP)
    assert [t.reward for t in r.trajectories] == [1.0] * 6 and r.mean_reward() == 1.0
    assert all(g.zero_variance for g in r.groups)


def test_seeded_runs_reproduce_whatever_the_chunking(tiny_policy):
    a = collect(tiny_policy, "arithmetic", num_prompts=6, n=2, sampling=SP, seed=5, batch_prompts=4)
    b = collect(tiny_policy, "arithmetic", num_prompts=6, n=2, sampling=SP, seed=5, batch_prompts=1)
    c = collect(tiny_policy, "arithmetic", num_prompts=6, n=2, sampling=SP, seed=6, batch_prompts=4)
    assert token_ids(a) == token_ids(b) and [g.problem.id for g in a.groups] == [g.problem.id for g in b.groups]
    assert token_ids(a) != token_ids(c)


def test_multi_turn_env_gets_feedback_and_more_turns(tiny_policy):
    r = collect(tiny_policy, "retry-arithmetic", num_prompts=3, n=2, sampling=SP, seed=0)
    for t in r.trajectories:
        assert 1 <= len(t.steps) <= 3
        if not t.correct:
            assert len(t.steps) == 3 and t.truncated
        for k, step in enumerate(t.steps):
            # each turn sees the whole conversation: prompt, then (answer, feedback) per earlier turn
            assert len(step.messages) == len(t.problem.messages) + 2 * k
            if k:
                assert step.messages[-1].role == "user" and "not correct" in step.messages[-1].content
                assert step.messages[-2].content == t.steps[k - 1].completion.text
    assert r.stats.turns == max(len(t.steps) for t in r.trajectories)


def test_a_mixture_of_envs_in_one_collection(tiny_policy):
    a, b = make_env("arithmetic"), make_env("countdown-gen")
    r = collect_many(tiny_policy, [(a, 0), (b, 0), (a, 1)], n=2, sampling=SP, seed=0)
    assert [g.problem.env_id for g in r.groups] == ["evalgym/arithmetic-v1", "evalgym/countdown-gen-v1",
                                                    "evalgym/arithmetic-v1"]
    assert set(r.stats.per_env) == {"evalgym/arithmetic-v1", "evalgym/countdown-gen-v1"}
    assert r.groups[1].trajectories[0].final.verdict.verifier == b.verifier.verify(b.problem or b.source.problem(0), "x").verifier


def test_bad_arguments_are_named(tiny_policy):
    with pytest.raises(EvalgymError, match="num_prompts or indices"):
        collect(tiny_policy, "arithmetic")
    with pytest.raises(EvalgymError, match="n must be"):
        collect(tiny_policy, "arithmetic", num_prompts=1, n=0)
    with pytest.raises(EvalgymError, match="unknown env"):
        collect(tiny_policy, "no-such-env", num_prompts=1)


def test_cli_rollout_writes_trajectories(tiny_path, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    rc = cli(["rollout", "--model", tiny_path, "--env", "arithmetic", "--num-prompts", "3", "--n", "2",
              "--max-tokens", "16", "--out", str(out), "--quiet", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trajectories"] == 6 and summary["tokens_per_s"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and [r["group"] for r in rows] == [0, 0, 1, 1, 2, 2]
    for row in rows:
        assert {"prompt", "completion", "token_ids", "logprobs", "reward", "verdict"} <= set(row)
        assert len(row["token_ids"]) == len(row["logprobs"]) > 0
        t = from_dict(Trajectory, row["trajectory"])
        assert t.final.completion.text == row["completion"] and t.reward == row["reward"]
    # same seed, same file
    rc = cli(["rollout", "--model", tiny_path, "--env", "arithmetic", "--num-prompts", "3", "--n", "2",
              "--max-tokens", "16", "--out", str(tmp_path / "r2.jsonl"), "--quiet"])
    again = [json.loads(line) for line in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert [r["token_ids"] for r in again] == [r["token_ids"] for r in rows]
    assert cli(["rollout", "--model", tiny_path, "--env", "arithmetic", "--num-prompts", "1",
                "--backend", "openai", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--base-url" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_backend_gives_the_same_trajectories(tiny_policy, tiny_path):
    """Engines and verifiers as actors on a real local Ray instance; weights broadcast to engines."""
    import torch

    from evalgym.rollouts_ray import RayEngine

    local = collect(tiny_policy, "retry-arithmetic", num_prompts=4, n=2, sampling=SP, seed=3, batch_prompts=2)
    engine = RayEngine("hf", tiny_path, num_engines=2, num_cpus=2, policy_kwargs={"device": "cpu"})
    try:
        remote = collect(None, "retry-arithmetic", num_prompts=4, n=2, sampling=SP, seed=3, batch_prompts=2,
                         engine=engine)
        assert token_ids(remote) == token_ids(local)
        assert [t.reward for t in remote.trajectories] == [t.reward for t in local.trajectories]
        assert [s.verdict for t in remote.trajectories for s in t.steps] == \
               [s.verdict for t in local.trajectories for s in t.steps]
        assert remote.trajectories[0].policy == tiny_path
        # the actors run at the driver's priority (Ray's default niceness 15 starves them beside any busy process)
        import ray
        assert ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote()) == os.nice(0)
        # a weight update reaches every engine: remote samples follow the new weights
        original = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
        g = torch.Generator().manual_seed(1)
        new = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in original.items()}
        try:
            engine.load_weights(new)
            tiny_policy.load_weights(new)
            local2 = collect(tiny_policy, "arithmetic", num_prompts=4, n=2, sampling=SP, seed=1, batch_prompts=2)
            remote2 = collect(None, "arithmetic", num_prompts=4, n=2, sampling=SP, seed=1, batch_prompts=2, engine=engine)
            assert token_ids(remote2) == token_ids(local2)
        finally:
            tiny_policy.load_weights(original)
    finally:
        engine.close()
