"""The evaluation driver (``evalgym.evaluate.evaluate``) on its own.

Covers: the default split is the env's evaluation split and the problems are the first distinct ones of
it (dataset: the first rows of test); explicit indices are evaluated as given; per-sample records match
the verdicts and the scores (acc from one sample; pass@1 / pass@k / mean@k from k samples, checked
against the records by hand); a multi-turn env is played to the end and its turns averaged; numeric
episode metrics a trajectory carries are averaged as ``episode_<name>`` (hand-computed); an index
outside the split is an error; ``evaluate_scripted`` (``evalgym demo``) gives the reference 1.0 and the
hedger 0.0 on procedural and dataset envs.
"""

from __future__ import annotations

import pytest

from evalgym.errors import EvalgymError
from evalgym.evaluate import (EvalSampling, doc_metrics, eval_env, eval_indices, evaluate, evaluate_scripted,
                              scripted)
from evalgym.types import Verdict

pytestmark = pytest.mark.timeout(600)


def test_default_split_and_problems():
    res = evaluate(scripted("reference"), "arithmetic", limit=5)
    text_env, split = eval_env("arithmetic")
    assert res.split == split == "eval" and res.indices == eval_indices(text_env, 5)
    assert len(set(res.hashes)) == 5 and res.score("acc").value == 1.0 and res.score("acc").n == 5
    gsm = evaluate(scripted("reference"), "gsm8k", limit=3)
    assert gsm.split == "test" and gsm.indices == [0, 1, 2]
    assert [r.problem_id for r in gsm.records] == ["gsm8k-v0/test/0", "gsm8k-v0/test/1", "gsm8k-v0/test/2"]
    some = evaluate(scripted("reference"), "gsm8k", indices=[7, 3])
    assert some.indices == [7, 3] and [r.index for r in some.records] == [7, 3]
    with pytest.raises(EvalgymError, match="outside its 1319 problems"):
        evaluate(scripted("reference"), "gsm8k", indices=[5000])


def test_k_samples_scores_agree_with_the_records():
    k = 4
    res = evaluate(scripted("noisy"), "arithmetic", limit=12, sampling=EvalSampling(num_samples=k, seed=3))
    assert len(res.records) == 12 * k
    by_doc: dict[int, list[bool]] = {}
    for r in res.records:
        by_doc.setdefault(r.doc, []).append(r.correct)
        assert r.reward == float(r.correct) and r.error is None and r.verdict
    assert sorted(len(v) for v in by_doc.values()) == [k] * 12
    assert res.score("pass@1").value == pytest.approx(sum(sum(v) / k for v in by_doc.values()) / 12)
    assert res.score(f"pass@{k}").value == pytest.approx(sum(any(v) for v in by_doc.values()) / 12)
    assert res.score(f"mean@{k}").value == res.score("pass@1").value
    assert 0 < res.score("pass@1").value < res.score(f"pass@{k}").value    # the samples differ
    lo, hi = res.score("pass@1").ci_low, res.score("pass@1").ci_high
    assert lo < res.score("pass@1").value < hi
    again = evaluate(scripted("noisy"), "arithmetic", limit=12, sampling=EvalSampling(num_samples=k, seed=3))
    assert [r.completion for r in again.records] == [r.completion for r in res.records]     # seeded


def test_multi_turn_env_is_played_to_the_end():
    res = evaluate(scripted("noisy"), "retry-arithmetic", limit=20)
    turns = [r.turns for r in res.records]
    assert max(turns) > 1 and res.score("turns").value == pytest.approx(sum(turns) / len(turns))
    multi = next(r for r in res.records if r.turns > 1)
    assert [m["role"] for m in multi.transcript][:2] == ["assistant", "user"] and multi.transcript[-1]["role"] == "assistant"


def test_episode_metrics_are_averaged_by_name():
    v = [Verdict(reward=1.0, correct=True), Verdict(reward=0.0, correct=False)]
    m = doc_metrics(v, episodes=[{"episode_tool_calls": 3.0, "episode_success": 1.0}, {"episode_tool_calls": 1.0}])
    assert m["episode_tool_calls"] == 2.0 and m["episode_success"] == 1.0 and m["pass@2"] == 1.0


@pytest.mark.parametrize("env", ["arithmetic", "math500", "countdown-gen"])
def test_demo_scores(env):
    assert evaluate_scripted(env, "reference", num=10).accuracy == 1.0
    assert evaluate_scripted(env, "hedger", num=10).accuracy == 0.0
