"""Run under `accelerate launch`: GRPO with a LoRA adapter and KL to the base (adapter off), DDP or FSDP2 —
what tests/trainers/test_lora.py launches to check that both make the same updates."""

from __future__ import annotations

import sys


def main() -> None:
    from evalgym.trainers.grpo import GRPOConfig, train_grpo
    from tests.trainers._verifiers import DigitShare

    model, run_dir, fsdp = sys.argv[1:4]
    cfg = GRPOConfig(model=model, run_dir=run_dir, envs={"arithmetic": 1.0},
                     env_kwargs={"arithmetic": {"verifier": DigitShare()}}, prompts_per_step=4, group_size=4,
                     max_tokens=8, steps=2, lr=1e-2, minibatches=2, beta=0.1, save_every=2, fsdp=fsdp == "true",
                     seed=5, lora={"r": 8, "alpha": 16})
    train_grpo(cfg, progress=False)


if __name__ == "__main__":
    main()
