"""DPO raises the chosen-over-rejected margin on held-out pairs; pairs and errors."""

from __future__ import annotations

import json

import pytest

from evalgym.errors import EvalgymError
from evalgym.trainers.dpo import DPOConfig, load_pairs, preference_margin, train_dpo


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
    from evalgym.policies.hf import HFPolicy

    held_out = load_pairs(DPOConfig(envs=["arithmetic"], env_rows=64,
                                    env_kwargs={"arithmetic": {"seed": 10**9}}))
    start = HFPolicy(tiny_path, device="cpu")
    before = preference_margin(start.model, start.tokenizer, held_out)
    cfg = DPOConfig(model=tiny_path, envs=["arithmetic"], env_rows=1000, steps=100, batch_size=16, lr=1e-3,
                    beta=0.5, save_every=100, run_dir=str(tmp_path / "dpo"))
    result = train_dpo(cfg, progress=False)
    after = preference_margin(result["model"].eval(), result["tokenizer"], held_out)
    metrics = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-20:]
    print("held-out margin", before, "->", after, "train accuracy (last 20 steps)", sum(m["accuracy"] for m in last) / 20)
    assert sum(m["accuracy"] for m in last) / len(last) >= 0.6
    # measured: held-out margin 0.56 -> 3.67, train accuracy 0.77 over the last 20 steps
    assert after > before + 1.0, (before, after)
