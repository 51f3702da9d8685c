"""Deduplication and decontamination: normalization, exact and near duplicates (MinHash LSH), and the
eval index against real benchmark data (GSM8K, MATH-500 test sets, procedural eval splits, lm-eval's GSM8K)."""

from __future__ import annotations

import pytest

from evalgym.synth.decontam import ContamRow, EvalDoc, EvalIndex
from evalgym.synth.dedup import dedup
from evalgym.synth.text import normalized, tokens


def test_normalization_undoes_whitespace_case_punctuation_and_number_formats():
    a = "Janet has 1,200 apples and  sells 3.50 dollars' worth. How many are left?"
    b = "JANET HAS 1200 APPLES AND SELLS 3.5 DOLLARS WORTH how many are LEFT"
    assert normalized(a) == normalized(b)
    assert tokens("seven minus 007 = 0.0") == ["7", "minus", "7", "=", "0"]
    assert tokens("3 − 2 × 4") == ["3", "-", "2", "*", "4"]       # unicode minus and times
    assert normalized("Compute 3 + 4.") != normalized("Compute 3 + 5.")


def test_dedup_exact_and_near_duplicates_and_keeps_distinct_math():
    texts = ["Compute 3+4.", "compute 3 + 4", "Compute 3 + 5.",
             "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
             "How many clips did Natalia sell altogether in April and May?",
             "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
             "How many clips did Natalia sell, altogether, in April and in May?"]
    kept, dropped = dedup(texts, threshold=0.7)
    assert kept == [0, 2, 3]
    assert dropped[0] == {"index": 1, "reason": "exact-duplicate", "of": 0}
    assert dropped[1]["reason"] == "near-duplicate" and dropped[1]["of"] == 3 and dropped[1]["jaccard"] >= 0.7
    # near-duplicate detection off: only the exact duplicate goes
    kept, dropped = dedup(texts, near=False)
    assert kept == [0, 2, 3, 4] and len(dropped) == 1
    # a stricter threshold keeps the rephrasing (the feature changes the outcome)
    assert dedup(texts, threshold=0.95)[0] == [0, 2, 3, 4]


def test_index_ngram_exact_and_template_windows():
    boiler = "Use each number exactly once with plus minus times and parentheses and give the final expression"
    docs = [EvalDoc("env:x/test", f"d{i}", f"Question {i} about zebras number {i}. {boiler}") for i in range(12)]
    docs.append(EvalDoc("env:x/test", "long", "the quick brown fox jumps over the lazy dog while seven cats "
                        "watch from the old red barn near the river"))
    docs.append(EvalDoc("env:x/test", "short", "Compute 3 + 4."))
    index = EvalIndex.from_docs(docs, n=13, max_doc_freq=10)
    assert index.template_grams > 0        # the shared instruction is template text, not evidence
    clean = ContamRow("c", f"Question 99 about lions. {boiler}")
    assert index.check([clean]) == []
    hit = index.check([ContamRow("h", "Tell me: The QUICK brown fox jumps over the lazy dog while 7 cats watch "
                                      "from the old red barn.")])
    assert hit and hit[0]["reason"] == "ngram" and hit[0]["doc"] == "long"
    # a short doc only matches as a whole question, not inside a longer one
    assert index.check([ContamRow("s", "compute 3+4")])[0]["reason"] == "exact"
    assert index.check([ContamRow("s2", "Compute 3 + 4 - 1.")]) == []
    # the window length is a setting: with n = 30 the 20-token overlap is not enough
    assert EvalIndex.from_docs(docs, n=30).check([ContamRow("h", hit[0]["question"])]) == []
    # responses are checked too
    assert index.check([ContamRow("r", "an unrelated question", ("the quick brown fox jumps over the lazy dog while "
                                                               "seven cats watch from the old red barn",))])


def test_eval_split_of_a_procedural_env_is_exact_for_its_canonical_content():
    from evalgym.envs.sources import split_of
    from evalgym.rollouts import make_env
    from evalgym.types import content_hash

    index = EvalIndex.from_docs([])
    ev = make_env("arithmetic", split="eval", digits=3).source.problem(0)
    tr = make_env("arithmetic", split="train", digits=3).source.problem(0)
    h_ev, h_tr = content_hash(ev), content_hash(tr)
    assert split_of(h_ev) == "eval" and split_of(h_tr) == "train"
    rows = [ContamRow("e", ev.prompt_text, (), h_ev, ev.env_id, True), ContamRow("t", tr.prompt_text, (), h_tr, tr.env_id, True),
            ContamRow("x", ev.prompt_text, (), h_ev, ev.env_id, False)]     # not in the env's form: no verdict by hash
    assert [h["row"] for h in index.check(rows)] == ["e"]


@pytest.fixture(scope="module")
def real_index(data_dir):
    return EvalIndex.build(envs=["gsm8k", "math500", "arithmetic"], lmeval_tasks=["gsm8k"], data_dir=str(data_dir))


