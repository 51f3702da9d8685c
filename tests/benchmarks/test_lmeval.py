"""evalgym envs as lm-eval tasks, run through the real ``lm_eval.simple_evaluate``.

Covers: pass@k / mean@k against hand-computed values; an env task scores exactly what our own
evaluation (``rollouts.collect``) scores with the same responses, and feeds the model the same tokens
as a rollout (chat template applied the same way); the reference policy scores 1.0 (Wilson interval
below 1) and the hedger 0.0; sampled evaluation (k=4) reports pass@1 / pass@4 / mean@4 that agree
with the per-doc verdicts; the IFEval verifier agrees with lm-eval's own IFEval functions on
hand-written responses (strict and loose, prompt and instruction level), and ``evalgym_ifeval`` with
lm-eval's ``ifeval`` task on the same responses; lm-eval's ``gsm8k`` runs on the local data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lm_eval
import pytest

from evalgym.benchmarks.lmeval import PolicyLM, build_task, task_manager
from evalgym.benchmarks.lmeval_run import task_scores
from evalgym.evaluate import doc_metrics as sample_metrics
from evalgym.evaluate import eval_env, eval_indices, interval, pass_at_k
from evalgym.policies.base import SamplingParams, encode
from evalgym.rollouts import collect, make_env
from evalgym.types import Verdict
from tests.benchmarks._scripted import ScriptedPolicy

pytestmark = pytest.mark.timeout(900)


def _evaluate(policy, task, limit, **kw):
    lm = PolicyLM(policy, max_gen_toks=kw.pop("max_gen_toks", 256))
    return lm_eval.simple_evaluate(model=lm, tasks=task, limit=limit, apply_chat_template=lm.chat, log_samples=True,
                                   bootstrap_iters=0, task_manager=task_manager((), False), **kw)


def test_pass_at_k_and_mean_at_k_by_hand():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)          # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 4, 1) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    v = lambda r, err=None: Verdict(reward=r, correct=r == 1.0, error=err)  # noqa: E731
    m = sample_metrics([v(1.0), v(0.0), v(0.5), v(0.0, "timeout")])
    assert m == {"pass@1": 0.25, "pass@4": 1.0, "mean@4": pytest.approx(0.375), "grader_errors": 0.25}
    assert sample_metrics([v(0.0)]) == {"acc": 0.0, "reward": 0.0, "grader_errors": 0.0}
    # intervals: Wilson for 0/1 values, bootstrap for fractions, flattened lists
    mean, lo, hi, n, _ = interval([1.0] * 10)
    assert (mean, hi, n) == (1.0, 1.0, 10) and 0.65 < lo < 0.75          # Wilson(10/10) = [0.722, 1]
    mean, lo, hi, n, _ = interval([0.25, 0.5, 0.75, 1.0])
    assert mean == 0.625 and 0.25 <= lo < mean < hi <= 1.0 and n == 4
    assert interval([[True, False], [True]])[:1] == (2 / 3,) and interval([[True, False], [True]])[3] == 3


def test_env_task_renders_the_rollout_prompt_and_scores_like_collect(tiny_policy):
    """Tiny model, greedy: lm-eval's context tokens are the rollout's prompt tokens and its responses
    the rollout's responses; then a noisy scripted policy (non-trivial score) through both paths."""
    n = 6
    task = build_task("evalgym_arithmetic", max_tokens=24)
    out = _evaluate(tiny_policy, task, n, max_gen_toks=24)
    samples = sorted(out["samples"]["evalgym_arithmetic"], key=lambda s: s["doc_id"])
    env, split = eval_env("arithmetic")                     # the env task's docs: the eval split's problems
    assert split == "eval" and [s["doc"]["index"] for s in samples] == eval_indices(env, n)
    rollout = collect(tiny_policy, env, indices=eval_indices(env, n), sampling=SamplingParams(temperature=0, max_tokens=24))
    tok = tiny_policy.tokenizer
    for s, g in zip(samples, rollout.groups):
        traj = g.trajectories[0]
        assert encode(tok, s["arguments"][0][0]) == list(traj.steps[0].completion.prompt_token_ids)
        assert s["resps"][0][0] == traj.steps[0].completion.text
        assert s["acc"] == float(traj.correct)

    indices = eval_indices(env, 40)
    problems = [env.source.problem(i) for i in indices]
    noisy = ScriptedPolicy(tok, problems, "noisy")
    out = _evaluate(noisy, build_task("evalgym_arithmetic"), 40)
    ours = collect(noisy, env, indices=indices, sampling=SamplingParams(temperature=0))
    lm_acc = out["results"]["evalgym_arithmetic"]["acc,none"]
    assert lm_acc == pytest.approx(sum(t.correct for t in ours.trajectories) / 40)
    assert 0.4 < lm_acc < 0.95  # noisy answers right ~70% of the time: a grader that misses formats drops it
    per_doc = [s["acc"] for s in sorted(out["samples"]["evalgym_arithmetic"], key=lambda s: s["doc_id"])]
    assert per_doc == [float(t.correct) for t in ours.trajectories]


