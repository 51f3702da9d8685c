"""Rejection-sampling SFT: best-of-n by the verifier, then SFT on the kept samples."""

from __future__ import annotations

import json

import pytest

from evalgym.trainers.rs_sft import RSSFTConfig, train_rs_sft
from tests.trainers.conftest import held_out_accuracy


@pytest.mark.slow
def test_rs_sft_keeps_only_correct_samples_and_trains_on_them(sft_arithmetic, tmp_path):
    from evalgym.policies.hf import HFPolicy

    cfg = RSSFTConfig(model=sft_arithmetic["checkpoint"], envs=["arithmetic"], env_kwargs={"arithmetic": {"ops": "+-"}},
                      n=4, num_prompts=64, max_tokens=32, steps=30, batch_size=16, lr=1e-3, save_every=30,
                      run_dir=str(tmp_path / "rs"))
    result = train_rs_sft(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "rs" / "rs_data.jsonl").read_text().splitlines()]
    sel = result["selection"]["arithmetic"]
    assert sel["kept"] == len(rows) and 0 < sel["kept"] <= 64
    from evalgym.rollouts import make_env
    env = make_env("arithmetic", ops="+-")
    # every kept answer is graded correct by the env's verifier
    for r in rows:
        problem = env.source.problem(r["index"])
        assert r["messages"][0]["content"] == problem.messages[0].content
        assert env.verifier.verify(problem, r["messages"][-1]["content"]).correct
    after = held_out_accuracy(HFPolicy.from_model(result["model"].eval(), result["tokenizer"]))
    assert after >= sft_arithmetic["after"] - 0.05  # does not hurt (usually helps) the SFT start
