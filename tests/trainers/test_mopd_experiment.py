"""The MOPD experiment at test scale (the full run is perf/mopd_experiment.py → perf/results/mopd.md):
a two-domain SFT base, one GRPO expert per domain, one student by multi-teacher on-policy distillation
and one by mixed-domain RL with the same number of samples. Assertions at a looser bar than the
issue's goal (≥ 90 % of each expert; fewer samples than mixed RL), so CI keeps it true."""

from __future__ import annotations

import pytest

from evalgym.experiments.mopd import MOPDExperiment, markdown, run_experiment


# Scores are the mean reward of 8 samples per held-out problem at T 1.0 (greedy answers of this tiny
# model flip on small weight changes: with greedy scoring a CI run of this test read its math expert as
# 0.06 *below* the base, after an SFT change that only reordered float sums).
# The perf run (40 student steps, 128 problems; perf/results/mopd.md) measured the MOPD student at
# 0.95 / 0.94 of the experts (seed 0) and 0.99 / 0.96 (seed 1), ahead of mixed RL at every checkpoint.
# Measured with these settings (this test, 13.2 min): base 0.40 / 0.29, experts +0.23 (math) and +0.30
# (countdown), the MOPD student at 0.92 / 0.96 of them, mixed RL 0.85 / 0.78; means at 12 and 24 steps
# MOPD 0.477 / 0.567, mixed RL 0.466 / 0.492.
BAR_EXPERT_GAIN = 0.05     # mean over domains of expert minus base, in-domain
BAR_FRACTION = 0.8         # the student's in-domain score over the expert's (the goal: 0.9)
BAR_VS_MIXED = 0.03        # MOPD's mean may trail mixed RL's by at most this (the goal: ahead)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_mopd_student_approaches_every_expert(tmp_path, tiny_path):
    # the perf run's base (600 SFT steps), experts and settings; students 24 steps, 64 held-out problems
    exp = MOPDExperiment(out=str(tmp_path / "exp"), model=tiny_path, student_steps=24,
                         eval_every=12, eval_prompts=64, students=("mopd", "mixed-rl"), progress=False)
    result = run_experiment(exp)
    print(markdown(result))
    scores, doms = result["scores"], result["domains"]
    assert set(scores) == {"base", "expert-math", "expert-countdown", "mopd", "mixed-rl"}
    base, expert = scores["base"], result["expert_in_domain"]
    mean = lambda s: sum(s[d] for d in doms) / len(doms)  # noqa: E731
    # RL makes experts: none clearly worse than the base in its domain, and better on average
    assert all(expert[d] >= base[d] - 0.1 for d in doms), (base, expert)
    assert sum(expert[d] - base[d] for d in doms) / len(doms) >= BAR_EXPERT_GAIN, (base, expert)
    # the one student keeps most of every expert's in-domain score (the goal: 90 %)
    for d in doms:
        assert scores["mopd"][d] >= BAR_FRACTION * expert[d], (d, scores["mopd"][d], expert[d])
    # and is no worse than mixed RL given the same student samples, at both checkpoints
    for a, b in zip(result["curves"]["mopd"][1:], result["curves"]["mixed-rl"][1:]):
        assert mean(a) >= mean(b) - BAR_VS_MIXED, (a, b)
    assert mean(scores["mopd"]) >= mean(scores["mixed-rl"]), (scores["mopd"], scores["mixed-rl"])  # +0.075 measured
    # its reverse KL to the teachers fell, in every domain
    for d, (first, last) in result["mopd_reverse_kl_first_last"].items():
        assert last < first, (d, first, last)
    # the curves and the sample counts behind them are reported; a rerun trains nothing
    assert [p["samples"] for p in result["curves"]["mopd"]] == [0, 12 * 128, 24 * 128]
    again = run_experiment(exp)
    assert again["wall_s"] == {} and again["scores"] == scores