@pytest.mark.parametrize("env", ["evalgym_arithmetic", "evalgym_gsm8k", "evalgym_countdown"])
def test_reference_scores_one_and_hedger_zero(env, tiny_policy, data_dir):
    task_env, _ = eval_env(env.removeprefix("evalgym_"))
    problems = [task_env.source.problem(i) for i in eval_indices(task_env, 16)]
    for script, want in (("reference", 1.0), ("hedger", 0.0)):
        out = _evaluate(ScriptedPolicy(tiny_policy.tokenizer, problems, script), build_task(env), 16)
        scores = {s.metric: s for s in task_scores(out, env)}
        assert scores["acc"].value == want and scores["acc"].n == 16
        assert scores["grader_errors"].value == 0.0
        lo, hi = scores["acc"].ci_low, scores["acc"].ci_high
        assert (lo < 1.0 and hi == 1.0) if want == 1.0 else (lo == 0.0 and 0.0 < hi < 0.3)


def test_sampled_env_task_reports_pass_and_mean_at_k(tiny_policy):
    k, n = 4, 6
    out = _evaluate(tiny_policy, build_task("evalgym_arithmetic", num_samples=k, temperature=1.0, max_tokens=16), n,
                    max_gen_toks=16)
    res = out["results"]["evalgym_arithmetic"]
    assert {"pass@1,none", "pass@4,none", "mean@4,none", "grader_errors,none"} <= set(res)
    samples = out["samples"]["evalgym_arithmetic"]
    assert len(samples) == n and all(len(s["resps"][0]) == k for s in samples)
    # seeded per (context, sample): the 4 samples of a prompt are not all one greedy copy
    assert any(len(set(s["resps"][0])) > 1 for s in samples)
    env, _ = eval_env("arithmetic")
    verifier = env.verifier
    for s in samples:
        vs = verifier.verify_batch([env.source.problem(s["doc"]["index"])] * k, s["resps"][0])
        c = sum(v.correct for v in vs)
        assert s["pass@1"] == pytest.approx(c / k) and s["pass@4"] == float(c > 0)
        assert s["mean@4"] == pytest.approx(sum(v.reward for v in vs) / k)
    assert res["pass@4,none"] >= res["pass@1,none"]


# -- IFEval ---------------------------------------------------------------------------------------

HAND = [  # (instruction ids, kwargs, response)
    (["punctuation:no_comma"], [{}], "Roses are red and violets are blue."),
    (["punctuation:no_comma"], [{}], "Roses are red, violets are blue."),
    (["detectable_format:title", "length_constraints:number_words"], [{}, {"relation": "less than", "num_words": 20}],
     "<<A Short Poem>>\nThe sun is warm today."),
    (["change_case:english_lowercase"], [{}], "this answer is entirely in lowercase english words for the checker."),
    (["change_case:english_lowercase"], [{}], "This answer starts with a capital letter and so it fails."),
    (["startend:quotation", "detectable_format:number_bullet_lists"], [{}, {"num_bullets": 2}],
     '"Here are two points:\n* first point\n* second point"'),
    (["length_constraints:number_sentences", "detectable_content:postscript"],
     [{"relation": "less than", "num_sentences": 3}, {"postscript_marker": "P.S."}],
     "Dr. Smith went home. He slept well.\nP.S. see you soon"),
    # loose differs from strict: the required ending only holds without the last line / markdown stars
    (["startend:end_checker", "detectable_format:json_format"], [{"end_phrase": "Is there anything else?"}, {}],
     "Sure.\nIs there anything else?\n**footnote**"),
    (["change_case:capital_word_frequency", "keywords:letter_frequency"],
     [{"capital_relation": "at least", "capital_frequency": 2}, {"letter": "z", "let_relation": "at least",
                                                                  "let_frequency": 2}],
     "The ZEBRA and the LYNX meet."),
]


