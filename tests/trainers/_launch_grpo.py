"""Run under `accelerate launch`: GRPO with a dense reward (so every update moves the weights), by the
Python API — what tests/trainers/test_distributed.py launches with DDP and with FSDP."""

from __future__ import annotations

import sys


def main() -> None:
    from evalgym.trainers.grpo import GRPOConfig, train_grpo
    from tests.trainers._verifiers import DigitShare

    model, run_dir, *overrides = sys.argv[1:]
    extra = dict(kv.split("=", 1) for kv in overrides)
    cfg = GRPOConfig(model=model, run_dir=run_dir, envs={"arithmetic": 1.0},
                     env_kwargs={"arithmetic": {"verifier": DigitShare()}}, prompts_per_step=4, group_size=4,
                     max_tokens=8, steps=3, lr=1e-3, minibatches=2, epochs=2, beta=0.1, warmup_steps=1,
                     lr_schedule="cosine", save_every=3, fsdp=extra.get("fsdp") == "true", seed=5)
    train_grpo(cfg, progress=False)


if __name__ == "__main__":
    main()
