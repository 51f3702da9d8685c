"""lm-eval parity on a real model (SmolLM2-135M-Instruct): an lm-eval task run through evalgym
(``evalgym.benchmarks.lmeval_run``, what ``evalgym eval --tasks gsm8k`` runs) against lm-eval's own HF
model class (``HFLM``) on the same task.

Covers: gsm8k, 20 problems, greedy, with the chat template (lm-eval's ``--apply_chat_template``): the
same prompts (so the same few-shot examples: lm-eval's default few-shot seed 1234, whatever evalgym's own
``seed``), the same generations and the same scores; without the chat template (lm-eval's default, and
evalgym's for an lm-eval task run by name) the prompt is plain text and differs from the chat one;
log-likelihoods of a small local multiple-choice task (built here from GSM8K questions with four
numeric choices) equal HFLM's to 1e-4 per choice, with the same accuracy.

Slow: HFLM generates one problem at a time (~1 min a problem on a busy 2-core box).
"""

from __future__ import annotations

import json
import random

import lm_eval
import pytest

from evalgym.benchmarks.lmeval import build_standard_task, task_manager
from evalgym.benchmarks.lmeval_run import run_lmeval_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]
N = 20
GEN = {"max_gen_toks": 128}          # both sides; a shorter budget keeps the test's time down, not its point


@pytest.fixture(scope="module")
def models(smollm2_path):
    from lm_eval.models.huggingface import HFLM

    from evalgym.policies.hf import HFPolicy

    return HFPolicy(smollm2_path, device="cpu"), HFLM(pretrained=smollm2_path, device="cpu", batch_size=1,
                                                      dtype="float32")


def _theirs(lm, tasks, **kw):
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, log_samples=True, bootstrap_iters=0,
                                   task_manager=task_manager((), False), **kw)


def test_gsm8k_same_prompts_generations_and_scores_as_hflm(models, data_dir):
    ours_policy, hflm = models
    ours = run_lmeval_task(ours_policy, "gsm8k", limit=N, chat_template=True, seed=7, max_tokens=GEN["max_gen_toks"],
                           data_dir=str(data_dir))
    theirs = _theirs(hflm, build_standard_task("gsm8k", data_dir=str(data_dir)), limit=N, apply_chat_template=True,
                     gen_kwargs=dict(GEN))
    samples = sorted((s for s in theirs["samples"]["gsm8k"] if s["filter"] == "strict-match"), key=lambda s: s["doc_id"])
    assert len(samples) == len(ours.records) == N
    prompts = [r["prompt"][0]["content"] for r in ours.records]
    assert prompts == [s["arguments"][0][0] for s in samples]
    assert all(p.count("<|im_start|>user") == 6 for p in prompts)         # 5 shots as turns + the question
    assert [r["completion"] for r in ours.records] == [s["resps"][0][0] for s in samples]
    mine = {s.metric: s.value for s in ours.scores}
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert mine[key] == pytest.approx(float(theirs["results"]["gsm8k"][key]))

    # lm-eval's default (and evalgym's for a task run by name): no chat template, plain-text few-shot
    plain = run_lmeval_task(ours_policy, "gsm8k", limit=2, chat_template=False, max_tokens=8, data_dir=str(data_dir))
    text = plain.records[0]["prompt"][0]["content"]
    assert "<|im_start|>" not in text and text.count("Question:") == 6
    assert text.split("Question:")[1:] != [] and text != prompts[0]


def _mc_task(tmp_path, data_dir) -> str:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:N]]
    rng = random.Random(0)
    docs = []
    for r in rows:
        gold = int(r["answer"].rsplit("####", 1)[1].strip().replace(",", ""))
        choices = [gold, gold + 1, gold * 2, max(gold - 3, 0) + 7]
        rng.shuffle(choices)
        docs.append({"question": r["question"], "choices": [str(c) for c in choices], "label": choices.index(gold)})
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "mc.yaml").write_text(f"""task: evalgym_mc_parity
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 1.0
""")
    return str(tmp_path)


def test_multiple_choice_loglikelihoods_match_hflm(models, tmp_path, data_dir):
    from lm_eval.tasks import TaskManager

    ours_policy, hflm = models
    folder = _mc_task(tmp_path, data_dir)
    ours = run_lmeval_task(ours_policy, "evalgym_mc_parity", include_path=[folder])
    tm = TaskManager(include_path=[folder], include_defaults=False)
    theirs = lm_eval.simple_evaluate(model=hflm, tasks=list(tm.load(["evalgym_mc_parity"])["tasks"].values()),
                                     log_samples=True, bootstrap_iters=0, task_manager=tm)
    samples = sorted(theirs["samples"]["evalgym_mc_parity"], key=lambda s: s["doc_id"])
    assert len(samples) == len(ours.records) == N
    for rec, s in zip(ours.records, samples):
        theirs_ll = [r[0][0] for r in s["resps"]]
        assert rec["verdict"]["loglikelihoods"] == pytest.approx(theirs_ll, abs=1e-4), rec["doc"]
    mine = {s.metric: s.value for s in ours.scores}
    assert mine["acc"] == pytest.approx(float(theirs["results"]["evalgym_mc_parity"]["acc,none"]))
    assert mine["acc_norm"] == pytest.approx(float(theirs["results"]["evalgym_mc_parity"]["acc_norm,none"]))
