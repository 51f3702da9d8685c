"""LoRA for every trainer: only the adapter trains, the KL reference is the base with the adapter off,
checkpoints hold the adapter and resume exactly, an adapter checkpoint is a model everywhere (HF policy,
teacher, merge CLI, vLLM through its LoRA support), and bad LoRA settings are refused with the names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from tests.trainers._verifiers import DigitShare

LORA = {"r": 8, "alpha": 16}


def _grpo(tiny_path, run_dir, **kw):
    base = dict(model=tiny_path, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}},
                steps=2, prompts_per_step=4, group_size=4, max_tokens=12, lr=1e-2, save_every=100, seed=3,
                run_dir=str(run_dir), lora=LORA)
    return GRPOConfig(**{**base, **kw})


def test_bad_lora_settings_are_refused_before_any_model_loads(tmp_path, tiny_path):
    with pytest.raises(EvalgymError, match=r"lora\.r: Input should be greater than or equal to 1"):
        load_config(GRPOConfig, None, ["model=/nonexistent", "lora.r=0"])
    with pytest.raises(EvalgymError, match=r"lora\.bias"):
        load_config(GRPOConfig, None, ["lora.bias=all"])
    with pytest.raises(EvalgymError, match=r"report_to"):
        load_config(GRPOConfig, None, ["report_to=[comet]"])
    # module names can only be checked against the model: the error lists the names it has
    with pytest.raises(EvalgymError, match=r"\['c_attn'\] match no linear layer.*'down_proj'.*'q_proj'"):
        train_grpo(_grpo(tiny_path, tmp_path / "bad", lora={"r": 4, "target_modules": ["c_attn"]}), progress=False)


def test_only_the_adapter_trains_and_the_reference_is_the_base(tmp_path, tiny_path):
    """GRPO with KL to the start model: the checkpoint holds only the adapter, the base weights never move,
    the KL is 0 on the first step (B starts at 0) and positive after; the reference log-probs are exactly the
    plain base model's."""
    from transformers import AutoModelForCausalLM

    from evalgym.logprobs import CausalLMScorer
    from evalgym.trainers.lora import merged_state_dict

    result = train_grpo(_grpo(tiny_path, tmp_path / "run", beta=0.1), progress=False)
    ckpt = Path(result["checkpoint"].path)
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    adapter = load_file(str(ckpt / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any(float(v.abs().max()) > 0 for k, v in adapter.items() if "lora_B" in k)
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_path
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0

    base = AutoModelForCausalLM.from_pretrained(tiny_path)
    start = load_file(str(Path(tiny_path) / "model.safetensors"))
    merged = merged_state_dict(result["peft"])
    frozen = [k for k in start if k in merged and not k.endswith("proj.weight")]
    assert frozen and all(torch.equal(start[k], merged[k]) for k in frozen)   # embeddings, norms: untouched
    assert any(not torch.equal(start[k], merged[k]) for k in start if k.endswith("proj.weight"))

    ids = torch.tensor([[5, 17, 30, 41, 8, 9, 60, 3]])
    attn, mask = torch.ones_like(ids), torch.ones((1, 7))
    peft = result["peft"]
    with torch.no_grad():
        plain = CausalLMScorer(base.eval())(ids, attn, mask)
        with peft.disable_adapter():
            off = CausalLMScorer(result["model"].eval())(ids, attn, mask)
        on = CausalLMScorer(result["model"])(ids, attn, mask)
    assert torch.equal(plain, off)
    assert not torch.allclose(plain, on)


def test_lora_resume_equals_the_uninterrupted_run(tmp_path, tiny_path):
    straight = train_grpo(_grpo(tiny_path, tmp_path / "straight", steps=3, beta=0.05), progress=False)
    train_grpo(_grpo(tiny_path, tmp_path / "resumed", steps=2, save_every=1, beta=0.05), progress=False)
    resumed = train_grpo(_grpo(tiny_path, tmp_path / "resumed", steps=3, save_every=1, beta=0.05), progress=False)
    a = load_file(str(Path(straight["checkpoint"].path) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed["checkpoint"].path) / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = [json.loads(x)["kl"] for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x)["kl"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert ra == rb   # the reference after the resume is still the base, not the resumed adapter


def test_an_adapter_checkpoint_is_a_model_everywhere(tmp_path, tiny_path):
    """HF policy, teacher, ``load_weights``, ``evalgym model merge`` and a new run's ``model`` all take the
    adapter checkpoint; each sees base + adapter (the in-memory LoRA model's log-probs)."""
    from evalgym.logprobs import CausalLMScorer
    from evalgym.models import resolve_model
    from evalgym.policies.base import SamplingParams
    from evalgym.policies.hf import HFPolicy
    from evalgym.teachers import Teacher

    result = train_grpo(_grpo(tiny_path, tmp_path / "run"), progress=False)
    ckpt = result["checkpoint"].path
    ids = torch.tensor([[5, 17, 30, 41, 8, 9, 60, 3]])
    with torch.no_grad():
        want = CausalLMScorer(result["model"].eval())(ids, torch.ones_like(ids), torch.ones((1, 7)))[0]

    merged = resolve_model(ckpt)
    assert Path(merged, "config.json").is_file() and resolve_model(ckpt) == merged   # merged once, cached
    policy = HFPolicy(ckpt, device="cpu")
    got = policy.score([5], [17, 30, 41, 8, 9, 60, 3])
    assert max(abs(a - b) for a, b in zip(got, want.tolist())) < 1e-4
    teacher = Teacher.load(ckpt)
    assert teacher.logprobs([([5], [17, 30])])[0] == pytest.approx(got[:2], abs=1e-6)
    other = HFPolicy(tiny_path, device="cpu")
    other.load_weights(ckpt)
    assert other.score([5], [17, 30, 41]) == pytest.approx(got[:3], abs=1e-6)
    assert policy.generate(["2+2="], SamplingParams(max_tokens=4, seed=0))[0][0].token_ids

    out = tmp_path / "merged"
    done = subprocess.run([sys.executable, "-m", "evalgym.cli", "model", "merge", ckpt, "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == str(out.resolve())
    assert HFPolicy(str(out), device="cpu").score([5], [17, 30, 41]) == pytest.approx(got[:3], abs=1e-5)

    # a later stage from the adapter checkpoint: a fresh adapter on the merged model, KL to that start
    nxt = train_grpo(_grpo(ckpt, tmp_path / "next", steps=1, beta=0.1), progress=False)
    assert json.loads((Path(nxt["checkpoint"].path) / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == merged


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["sft", "dpo", "rm", "rs-sft", "distill"])
def test_every_trainer_trains_an_adapter(trainer, tmp_path, tiny_path):
    import importlib

    from evalgym.cli import TRAINERS
    from evalgym.trainers.distill import DistillConfig
    from evalgym.trainers.dpo import DPOConfig
    from evalgym.trainers.rm import RMConfig
    from evalgym.trainers.rs_sft import RSSFTConfig
    from evalgym.trainers.sft import SFTConfig

    rows = dict(envs=["arithmetic"], env_rows=16, batch_size=4, max_len=96, steps=2, lr=1e-2, lora=LORA)
    rl = dict(envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}}, prompts_per_step=2,
              group_size=4, max_tokens=12, steps=2, lr=1e-2, lora=LORA)
    run = str(tmp_path / trainer)
    cfg = {"sft": lambda: SFTConfig(model=tiny_path, run_dir=run, **rows),
           "dpo": lambda: DPOConfig(model=tiny_path, run_dir=run, **rows),
           "rm": lambda: RMConfig(model=tiny_path, run_dir=run, **rows),
           "rs-sft": lambda: RSSFTConfig(model=tiny_path, run_dir=run, min_reward=0.0, **rl),
           "distill": lambda: DistillConfig(model=tiny_path, run_dir=run, teachers={"math": tiny_path}, probe_prompts=0,
                                            **rl)}[trainer]()
    module, _, fn = TRAINERS[trainer]
    result = getattr(importlib.import_module(module), fn)(cfg, progress=False)
    ckpt = Path(result["checkpoint"].path)
    adapter = load_file(str(ckpt / "adapter_model.safetensors"))
    assert any("lora_B" in k and float(v.abs().max()) > 0 for k, v in adapter.items())
    if trainer == "rm":   # the new score head trains with the adapter and is saved beside it
        assert any("score" in k for k in adapter)
        from evalgym.trainers.rm import RewardModelScorer
        assert RewardModelScorer(str(ckpt)).score_batch([], []) == []
    rows_ = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_] == [1, 2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_vllm_serves_the_adapter_without_reloading_the_base(tmp_path, tiny_path):
    """vLLM's LoRA support: the adapter checkpoint's greedy tokens and log-probs match the HF policy's (merged),
    and a new adapter is taken by ``load_weights(folder)`` with the base weights untouched."""
    from evalgym.policies.base import SamplingParams, make_policy

    first = train_grpo(_grpo(tiny_path, tmp_path / "a", steps=1), progress=False)["checkpoint"].path
    second = train_grpo(_grpo(tiny_path, tmp_path / "b", steps=2, seed=5), progress=False)["checkpoint"].path
    sp = SamplingParams(temperature=0, max_tokens=10)
    prompts = [[{"role": "user", "content": "What is 2+3?"}], "Once upon"]
    engine = make_policy("vllm", first, max_model_len=512)
    try:
        for ckpt in (first, second):
            if ckpt == second:
                engine.load_weights(ckpt)
            want = make_policy("hf", ckpt, device="cpu").generate(prompts, sp)
            got = engine.generate(prompts, sp)
            for w, g in zip(want, got):
                assert w[0].token_ids == g[0].token_ids
                assert max(abs(a - b) for a, b in zip(w[0].logprobs, g[0].logprobs)) < 1e-3
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lora_under_fsdp_makes_the_ddp_updates(tmp_path, tiny_path):
    """2 processes (gloo): FSDP2 over the adapted model (frozen base and trainable adapter in the same units),
    KL to the base through the sharded module with the adapter off, the saved adapter gathered: the same adapter
    as the DDP run's."""
    import os

    accelerate = Path(sys.executable).with_name("accelerate")
    script = str(Path(__file__).with_name("_launch_lora.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for mode in ("false", "true"):
        done = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                               "--mixed_precision", "no", "--dynamo_backend", "no", script, tiny_path,
                               str(tmp_path / mode), mode], capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stderr[-4000:]
    a = load_file(str(tmp_path / "false" / "step_000002" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "true" / "step_000002" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert json.loads((tmp_path / "true" / "step_000002" / "meta.json").read_text())["sharded"] is True
    kl = [json.loads(x)["kl"] for x in (tmp_path / "true" / "metrics.jsonl").read_text().splitlines()]
    assert kl[0] == 0.0 and kl[1] > 0
