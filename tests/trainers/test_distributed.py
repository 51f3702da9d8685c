"""Several processes for real (``accelerate launch``, gloo on CPU): the RL loop under DDP and FSDP2 makes the
same updates, the schedule follows optimizer steps, and a sharded run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def _launch(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_grpo_under_ddp_and_fsdp_makes_the_same_updates(tmp_path, tiny_path):
    """2 minibatches x 2 epochs, KL to the start model, warmup + cosine: FSDP2 (weights, grads and AdamW state
    sharded) ends on the DDP run's weights, with the same lr trace; the checkpoint holds the full weights."""
    script = str(REPO / "tests" / "trainers" / "_launch_grpo.py")
    _launch([script, tiny_path, str(tmp_path / "ddp")])
    _launch([script, tiny_path, str(tmp_path / "fsdp"), "fsdp=true"])
    ddp, fsdp = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "fsdp")
    assert [m["lr"] for m in ddp] == [m["lr"] for m in fsdp]
    assert all(m["samples"] == 16 and m["updates"] == 4 for m in ddp + fsdp)   # reduced over both processes
    assert json.loads((tmp_path / "fsdp" / "step_000003" / "meta.json").read_text())["sharded"] is True
    a = load_file(str(tmp_path / "ddp" / "step_000003" / "model.safetensors"))
    b = load_file(str(tmp_path / "fsdp" / "step_000003" / "model.safetensors"))
    start = load_file(str(Path(tiny_path) / "model.safetensors"))
    assert a.keys() == b.keys() == start.keys()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 1e-4
    assert all(torch.allclose(a[k], b[k], atol=1e-3 * moved) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_fsdp_resume_equals_the_uninterrupted_run(tmp_path, tiny_path):
    args = ["-m", "evalgym.cli", "train", "sft", "--quiet", f"model={tiny_path}", "envs=[arithmetic]", "env_rows=200",
            "batch_size=8", "save_every=2", "fsdp=true", "lr=3e-3"]
    _launch([*args, "steps=4", f"run_dir={tmp_path / 'straight'}"])
    _launch([*args, "steps=2", f"run_dir={tmp_path / 'resumed'}"])
    _launch([*args, "steps=4", f"run_dir={tmp_path / 'resumed'}"])
    a = load_file(str(tmp_path / "straight" / "step_000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "step_000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the optimizer state was saved whole (names, full shapes), so it resumes on any number of processes
    state = torch.load(tmp_path / "straight" / "step_000004" / "trainer_state.pt", weights_only=False)["optimizer"]
    emb = state["state"]["model.model.embed_tokens.weight"]["exp_avg"]
    assert tuple(emb.shape) == tuple(a["model.embed_tokens.weight"].shape)


def test_deepspeed_configs_resolve_and_a_cpu_launch_is_refused_up_front(tmp_path, monkeypatch):
    from evalgym.errors import EvalgymError
    from evalgym.trainers.grpo import GRPOConfig, train_grpo
    from evalgym.trainers.sharding import deepspeed_config
    from evalgym.trainers.sft import SFTConfig

    out = tmp_path / "ds.json"
    done = subprocess.run([sys.executable, "-m", "evalgym.cli", "train", "sft", "batch_size=64", "grad_accum=2",
                           "mixed_precision=bf16", f"--deepspeed-config={out}", "--world-size=8", "--zero-stage=3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ds = json.loads(out.read_text())
    assert "auto" not in json.dumps(ds)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 64 and ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"]
    rl = deepspeed_config(GRPOConfig(prompts_per_step=16, group_size=8), world_size=4)
    assert rl["train_micro_batch_size_per_gpu"] == 32 and rl["zero_optimization"]["stage"] == 2
    assert deepspeed_config(SFTConfig(), 1)["bf16"]["enabled"] is True   # auto: bf16 on the GPUs DeepSpeed runs on
    assert deepspeed_config(SFTConfig(mixed_precision="no"), 1)["bf16"]["enabled"] is False
    if not torch.cuda.is_available():   # accelerate would run plain DDP without a word; refused before loading
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        with pytest.raises(EvalgymError, match="DeepSpeed needs CUDA GPUs"):
            train_grpo(GRPOConfig(model="/nonexistent", run_dir=str(tmp_path / "r")), progress=False)
        assert not (tmp_path / "r").exists()
