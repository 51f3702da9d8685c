"""New problems (canonical forms of procedural envs, proposals, agreement, curriculum) and the keep rules."""

from __future__ import annotations

import pytest

from evalgym.synth import SynthConfig
from evalgym.synth.filters import select, shape_dpo, shape_rl, shape_sft
from evalgym.synth.problems import canonical_for, parse_proposal, pseudo_verify
from evalgym.types import ChatMessage, Problem, to_dict


@pytest.mark.parametrize("env,knobs", [("arithmetic", {"digits": 2, "terms": 3}), ("linear-equations", {"coef_max": 12}),
                                       ("retry-arithmetic", {})])
def test_a_procedural_question_parses_back_into_its_envs_canonical_content(env, knobs):
    from evalgym.rollouts import make_env

    for split in ("train", "eval"):
        src = make_env(env, split=split, **knobs).source
        for i in range(40):
            p = src.problem(i)
            question = p.prompt_text[: -len(src.instruction)].strip()
            assert canonical_for(p.env_id, question, p.answer) == (p.extra["canonical"], True), question
    # disguised: spacing, leading zeros, no final period
    assert canonical_for("evalgym/arithmetic-v1", "compute 03+4 -  2", "")[0] == "arithmetic:3 + 4 - 2"
    # not in the env's form: question + answer, marked as not the env's own
    c, own = canonical_for("evalgym/arithmetic-v1", "What is three plus four?", "7")
    assert not own and "three plus four" in c


def test_parse_proposal():
    assert parse_proposal("Sure! Problem: Tom has 3 apples and buys 5 more. How many?\nAnswer: 8") == \
        "Tom has 3 apples and buys 5 more. How many?"
    assert parse_proposal("Compute 17 + 25.") == "Compute 17 + 25."
    assert parse_proposal("Problem:\n\n") is None and parse_proposal("ok") is None


def _rec(texts: list[str], source: str = "proposed", correct: list[bool] | None = None) -> dict:
    p = Problem(id="proposed/0", env_id="evalgym/arithmetic-v1", env_version=1, domain="math",
                messages=(ChatMessage("user", "Compute 5 + 7.\n\nPut the final answer in \\boxed{}."),), answer="",
                extra={"question": "Compute 5 + 7."})
    correct = correct or [False] * len(texts)
    return {"pos": 0, "problem": to_dict(p), "question": "Compute 5 + 7.", "source": source, "teacher": "t", "error": None,
            "samples": [{"text": t, "finish_reason": "stop", "tokens": 3, "reward": float(c), "correct": c, "error": None,
                         "verifier": "none", "verifier_version": "1", "details": {}} for t, c in zip(texts, correct)],
            "weak": None, "weak_model": None}


