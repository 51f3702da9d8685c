"""Every trainer on the real model's architecture: SmolLM2-135M-Instruct cut to 2 layers (its 49k BPE
tokenizer, tied embeddings, chat template and weights). Each runs a few steps, saves a checkpoint that
loads as a policy, moves the weights and logs finite metrics; the checks that need a full model and many
steps are the benchmarks (perf/trl_race.py, perf/real_model_grpo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainers._verifiers import VowelShare

RL = dict(envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": VowelShare()}}, prompts_per_step=2,
          group_size=4, max_tokens=12, temperature=1.0)


def _configs(model: str, run: Path) -> dict[str, object]:
    from evalgym.trainers.distill import DistillConfig
    from evalgym.trainers.dpo import DPOConfig
    from evalgym.trainers.grpo import GRPOConfig
    from evalgym.trainers.rm import RMConfig
    from evalgym.trainers.rs_sft import RSSFTConfig
    from evalgym.trainers.sft import SFTConfig

    rows = dict(envs=["arithmetic"], env_rows=16, batch_size=4, max_len=128)
    return {
        "sft": SFTConfig(model=model, run_dir=str(run / "sft"), steps=2, lr=1e-4, **rows),
        "dpo": DPOConfig(model=model, run_dir=str(run / "dpo"), steps=2, lr=1e-4, **rows),
        "rm": RMConfig(model=model, run_dir=str(run / "rm"), steps=2, lr=1e-4, **rows),
        "grpo": GRPOConfig(model=model, run_dir=str(run / "grpo"), steps=2, lr=1e-4, minibatches=2, beta=0.1, **RL),
        "rs-sft": RSSFTConfig(model=model, run_dir=str(run / "rs"), steps=2, lr=1e-4, min_reward=0.0, **RL),
        "distill": DistillConfig(model=model, run_dir=str(run / "distill"), steps=2, lr=1e-4, teachers={"math": model},
                                 kl_topk=16, probe_prompts=1, **RL),
        "distill-off": DistillConfig(model=model, run_dir=str(run / "off"), steps=2, lr=1e-4, mode="off_policy",
                                     teachers={"math": model}, **RL),
    }


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["sft", "dpo", "rm", "grpo", "rs-sft", "distill", "distill-off"])
def test_every_trainer_runs_on_the_real_architecture(trainer, smollm2_small_path, tmp_path):
    import importlib

    from evalgym.cli import TRAINERS
    from evalgym.policies.base import SamplingParams
    from evalgym.policies.hf import HFPolicy

    cfg = _configs(smollm2_small_path, tmp_path)[trainer]
    module, _, fn = TRAINERS[trainer.removesuffix("-off")]
    result = getattr(importlib.import_module(module), fn)(cfg, progress=False)
    ckpt = Path(result["checkpoint"].path)
    rows = [json.loads(x) for x in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(isinstance(v, (int, float)) for r in rows for v in r.values())
    start = load_file(str(Path(smollm2_small_path) / "model.safetensors"))
    end = load_file(str(ckpt / "model.safetensors"))
    shared = [k for k in start if k in end]
    assert shared and any(not torch.equal(start[k], end[k]) for k in shared)
    if trainer != "rm":   # a policy checkpoint is an ordinary model folder: it samples
        out = HFPolicy(str(ckpt), device="cpu").generate(["2+2?"], SamplingParams(max_tokens=4, seed=0))
        assert len(out[0][0].token_ids) >= 1
