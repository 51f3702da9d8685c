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
