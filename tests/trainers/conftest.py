"""An SFT checkpoint of the tiny model on arithmetic and a GRPO checkpoint from it, trained once and
shared by the learning tests (SFT learns the task; GRPO then lifts it; distillation pulls the SFT
checkpoint toward the GRPO one)."""

from __future__ import annotations

import pytest

from evalgym.policies.base import SamplingParams

HELD_OUT = {"seed": 10**9, "ops": "+-"}   # procedural seeds far from training's 0


def held_out_accuracy(policy, num: int = 128) -> float:
    from evalgym.rollouts import collect, make_env

    env = make_env("arithmetic", **HELD_OUT)
    return collect(policy, env, num_prompts=num, sampling=SamplingParams(temperature=0, max_tokens=32)).mean_reward()


@pytest.fixture(scope="session")
def sft_arithmetic(tmp_path_factory, tiny_path):
    from evalgym.policies.hf import HFPolicy
    from evalgym.trainers.sft import SFTConfig, train_sft

    run_dir = tmp_path_factory.mktemp("sft-arithmetic") / "run"
    before = held_out_accuracy(HFPolicy(tiny_path, device="cpu"))
    cfg = SFTConfig(model=tiny_path, envs=["arithmetic"], env_kwargs={"arithmetic": {"ops": "+-"}}, env_rows=2000,
                    batch_size=32, lr=3e-3, warmup_steps=10, steps=600, save_every=600, seed=0, run_dir=str(run_dir))
    result = train_sft(cfg, progress=False)
    after = held_out_accuracy(HFPolicy.from_model(result["model"].eval(), result["tokenizer"]))
    return {"checkpoint": result["checkpoint"].path, "before": before, "after": after}


@pytest.fixture(scope="session")
def grpo_arithmetic(tmp_path_factory, sft_arithmetic):
    """GRPO from the shared SFT checkpoint (40 steps): the GRPO learning test asserts its lift, and the
    distillation tests use it as the teacher of that SFT checkpoint (an RL expert of the same start,
    as in MOPD)."""
    from evalgym.policies.hf import HFPolicy
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    run_dir = tmp_path_factory.mktemp("grpo-arithmetic") / "run"
    cfg = GRPOConfig(model=sft_arithmetic["checkpoint"], envs={"arithmetic": 1.0},
                     env_kwargs={"arithmetic": {"ops": "+-"}}, steps=40, lr=5e-4, max_tokens=32,
                     prompts_per_step=16, group_size=8, save_every=40, run_dir=str(run_dir))
    result = train_grpo(cfg, progress=False)
    after = held_out_accuracy(HFPolicy.from_model(result["model"].eval(), result["tokenizer"]))
    return {"checkpoint": result["checkpoint"].path, "after": after}


def pytest_collection_modifyitems(items):
    """Tests that may build the shared SFT / GRPO fixtures (minutes on a busy 2-core box) get a longer timeout."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"sft_arithmetic", "grpo_arithmetic"} and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(1800))
