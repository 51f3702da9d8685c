"""On-policy distillation (one teacher, many) and off-policy distillation: routing, checks, metrics,
and the learning effect toward a real teacher (the SFT checkpoint of the shared fixture)."""

from __future__ import annotations

import json

import pytest

from evalgym.errors import EvalgymError
from evalgym.trainers.distill import DistillConfig, train_distill
from tests.trainers import learning

# after/before KL ratios on the eval split, above the worst (largest) of seeds 0/1/2 in
# perf/results/learning_spread.md: on-policy 0.66 / 0.31 / 0.90, top-k 0.23 / 0.27 / 0.91, off-policy
# (forward KL) 0.06 / 0.10 / 0.09. The on-policy bars are loose because on two seeds of three the GRPO
# teacher (lr 5e-4) drifted far from its start (1.7 and 2.5 nats/token) and 24 steps close little of that.
ON_POLICY_KL = 0.95
TOPK_KL = 0.95
OFF_POLICY_KL = 0.3


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_teacher_with_another_tokenizer_is_refused_before_training(tmp_path, tiny_path, smollm2_path):
    cfg = DistillConfig(model=tiny_path, teachers={"math": smollm2_path}, steps=1, run_dir=str(tmp_path / "r"))
    with pytest.raises(EvalgymError, match=r"vocabulary differs"):
        train_distill(cfg, progress=False)
    assert not (tmp_path / "r").exists()


def test_unrouted_domains_error_skip_or_default(tmp_path, tiny_path):
    envs = {"arithmetic": 1.0, "countdown-gen": 1.0}
    with pytest.raises(EvalgymError, match=r"no teacher for domain 'countdown'"):
        train_distill(DistillConfig(model=tiny_path, envs=envs, teachers={"math": tiny_path}, steps=1,
                                    run_dir=str(tmp_path / "e")), progress=False)
    common = dict(model=tiny_path, envs=envs, steps=2, prompts_per_step=4, group_size=2, max_tokens=8,
                  probe_prompts=2, seed=1)
    train_distill(DistillConfig(**common, teachers={"math": tiny_path}, unrouted="skip",
                                run_dir=str(tmp_path / "s")), progress=False)
    rows = _metrics(tmp_path / "s")
    assert any(r["skipped_frac"] > 0 for r in rows)
    assert all(not any(k.endswith("/countdown") for k in r if k.startswith("reverse_kl")) for r in rows)
    train_distill(DistillConfig(**common, teachers={"math": tiny_path}, unrouted="default",
                                default_teacher=tiny_path, run_dir=str(tmp_path / "d")), progress=False)
    rows = _metrics(tmp_path / "d")
    assert all(r["skipped_frac"] == 0 for r in rows)
    assert any("reverse_kl/countdown" in r for r in rows)
    # the teacher is the student's own start: zero reverse KL at step 1, nothing masked (same engine)
    assert rows[0]["teacher_kl"] == pytest.approx(0.0, abs=1e-4) and rows[0]["masked_frac"] == 0.0
    meta = json.loads((tmp_path / "d" / "step_000002" / "meta.json").read_text())
    assert meta["trainer"] == "distill" and meta["routes"] == {"arithmetic": tiny_path, "countdown-gen": tiny_path}


def test_bad_ratio_band_and_missing_teachers_are_named(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="ratio_band"):
        DistillConfig(model=tiny_path, teachers={"math": tiny_path}, ratio_band=(1.5, 2.0), run_dir=str(tmp_path / "b"))
    with pytest.raises(EvalgymError, match="distill.teachers"):
        train_distill(DistillConfig(model=tiny_path, run_dir=str(tmp_path / "t")), progress=False)


# The student is the shared SFT checkpoint and its teacher the GRPO run from it: an RL expert of the
# student's own start, as in MOPD. Settings: tests/trainers/learning.py (DISTILL); the bars are set below the
# worst of the seeds in perf/results/learning_spread.md.

@pytest.fixture(scope="module")
def pair(sft_arithmetic, grpo_arithmetic):
    """(student checkpoint, teacher checkpoint, the teacher's policy, their divergence on the eval split)."""
    from evalgym.policies.hf import HFPolicy

    student, teacher = sft_arithmetic["checkpoint"], grpo_arithmetic["checkpoint"]
    teacher_policy = HFPolicy(teacher, device="cpu")
    return student, teacher, teacher_policy, learning.divergence(HFPolicy(student, device="cpu"), teacher_policy)


def _distill(pair, mode, run_dir, **overrides):
    """Distillation of the pair in ``mode``: (divergence after, the trained policy, metrics rows)."""
    from evalgym.policies.hf import HFPolicy

    student, teacher, teacher_policy, _ = pair
    result = learning.distill(student, teacher, run_dir, 0, mode, **overrides)
    trained = HFPolicy.from_model(result["model"].eval(), result["tokenizer"])
    return learning.divergence(trained, teacher_policy), trained, _metrics(run_dir)


