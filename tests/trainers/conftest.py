"""An SFT checkpoint of the tiny model on arithmetic and a GRPO checkpoint from it, trained once and shared by
the learning tests (SFT learns the task; GRPO then lifts it; distillation pulls the SFT checkpoint toward the
GRPO one). The pipelines and their settings are ``tests/trainers/learning.py``, which
``perf/learning_spread.py`` runs for several seeds: every learning bar in these tests is set below the worst
of those seeds (``perf/results/learning_spread.md``), and each test names the measured range."""

from __future__ import annotations

import pytest

from tests.trainers import learning


@pytest.fixture(scope="session")
def sft_arithmetic(tmp_path_factory, tiny_path):
    from evalgym.policies.hf import HFPolicy

    run_dir = tmp_path_factory.mktemp("sft-arithmetic") / "run"
    before = learning.held_out(HFPolicy(tiny_path, device="cpu"))
    result = learning.sft(tiny_path, run_dir, seed=0)
    policy = HFPolicy.from_model(result["model"].eval(), result["tokenizer"])
    return {"checkpoint": result["checkpoint"].path, "before": before, "after": learning.held_out(policy),
            "train": learning.held_out(policy, split="train")}


@pytest.fixture(scope="session")
def grpo_arithmetic(tmp_path_factory, sft_arithmetic):
    """GRPO from the shared SFT checkpoint: the GRPO learning test asserts its lift, and the distillation
    tests use it as the teacher of that SFT checkpoint (an RL expert of the same start, as in MOPD)."""
    from evalgym.policies.hf import HFPolicy

    run_dir = tmp_path_factory.mktemp("grpo-arithmetic") / "run"
    result = learning.grpo(sft_arithmetic["checkpoint"], run_dir, seed=0)
    policy = HFPolicy.from_model(result["model"].eval(), result["tokenizer"])
    return {"checkpoint": result["checkpoint"].path, "after": learning.held_out(policy),
            "train": learning.held_out(policy, split="train"), "run_dir": run_dir}


def pytest_collection_modifyitems(items):
    """Tests that may build the shared SFT / GRPO fixtures (minutes on a busy 2-core box) get a longer timeout."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"sft_arithmetic", "grpo_arithmetic"} and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(2400))