def test_planted_paraphrases_of_real_eval_problems_are_all_caught(real_index, data_dir):
    import random

    from evalgym.data import load_rows

    test = load_rows("gsm8k/test.jsonl", data_dir_=str(data_dir))
    m500 = load_rows("math500/test.jsonl", data_dir_=str(data_dir))
    rng = random.Random(0)

    def disguise(q: str) -> str:
        q = q.upper() if rng.random() < 0.5 else q.lower()
        q = q.replace(" ", "  \n ") if rng.random() < 0.5 else " ".join(q.split())
        return q.replace("1000", "1,000").replace(".5 ", ".50 ")

    planted = [ContamRow(f"g{i}", disguise(test[i]["question"])) for i in range(0, 1319, 53)]
    planted += [ContamRow(f"m{i}", "Solve this: " + disguise(m500[i]["problem"]) + " Show your work.") for i in range(0, 500, 25)]
    hits = real_index.check(planted)
    assert {h["row"] for h in hits} == {r.id for r in planted}
    assert all(h["source"].startswith(("env:evalgym/gsm8k-v0/test", "lm-eval:gsm8k", "env:evalgym/math500-v0/test"))
               for h in hits)
    summary = real_index.summary()
    assert summary["sources"]["env:evalgym/gsm8k-v0/test"] == 1319 and summary["sources"]["lm-eval:gsm8k"] == 1319


def test_clean_training_questions_are_rarely_flagged(real_index, data_dir):
    from evalgym.data import load_rows

    train = load_rows("gsm8k/train.jsonl", data_dir_=str(data_dir))[:2000]
    hits = real_index.check([ContamRow(str(i), r["question"], (r["answer"],)) for i, r in enumerate(train)])
    # GSM8K's train split shares a few templates with its test split (measured: 2 of these 2000); false drops
    # on a clean set are reported by perf/decontam_bench.py
    assert len(hits) <= 10, [h["evidence"] for h in hits]


def test_ngram_coverage_separates_a_shared_phrase_from_a_copied_problem():
    doc = ("A square 10cm on each side has four quarter circles drawn with centers at the four corners. How many "
           "square centimeters are in the area of the shaded region? Express your answer in terms of pi.")
    index = EvalIndex.from_docs([EvalDoc("env:math/test", "d", doc)], n=13)
    phrase = ContamRow("p", "A circle of radius 3 is cut from a card. How many square centimeters are in the area of "
                            "the shaded region? Express your answer in terms of pi.")
    copied = ContamRow("c", "Solve: " + doc.upper() + " Thanks.")
    half = ContamRow("h", doc[: len(doc) * 3 // 4])     # three quarters of it: 0.6 of its windows
    assert [h["row"] for h in index.check([phrase, copied, half])] == ["c", "h"]
    assert index.check([copied])[0]["coverage"] == 1.0
    # lm-eval's rule (any shared window) also drops the row that only shares the phrase
    any_window = EvalIndex.from_docs([EvalDoc("env:math/test", "d", doc)], n=13, min_coverage=0.0)
    assert [h["row"] for h in any_window.check([phrase, copied, half])] == ["p", "c", "h"]


def test_procedural_docs_match_whole_never_inside_another_problem():
    docs = [EvalDoc("env:evalgym/fractions-v1/eval", "f", "Compute 1/4 - 4/5. Give the answer as a reduced fraction.",
                    procedural=True),
            EvalDoc("env:evalgym/math500-v0/test", "m", "Find the units digit of $18^6.$")]
    index = EvalIndex.from_docs(docs)
    rows = [ContamRow("a", "COMPUTE 1/4 - 4/5.  give the answer as a reduced fraction"),        # the same: exact
            ContamRow("b", "Compute 1/4 - 4/5 + 1/2. Give the answer as a reduced fraction."),  # another problem
            ContamRow("c", "Here: find the units digit of 18^6. Explain.")]                     # a dataset doc inside
    assert [(h["row"], h["reason"]) for h in index.check(rows)] == [("a", "exact"), ("c", "short-doc")]


def test_a_long_procedural_doc_is_caught_wrapped_but_not_with_other_numbers():
    doc = EvalDoc("env:evalgym/fractions-v1/eval", "f", "Compute 1/4 - 4/5. Give the answer as a reduced fraction.",
                  procedural=True)
    index = EvalIndex.from_docs([doc])     # 15 tokens: 3 windows of 13
    rows = [ContamRow("wrapped", "Here is a problem: compute 1/4 -  4/5. Give the answer as a reduced fraction. Thanks"),
            ContamRow("other", "Compute 2/4 - 4/5. Give the answer as a reduced fraction.")]   # shares 1 window of 3
    assert [(h["row"], h["reason"]) for h in index.check(rows)] == [("wrapped", "ngram")]
    any_window = EvalIndex.from_docs([doc], min_coverage=0.0)
    assert [h["row"] for h in any_window.check(rows)] == ["wrapped", "other"]
