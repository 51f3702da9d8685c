"""Tasks by the names users type, thinking sections, and lm-eval's own defaults through evalgym.

Covers: ``evalgym/arithmetic-v1``, ``arithmetic-v1`` and ``evalgym_arithmetic`` are one env task (the CLI
stores it once and skips the other spellings), a bare lm-eval name is lm-eval's task, a name that is
neither is an error naming it, the envs and where lm-eval's tasks are listed; the thinking section is cut
before answers are read, for env tasks (the driver) and lm-eval tasks (``PolicyLM``), and keeping it
changes the outcome; ``--num-samples k`` on an lm-eval task reports pass@1 / pass@k / mean@k that agree
with its per-sample records; lm-eval's few-shot draw follows its own seed (1234), not evalgym's sampling
seed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evalgym.benchmarks.lmeval import TaskRef, resolve_task
from evalgym.benchmarks.lmeval_run import run_lmeval_task
from evalgym.errors import EvalgymError
from evalgym.evaluate import EvalSampling, evaluate, strip_thinking
from evalgym.types import Completion
from tests.benchmarks._scripted import ScriptedPolicy

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]


def test_env_task_spellings_are_one_task():
    want = TaskRef("env", "evalgym_gsm8k", "evalgym/gsm8k-v0")
    assert resolve_task("evalgym/gsm8k-v0") == resolve_task("gsm8k-v0") == resolve_task("evalgym_gsm8k") == want
    assert resolve_task("gsm8k") == TaskRef("lmeval", "gsm8k")          # lm-eval's, by its own name
    with pytest.raises(EvalgymError) as e:
        resolve_task("evalgym/arithmetic-v0")                            # a version that is not registered
    assert "'evalgym/arithmetic-v0'" in str(e.value) and "arithmetic" in str(e.value)


@pytest.mark.slow
def test_bare_names_and_unknown_names():
    # lm-eval has no task called countdown-gen: the env; one called arithmetic: lm-eval's (a group)
    assert resolve_task("countdown-gen") == TaskRef("env", "evalgym_countdown-gen", "evalgym/countdown-gen-v1")
    assert resolve_task("arithmetic").kind == "lmeval"
    with pytest.raises(EvalgymError) as e:
        resolve_task("gsm9k")
    msg = str(e.value)
    assert "unknown task 'gsm9k'" in msg and "gsm8k" in msg and "lm-eval ls tasks" in msg


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalgym.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TQDM_DISABLE": "1"})


def test_cli_takes_every_spelling_and_names_a_bad_one(tiny_path, tmp_path):
    store = str(tmp_path / "s.sqlite")
    common = ["--model", tiny_path, "--limit", "3", "--max-tokens", "8", "--threads", "1", "--store", store]
    first = _cli("eval", "--tasks", "evalgym/arithmetic-v1", *common)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "evalgym_arithmetic: 3 rows recorded" in first.stderr
    for spelling in ("arithmetic-v1", "evalgym_arithmetic"):
        again = _cli("eval", "--tasks", spelling, *common, "--json")
        assert again.returncode == 0 and "evalgym_arithmetic: already in the store, skipped" in again.stderr
        assert {json.loads(line)["task"] for line in again.stdout.splitlines()} == {"evalgym_arithmetic"}
    bad = _cli("eval", "--tasks", "evalgym_arithmetik", *common)
    assert bad.returncode == 2 and "unknown task 'evalgym_arithmetik'" in bad.stderr
    assert "did you mean evalgym_arithmetic" in bad.stderr and "Traceback" not in bad.stderr


def test_more_problems_than_the_eval_split_is_an_error(tiny_path, tmp_path):
    from evalgym.benchmarks.evaluate_ckpt import EvalSpec, evaluate_model

    spec = EvalSpec(tasks=["evalgym_arithmetic"], limit=17, env_kwargs={"arithmetic": {"ops": "+"}})
    with pytest.raises(EvalgymError, match="asked for 17 distinct problems of split 'eval', which holds 16"):
        evaluate_model(tiny_path, spec)


# -- thinking ---------------------------------------------------------------------------------------

TAGS = ("<reasoning>", "</reasoning>")


def test_strip_thinking_rules():
    assert strip_thinking("<think>x = 3</think> The answer is 4", ("<think>", "</think>")).strip() == "The answer is 4"
    assert strip_thinking("a</think>b</think> c").strip() == "c"          # the template opened it: after the last
    assert strip_thinking("partial <think>still thinking") == ""          # unfinished: no answer given
    assert strip_thinking("no tags", None) == "no tags" and strip_thinking("<think>a</think>b", None) == "<think>a</think>b"


def _thinker(problem, rng):
    """A wrong box inside the thinking, the right answer after it in words (no box)."""
    return f"<reasoning>first guess \\boxed{{{int(problem.answer) + 1}}}</reasoning> The answer is {problem.answer}."


def test_driver_cuts_thinking_before_grading_and_keeping_it_changes_the_outcome():
    on = evaluate(("thinker", _thinker), "arithmetic", limit=8, sampling=EvalSampling(think=TAGS))
    off = evaluate(("thinker", _thinker), "arithmetic", limit=8, sampling=EvalSampling(think=None))
    assert on.score("acc").value == 1.0           # read after the thinking: "The answer is n."
    assert off.score("acc").value == 0.0          # read whole: the grader takes the (wrong) box
    rec = on.records[0]
    assert rec.completion.startswith("<reasoning>") and rec.graded.strip().startswith("The answer is")


class _GSMThinker(ScriptedPolicy):
    """Answers gsm8k in its format: a wrong '#### n' inside the reasoning, the right one after it."""

    def generate(self, prompts, sampling, *, keys=None):
        out = []
        for prompt in prompts:
            p = self._problem(prompt)
            out.append([Completion(f"<reasoning>#### {int(p.answer) + 1}</reasoning>\n#### {p.answer}")])
        return out


def _gsm_problems(n):
    from evalgym.rollouts import make_env

    env = make_env("gsm8k", split="test")
    return [env.source.problem(i) for i in range(n)]


def test_lmeval_task_reads_the_answer_after_the_thinking(tiny_policy, data_dir):
    policy = _GSMThinker(tiny_policy.tokenizer, _gsm_problems(4), key=lambda p: p.prompt_text.rsplit("\n\n", 1)[0])
    on = run_lmeval_task(policy, "gsm8k", limit=4, think=TAGS, data_dir=str(data_dir))
    off = run_lmeval_task(policy, "gsm8k", limit=4, think=None, data_dir=str(data_dir))
    score = lambda out: {s.metric: s.value for s in out.scores}["exact_match,strict-match"]  # noqa: E731
    assert score(on) == 1.0 and score(off) == 0.0     # strict-match takes the first '#### n'
    assert on.records[0]["completion"].startswith("<reasoning>")   # the raw response is kept in the record
    assert "<reasoning>" not in on.records[0]["graded"]


# -- lm-eval's defaults and k samples ------------------------------------------------------------------


class _Coin(ScriptedPolicy):
    """Right or wrong by a coin seeded by the sampling seed and the prompt: samples differ across runs."""

    def generate(self, prompts, sampling, *, keys=None):
        out = []
        for k, prompt in zip(keys or range(len(prompts)), prompts):
            p = self._problem(prompt)
            right = random.Random(f"{sampling.seed}/{k}").random() < 0.5
            out.append([Completion(f"#### {p.answer if right else int(p.answer) + 1}")])
        return out


def test_lmeval_task_with_k_samples_reports_pass_and_mean_at_k(tiny_policy, data_dir):
    policy = _Coin(tiny_policy.tokenizer, _gsm_problems(6), key=lambda p: p.prompt_text.rsplit("\n\n", 1)[0])
    out = run_lmeval_task(policy, "gsm8k", limit=6, num_samples=4, data_dir=str(data_dir))
    scores = {s.metric: s for s in out.scores}
    assert {"pass@1,strict-match", "pass@4,strict-match", "mean@4,strict-match"} <= set(scores)
    per_doc: dict[int, list[float]] = {}
    for r in out.records:
        per_doc.setdefault(r["doc"], []).append(float(r["metrics"]["strict-match"]["exact_match"]))
    assert sorted(len(v) for v in per_doc.values()) == [4] * 6
    assert scores["pass@1,strict-match"].value == pytest.approx(sum(sum(v) / 4 for v in per_doc.values()) / 6)
    assert scores["pass@4,strict-match"].value == pytest.approx(sum(max(v) for v in per_doc.values()) / 6)
    assert 0 < scores["pass@1,strict-match"].value < scores["pass@4,strict-match"].value


def test_fewshot_examples_follow_lm_evals_seed_not_ours(tiny_policy, data_dir):
    policy = ScriptedPolicy(tiny_policy.tokenizer, _gsm_problems(2), "reference",
                            key=lambda p: p.prompt_text.rsplit("\n\n", 1)[0])
    prompt = lambda **kw: run_lmeval_task(policy, "gsm8k", limit=1, data_dir=str(data_dir),  # noqa: E731
                                          **kw).records[0]["prompt"][0]["content"]
    default = prompt(seed=0)
    assert prompt(seed=12345) == default                      # evalgym's sampling seed: not the few-shot draw
    assert prompt(fewshot_seed=1234) == default               # lm-eval's default seed
    assert prompt(fewshot_seed=1) != default                  # another few-shot seed, other examples
    assert "<|im_start|>" not in default and default.count("Question:") == 6   # no chat template by default
