"""The MOPD experiment at test scale (the full run is perf/mopd_experiment.py → perf/results/mopd.md):
a two-domain SFT base, one GRPO expert per domain, one student by multi-teacher on-policy distillation
and one by mixed-domain RL with the same number of samples. Assertions at a looser bar than the
issue's goal (≥ 90 % of each expert; fewer samples than mixed RL), so CI keeps it true."""

from __future__ import annotations

import pytest

from evalgym.experiments.mopd import MOPDExperiment, markdown, run_experiment


# Measured at the perf run's scale (40 steps, 128 problems; perf/results/mopd.md): experts +0.15 (math)
# and +0.23 (countdown) over the base, the MOPD student at 0.90 and 0.86 of them, its mean 0.01 below
# mixed RL's. At this test's scale (24 steps, 64 problems): experts +0.06 and +0.19, the student at 1.03
# and 1.00 of them, 0.02 above mixed RL. A second seed at the perf scale: experts +0.00 and +0.17, the
# student at 0.97 and 0.75, 0.02 below mixed RL. The bars leave room for that spread.
BAR_EXPERT_GAIN = 0.03     # mean over domains of expert minus base, in-domain
BAR_FRACTION = 0.7         # the student's in-domain score over the expert's (the goal: 0.9)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_mopd_student_approaches_every_expert(tmp_path, tiny_path):
    # the perf run's base (600 SFT steps) and settings; experts and students 24 steps instead of 40
    exp = MOPDExperiment(out=str(tmp_path / "exp"), model=tiny_path, expert_steps=24, student_steps=24,
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
    # and ends no worse than mixed RL given the same student samples
    assert mean(scores["mopd"]) >= mean(scores["mixed-rl"]) - 0.08, (scores["mopd"], scores["mixed-rl"])
    # its reverse KL to the teachers fell, in every domain
    for d, (first, last) in result["mopd_reverse_kl_first_last"].items():
        assert last < first, (d, first, last)
    # the curves and the sample counts behind them are reported; a rerun trains nothing
    assert [p["samples"] for p in result["curves"]["mopd"]] == [0, 12 * 128, 24 * 128]
    again = run_experiment(exp)
    assert again["wall_s"] == {} and again["scores"] == scores
