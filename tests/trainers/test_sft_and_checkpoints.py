"""SFT, configs, checkpoints and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalgym.errors import EvalgymError
from evalgym.trainers.checkpoint import latest_checkpoint, read_trained, step_dirs
from evalgym.trainers.config import load_config
from evalgym.trainers.sft import SFTConfig, batch_indices, tokenize_chat, train_sft

# learning bars (tests/trainers/learning.py's SFT), below the worst of seeds 0/1/2 in
# perf/results/learning_spread.md: eval-split mean@8 0.317 / 0.177 / 0.091 (base 0.037), train split
# 0.656 / 0.318 / 0.364
SFT_EVAL_MEAN = 0.06
SFT_TRAIN_MEAN = 0.2


def test_config_errors_name_the_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: tiny\nlr: fast\n")
    with pytest.raises(EvalgymError, match=r"SFTConfig \(.*c.yaml\): lr: Input should be a valid number"):
        load_config(SFTConfig, f)
    with pytest.raises(EvalgymError, match="lerning_rate: Extra inputs are not permitted"):
        load_config(SFTConfig, None, ["lerning_rate=1"])
    with pytest.raises(EvalgymError, match="does not exist"):
        load_config(SFTConfig, tmp_path / "missing.yaml")
    cfg = load_config(SFTConfig, f, ["lr=0.5", "envs=[arithmetic, fractions]", "env_kwargs.arithmetic.ops=+-"])
    assert cfg.lr == 0.5 and cfg.envs == ["arithmetic", "fractions"] and cfg.env_kwargs == {"arithmetic": {"ops": "+-"}}


def test_assistant_only_mask(tiny_policy):
    tok = tiny_policy.tokenizer
    msgs = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
            {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]
    ids, mask = tokenize_chat(tok, msgs, 512)
    learned = tok.decode([t for t, m in zip(ids, mask) if m])
    assert learned == "4<|im_end|>\n6<|im_end|>\n"
    assert len(ids) == len(mask)


def test_batches_are_a_pure_function_of_the_step():
    a = [batch_indices(10, 4, seed=0, step=s) for s in range(5)]
    assert a == [batch_indices(10, 4, seed=0, step=s) for s in range(5)]
    flat = [i for b in a for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epochs
    assert batch_indices(10, 4, seed=1, step=0) != a[0]


def test_lr_schedules():
    from evalgym.trainers.loop import lr_factor

    cfg = SFTConfig(steps=100, warmup_steps=10, lr_schedule="cosine")
    assert [round(lr_factor(cfg, s), 3) for s in (0, 9, 10, 55, 99)] == [0.1, 1.0, 1.0, 0.5, 0.0]
    assert [lr_factor(SFTConfig(steps=100, warmup_steps=10), s) for s in (0, 10, 99)] == [0.1, 1.0, 1.0]


def _cfg(tmp_path, **kw):
    base = dict(model=kw.pop("model"), envs=["arithmetic"], env_kwargs={"arithmetic": {"ops": "+-"}}, env_rows=500,
                batch_size=16, lr=3e-3, warmup_steps=5, run_dir=str(tmp_path / "run"), save_every=5, seed=0)
    return SFTConfig(**{**base, **kw})


def test_checkpoints_events_and_meta(tmp_path, tiny_path):
    seen = []
    result = train_sft(_cfg(tmp_path, model=tiny_path, steps=10), progress=False, after_save=seen.append)
    run = tmp_path / "run"
    assert [p.name for p in step_dirs(run)] == ["step_000005", "step_000010"]
    assert [r.step for r in seen] == [5, 10] and result["checkpoint"].path == str(run / "step_000010")
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [5, 10] and all(e["event"] == "checkpoint" for e in events)
    meta = json.loads((run / "step_000010" / "meta.json").read_text())
    assert meta["config"]["lr"] == 3e-3 and meta["parent"] == tiny_path and meta["trainer"] == "sft"
    assert meta["git_sha"] is None or len(meta["git_sha"]) == 40
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 11)) and metrics[-1]["loss"] < metrics[0]["loss"]
    assert not list(run.glob(".step_*"))  # no temp folders left behind
    # what it trained on: the content hashes of the problems of the rows it used, growing with the steps
    from evalgym.rollouts import make_env
    from evalgym.types import content_hash
    env = make_env("arithmetic", ops="+-")
    every = {content_hash(env.source.problem(i)) for i in range(500)}
    at5, at10 = read_trained(run / "step_000005"), read_trained(run / "step_000010")
    assert set(at10) == {"evalgym/arithmetic-v1"} and at5["evalgym/arithmetic-v1"] < at10["evalgym/arithmetic-v1"]
    assert at10["evalgym/arithmetic-v1"] <= every
    doc = json.loads((run / "step_000010" / "trained_problems.json").read_text())
    assert doc["count"] == len(doc["hashes"]) == len(at10["evalgym/arithmetic-v1"])
    # a checkpoint is an ordinary model folder: every backend loads it by path
    from evalgym.policies.base import SamplingParams, make_policy
    out = make_policy("hf", str(run / "step_000010"), device="cpu").generate(["x"], SamplingParams(max_tokens=3))
    assert len(out[0][0].token_ids) == 3


def test_resume_under_another_config_is_refused_naming_the_fields(tmp_path, tiny_path):
    train_sft(_cfg(tmp_path, model=tiny_path, steps=2, save_every=2), progress=False)
    with pytest.raises(EvalgymError, match=r"step_000002 of a run with another config \(batch_size: 16 in the "
                                           r"checkpoint, 8 now; lr: 0\.003 in the checkpoint, 0\.001 now\)"):
        train_sft(_cfg(tmp_path, model=tiny_path, steps=4, lr=1e-3, batch_size=8), progress=False)
    assert [p.name for p in step_dirs(tmp_path / "run")] == ["step_000002"]   # nothing trained
    # running longer (and saving at another cadence) in a moved run dir is a resume, not another run
    (tmp_path / "run").rename(tmp_path / "moved")
    train_sft(_cfg(tmp_path, model=tiny_path, steps=3, save_every=3, log_every=2, run_dir=str(tmp_path / "moved")),
              progress=False)
    assert [p.name for p in step_dirs(tmp_path / "moved")] == ["step_000002", "step_000003"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(tmp_path, tiny_path):
    cmd = [sys.executable, "-m", "evalgym.cli", "train", "sft", "--quiet", f"model={tiny_path}", "envs=[arithmetic]",
           "env_rows=300", "batch_size=8", "steps=16", "save_every=4", "lr=3e-3", "seed=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cmd + [f"run_dir={tmp_path / 'straight'}"], check=True, env=env, timeout=900, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + [f"run_dir={killed}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while latest_checkpoint(killed) is None or latest_checkpoint(killed).name < "step_000008":
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = latest_checkpoint(killed).name
    assert stopped_at < "step_000016"
    subprocess.run(cmd + [f"run_dir={killed}"], check=True, env=env, timeout=900, capture_output=True)

    a = load_file(str(tmp_path / "straight" / "step_000016" / "model.safetensors"))
    b = load_file(str(killed / "step_000016" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"resumed from {stopped_at}"
    la = [json.loads(x)["loss"] for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    lb = {json.loads(x)["step"]: json.loads(x)["loss"] for x in (killed / "metrics.jsonl").read_text().splitlines()}
    assert la[-1] == lb[16]


@pytest.mark.slow
def test_sft_learns_a_procedural_task(sft_arithmetic):
    """The tiny model from random weights, one-digit +/- arithmetic (tests/trainers/learning.py), scored on
    every eval-split problem: none of them trained on (measured, not assumed), no grade lost."""
    from tests.trainers import learning

    r = sft_arithmetic
    assert r["before"]["mean"] < 0.05, r["before"]
    overlap = learning.trained_hashes(r["checkpoint"]) & set(r["after"]["hashes"])
    assert not overlap and len(r["after"]["hashes"]) == 41
    assert r["before"]["grader_errors"] == r["after"]["grader_errors"] == r["train"]["grader_errors"] == 0
    # bars below the worst of the seeds in perf/results/learning_spread.md
    assert r["after"]["mean"] >= SFT_EVAL_MEAN, r["after"]
    assert r["train"]["mean"] >= SFT_TRAIN_MEAN, r["train"]


@pytest.mark.slow
def test_accelerate_launch_two_processes_ddp(tmp_path, tiny_path):
    """Real DDP on gloo, two processes. accelerate 1.15's `--cpu` flag starts ONE process (its simple
    launcher), so the launch is `--multi_gpu --num_processes 2` (torchrun); with no GPU the trainer's
    Accelerator(cpu=True) makes it MULTI_CPU on gloo."""
    accelerate = Path(sys.executable).with_name("accelerate")
    run_dir = tmp_path / "ddp"
    args = ["envs=[arithmetic]", "env_rows=200", "batch_size=8", "steps=6", "save_every=3", "warmup_steps=2",
            "lr_schedule=cosine", "lr=1e-3"]
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "evalgym.cli", "train", "sft", "--quiet", f"model={tiny_path}", *args,
           f"run_dir={run_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((run_dir / "step_000006" / "meta.json").read_text())
    assert meta["world_size"] == 2
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]  # written once, by the main process
    assert done.stdout.count("checkpoint=") == 1
    # the schedule is a function of optimizer steps: the same trace as one process (accelerate's prepared
    # scheduler would step once per process per update, warmup and cosine twice as fast)
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "evalgym.cli", "train", "sft", "--quiet", f"model={tiny_path}", *args,
                    f"run_dir={single}"], check=True, capture_output=True, timeout=900)
    one = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    assert [m["lr"] for m in metrics] == [m["lr"] for m in one]
    # metrics are reduced over both processes: tokens summed (each process trains on half of each batch)
    assert metrics[0]["tokens"] == pytest.approx(one[0]["tokens"], rel=0.35) and metrics[0]["tokens"] > 0
    # both processes' problems are in the checkpoint's manifest
    assert read_trained(run_dir / "step_000006") == read_trained(single / "step_000006")