def test_ifeval_grader_agrees_with_lm_eval_functions():
    from lm_eval.tasks.ifeval.utils import process_results

    from evalgym.verifiers.ifeval import grade

    outcomes = set()
    for ids, kwargs, response in HAND:
        prompt = "Write something."
        theirs = process_results({"key": 1, "instruction_id_list": ids, "prompt": prompt, "kwargs": kwargs}, [response])
        ours = grade(ids, kwargs, prompt, response)
        for metric in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
            assert ours["details"][metric] == theirs[metric], (ids, response, metric)
        assert ours["reward"] == float(theirs["prompt_level_strict_acc"])
        outcomes.add((theirs["prompt_level_strict_acc"], theirs["prompt_level_loose_acc"]))
    assert {(True, True), (False, False), (False, True)} <= outcomes  # the cases exercise every verdict


def test_ifeval_env_task_matches_lm_eval_ifeval(tiny_policy, data_dir):
    """The same responses scored by evalgym_ifeval (our verifier) and by lm-eval's own ifeval task
    (its YAML, on the local copy of the data): all four metrics agree."""
    env = make_env("ifeval")
    problems = [env.source.problem(i) for i in range(12)]
    policy = ScriptedPolicy(tiny_policy.tokenizer, problems, "noisy")  # reference text, or a corrupted one
    ours = _evaluate(policy, build_task("evalgym_ifeval"), 12)["results"]["evalgym_ifeval"]
    [std_task] = build_task("ifeval", data_dir=str(data_dir))
    assert std_task.config.dataset_kwargs["data_files"]["train"].endswith("ifeval/input_data.jsonl")
    theirs = _evaluate(policy, [std_task], 12)["results"]["ifeval"]
    for metric in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
        assert ours[f"{metric},none"] == pytest.approx(theirs[f"{metric},none"]), metric
    assert ours["reward,none"] == pytest.approx(ours["prompt_level_strict_acc,none"])
    assert 0.0 < ours["prompt_level_strict_acc,none"] < 1.0


def test_ifeval_references_follow_every_satisfiable_prompt(data_dir):
    """All 541 references score 1.0 except the prompts that contradict themselves: repeat a prompt
    that has a comma / a forbidden word / a capped keyword, and also obey that cap."""
    env = make_env("ifeval")
    problems = [env.source.problem(i) for i in range(env.source.size)]
    verdicts = env.verifier.verify_batch(problems, [p.reference for p in problems])
    assert not [v.error for v in verdicts if v.error]
    failed = {p.extra["key"] for p, v in zip(problems, verdicts) if v.reward != 1.0}
    assert failed == {p.extra["key"] for p in problems if not p.extra["reference_follows_all"]}

    def contradictory(p):
        repeat = next((kw["prompt_to_repeat"] for i, kw in zip(p.extra["instruction_id_list"], p.extra["kwargs"])
                       if i == "combination:repeat_prompt"), None)
        if repeat is None:
            return False
        for i, kw in zip(p.extra["instruction_id_list"], p.extra["kwargs"]):
            low = repeat.lower()
            if i == "punctuation:no_comma" and "," in repeat:
                return True
            if i == "keywords:forbidden_words" and any(w.lower() in low for w in kw["forbidden_words"]):
                return True
            if i == "keywords:frequency" and kw["relation"] == "less than" and low.count(kw["keyword"].lower()) >= kw["frequency"]:
                return True
        return False

    assert failed == {p.extra["key"] for p in problems if contradictory(p)}
    assert len(failed) <= 6 and len(problems) == 541


def test_gsm8k_standard_task_runs_on_local_data(tiny_policy, data_dir):
    [task] = build_task("gsm8k", data_dir=str(data_dir))
    files = task.config.dataset_kwargs["data_files"]
    assert Path(files["test"]) == data_dir / "gsm8k" / "test.jsonl"
    env = make_env("gsm8k", split="test")
    problems = [env.source.problem(i) for i in range(8)]  # the env reads the same test file, in order
    question = lambda p: p.prompt_text.rsplit("\n\n", 1)[0]  # noqa: E731  (without the env's instruction)
    out = _evaluate(ScriptedPolicy(tiny_policy.tokenizer, problems, "reference", key=question), [task], 8)
    res = out["results"]["gsm8k"]
    assert res["exact_match,strict-match"] == 1.0 and out["n-samples"]["gsm8k"]["effective"] == 8
    first = out["samples"]["gsm8k"][0]
    assert first["arguments"][0][0].count("Question:") == 6  # 5 shots + the question, from the local train file
    scores = {s.metric: s for s in task_scores(out, "gsm8k")}
    assert scores["exact_match,strict-match"].n == 8 and scores["exact_match,strict-match"].ci_high == 1.0
    assert math.isfinite(scores["exact_match,flexible-extract"].value)
    assert json.dumps(res, default=str)