@pytest.mark.slow
def test_on_policy_distillation_pulls_the_student_to_its_teacher(pair, tmp_path):
    before = pair[3]
    after, _, rows = _distill(pair, "on_policy", tmp_path / "opd")
    first, last = rows[0], rows[-1]
    for key in ("reverse_kl/math", "score_gap/math", "masked_frac/math", "reward/math", "teacher_kl", "tokens_per_s"):
        assert key in last, key
    # on problems it never trained on, the student's samples are likelier under the teacher. (The student's
    # score follows its teacher's, which this tiny GRPO run lowered: not asserted, see learning_spread.md.)
    assert after["reverse_kl"] < ON_POLICY_KL * before["reverse_kl"], (before, after)
    assert first["masked_frac"] < 0.01   # hf samples with the trainer's own weights: ratios ≈ 1


@pytest.mark.slow
def test_topk_distillation_pulls_the_student_to_its_teacher(pair, tmp_path):
    """``kl_topk``: the exact reverse KL over the teacher's 8 likeliest tokens and a bucket for the
    rest (a tiny-model vocabulary is ~100 tokens, so the rest bucket is exercised)."""
    before = pair[3]
    after, _, rows = _distill(pair, "on_policy", tmp_path / "topk", kl_topk=8)
    assert all("kl_topk" in r for r in rows) and rows[-1]["masked_frac"] < 0.01
    # the coarsened KL never exceeds the full one; the sampled reverse KL is logged beside it
    assert rows[0]["kl_topk"] <= rows[0]["teacher_kl"] + 0.05
    assert after["reverse_kl"] < TOPK_KL * before["reverse_kl"], (before, after)


def test_topk_needs_a_teacher_backend_that_gives_top_k(tiny_path, tmp_path):
    # an OpenAI-compatible server gives the sampled tokens' logprobs only: refused before training
    # (nothing is contacted: the served model is named and the tokenizer is local)
    cfg = DistillConfig(model=tiny_path, teachers={"math": tiny_path}, teacher_backend="openai",
                        teacher_kwargs={"base_url": "http://127.0.0.1:9", "served_model": "tiny"}, kl_topk=8,
                        steps=1, run_dir=str(tmp_path / "r"))
    with pytest.raises(EvalgymError, match=r"kl_topk.*openai"):
        train_distill(cfg, progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_off_policy_distillation_learns_the_teachers_samples(pair, tmp_path):
    before = pair[3]
    after, _, rows = _distill(pair, "off_policy", tmp_path / "off")
    assert "teacher_reward/math" in rows[0]
    # SFT on teacher samples: held-out teacher samples are likelier under the student
    assert after["forward_kl"] < OFF_POLICY_KL * before["forward_kl"], (before, after)


def test_off_policy_distillation_from_teacher_samples_on_disk(tmp_path, tiny_path):
    """``data:`` (e.g. an ``evalgym synth`` folder's sft split): the student learns those rows, no teacher
    loads; with on-policy distillation it is refused, naming the field."""
    import json as _json

    rows = [{"messages": [{"role": "user", "content": f"Compute {i} + 1."},
                          {"role": "assistant", "content": f"\\boxed{{{i + 1}}}"}]} for i in range(40)]
    data = tmp_path / "teacher_samples.jsonl"
    data.write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=r"data: .*off-policy"):
        DistillConfig(model=tiny_path, data=str(data), run_dir=str(tmp_path / "x"))
    from evalgym.policies.hf import HFPolicy

    cfg = DistillConfig(model=tiny_path, mode="off_policy", data=str(data), steps=6, lr=1e-3, prompts_per_step=4,
                        group_size=2, save_every=6, run_dir=str(tmp_path / "off"))
    result = train_distill(cfg, progress=False)
    m = _metrics(tmp_path / "off")
    assert len(m) == 6 and all(r["tokens"] > 0 for r in m)
    # it learned the rows: their answers are likelier under the student than under its start
    start, tuned = HFPolicy(tiny_path, device="cpu"), HFPolicy.from_model(result["model"].eval(), result["tokenizer"])
    reqs = [(r["messages"][:1], start.tokenizer(r["messages"][1]["content"], add_special_tokens=False)["input_ids"])
            for r in rows[:16]]
    gain = [sum(b) - sum(a) for a, b in zip(start.score_batch(reqs), tuned.score_batch(reqs))]
    assert sum(gain) / len(gain) > 1.0, gain
    meta = json.loads((tmp_path / "off" / "step_000006" / "meta.json").read_text())
    assert meta["config"]["data"] == str(data)
