"""DPO raises the chosen-over-rejected margin on held-out pairs; pairs and errors."""

from __future__ import annotations

import json

import pytest

from evalgym.errors import EvalgymError
from evalgym.trainers.dpo import DPOConfig, load_pairs, preference_margin

# below the worst of seeds 0/1/2 in perf/results/learning_spread_prefs.md: held-out margin gain
# +10.5 / +0.79 / +11.1, train accuracy over the last 20 steps 0.93 / 0.75 / 0.98
DPO_TRAIN_ACCURACY = 0.6
DPO_MARGIN_GAIN = 0.3


def test_reference_pairs_differ_only_in_the_final_answer():
    pairs = load_pairs(DPOConfig(envs=["arithmetic"], env_rows=20))
    assert len(pairs) == 20
    for p in pairs:
        assert p["chosen"] != p["rejected"]
        assert p["chosen"].split("\\boxed")[0] == p["rejected"].split("\\boxed")[0] or "\\boxed" not in p["chosen"]


def test_pair_file_errors_name_the_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(EvalgymError, match=r"pairs.jsonl:2"):
        load_pairs(DPOConfig(data=str(f)))
    with pytest.raises(EvalgymError, match="delta.*chosen_model"):
        load_pairs(DPOConfig(envs=["arithmetic"], env_rows=2, pairing="delta"))


@pytest.mark.slow
def test_dpo_raises_the_held_out_margin(tmp_path, tiny_path):
    """Pairs of eval-split problems (disjoint from the train split DPO reads); settings:
    tests/trainers/learning.py, bars below the worst seed of perf/results/learning_spread.md."""
    from evalgym.policies.hf import HFPolicy
    from tests.trainers import learning

    held_out = learning.eval_pairs()
    start = HFPolicy(tiny_path, device="cpu")
    before = preference_margin(start.model, start.tokenizer, held_out)
    result = learning.dpo(tiny_path, tmp_path / "dpo", seed=0)
    after = preference_margin(result["model"].eval(), result["tokenizer"], held_out)
    metrics = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-20:]
    print("held-out margin", before, "->", after, "train accuracy (last 20 steps)", sum(m["accuracy"] for m in last) / 20)
    assert sum(m["accuracy"] for m in last) / len(last) >= DPO_TRAIN_ACCURACY
    assert after > before + DPO_MARGIN_GAIN, (before, after)