def test_pseudo_verification_keeps_agreeing_answers_and_marks_them():
    cfg = SynthConfig(envs=["arithmetic"], out="x", teacher="t")
    agree = _rec(["so \\boxed{12}", "The answer is 12.", "\\boxed{12.0}", "\\boxed{13}"])
    split = _rec(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"])
    out, report = pseudo_verify(cfg, [agree, split])
    assert report["answered"] == 2 and report["kept"] == 1 and report["low_agreement"] == 1
    rec = out[0]
    assert rec["pseudo"] == {"answer": "12", "agreement": 0.75, "votes": 3}
    assert [s["correct"] for s in rec["samples"]] == [True, True, True, False]
    assert rec["problem"]["answer"] == "12" and rec["problem"]["extra"]["canonical"] == "arithmetic:5 + 7"
    assert rec["problem"]["extra"]["env_scheme"] is True
    # a stricter threshold drops it too
    assert pseudo_verify(cfg.model_copy(update={"propose": cfg.propose.model_copy(update={"agreement": 0.9})}),
                         [agree])[1]["kept"] == 0
    rows = shape_sft(select(cfg, out)[0])
    assert {r["verified"] for r in rows} == {"pseudo"} and all(r["agreement"] == 0.75 for r in rows)


def test_keep_rules_max_per_prompt_and_pass_band():
    base = SynthConfig(envs=["arithmetic"], out="x", teacher="t", n=4)
    recs = [_rec(["a1", "a2", "a3", "a1"], "env:x", [True, False, True, True]),       # 3 of 4, a duplicate response
            _rec(["b1", "b2", "b3", "b4"], "env:x", [False] * 4),                      # never solved
            _rec(["c1", "", "c3", "c4"], "env:x", [True, False, False, False])]        # an empty sample
    recs[2]["samples"][3]["error"] = "timeout"
    kept, report = select(base, recs)
    assert [k for _, k in kept] == [[0, 2], [0]]           # correct, the duplicate dropped, b has none
    assert report["samples_dropped"] == {"incorrect": 6, "duplicate response": 1, "empty": 1, "grader error": 1}
    assert report["prompts_dropped"] == {"no sample kept": 1}
    assert [k for _, k in select(base.model_copy(update={"keep": "best"}), recs)[0]] == [[0], [0], [0]]
    assert [k for _, k in select(base.model_copy(update={"keep": "all"}), recs)[0]] == [[0, 1, 2], [0, 1, 2, 3], [0, 2]]
    assert [k for _, k in select(base.model_copy(update={"max_per_prompt": 1}), recs)[0]] == [[0], [0]]
    band = base.model_copy(update={"pass_band": (1, 2), "shapes": ["rl"]})
    kept, report = select(band, recs)
    assert [r["samples"][0]["text"] for r, _ in kept] == ["c1"] and report["prompts_dropped"] == {
        "pass band (solved by 3 of 4)": 1, "pass band (solved by 0 of 4)": 1}
    rl = shape_rl(kept)
    assert rl[0]["pass_rate"] == 0.25 and rl[0]["env_id"] == "evalgym/arithmetic-v1"
    pairs, skipped = shape_dpo(base, select(base, recs)[0])
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a1", "a2"), ("c1", "c3")] and skipped == {}
    with pytest.raises(ValueError, match="pass_band"):
        SynthConfig(envs=["arithmetic"], out="x", pass_band=(3, 1))


def test_curriculum_reports_each_level_and_keeps_the_band(tmp_path, tiny_path):
    from evalgym.synth import synthesize

    cfg = SynthConfig(teacher=tiny_path, model=tiny_path, envs=["arithmetic"], num_prompts=6, n=2, keep="all",
                      max_tokens=8, out=str(tmp_path / "c"), decontam=False, shapes=["rl"],
                      curriculum={"n": 4, "band": [0, 3], "levels": [{"digits": 1}, {"digits": 2}], "candidates": 5})
    card = synthesize(cfg, progress=False)["card"]
    levels = card["curriculum"]["levels"]
    assert [lv["knobs"] for lv in levels] == [{"digits": 1}, {"digits": 2}]
    assert all(lv["probed"] == 5 and lv["in_band"] == 5 - lv["always"] for lv in levels)
    assert card["counts"]["prompts from envs"] == min(6, sum(lv["in_band"] for lv in levels))
    # the random tiny model never solves these: band [1, 3] (sometimes solved) keeps none, and says why
    assert all(lv["never"] == 5 for lv in levels)
    cfg2 = cfg.model_copy(update={"out": str(tmp_path / "c2"),
                                  "curriculum": cfg.curriculum.model_copy(update={"band": (1, 3)})})
    from evalgym.errors import EvalgymError

    with pytest.raises(EvalgymError, match=r"the curriculum kept 0 of 10 probed problems \(band \[1, 3\]; never solved 10"):
        synthesize(cfg2, progress=False)


def test_proposals_from_a_noise_teacher_are_counted_and_filtered_by_agreement(tmp_path, tiny_path):
    from evalgym.synth import synthesize

    cfg = SynthConfig(teacher=tiny_path, envs=["arithmetic"], num_prompts=3, n=3, max_tokens=8, out=str(tmp_path / "p"),
                      decontam=False, propose={"num": 6, "modes": ["numbers", "compose"], "max_tokens": 24})
    card = synthesize(cfg, progress=False)["card"]
    prop = card["proposals"]
    assert prop["asked"] == 6 and prop["proposed"] + prop["unusable"] + prop["failed"] == 6
    assert card["counts"]["problems proposed"] == prop["proposed"]
    if prop["proposed"]:
        agreement = prop["agreement"]
        assert agreement["answered"] == prop["proposed"] and len(agreement["agreements"]) == prop["proposed"]
        assert agreement["kept"] == sum(a >= 0.75 for a in agreement["agreements"])
