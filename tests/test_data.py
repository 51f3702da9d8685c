"""Where benchmark data comes from: an offline machine fails at once with an error naming the file."""

import time

import pytest

from evalgym import data
from evalgym.errors import DataNotFound

HUB_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
            "HF_ENDPOINT", data.ENV_VAR)


@pytest.fixture
def fresh(monkeypatch):
    for v in HUB_VARS:
        monkeypatch.delenv(v, raising=False)
    data.hub_offline.cache_clear()
    yield monkeypatch
    data.hub_offline.cache_clear()


def test_offline_flag_fails_at_once_naming_file_and_flag(fresh):
    fresh.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(DataNotFound, match=r"cannot load gsm8k/test.jsonl: \$EVALGYM_DATA_DIR is not set; the hub "
                                           r"\(openai/gsm8k\) failed: .*HF_HUB_OFFLINE is set"):
        data.load_rows("gsm8k/test.jsonl", hub=("openai/gsm8k", "main", "test"))
    assert time.monotonic() - t0 < 5    # datasets' own offline path retried for ~30 s a dataset


def test_unreachable_hub_is_asked_once(fresh):
    why = data.hub_offline()
    if why is None:
        pytest.skip("the hub is reachable from here")
    assert "huggingface.co:443 is unreachable" in why
    t0 = time.monotonic()
    for name in ("gsm8k/test.jsonl", "math/test.jsonl"):
        with pytest.raises(DataNotFound, match="unreachable"):
            data.load_rows(name, hub=("some/dataset", None, "test"))
    assert time.monotonic() - t0 < 5


def test_a_proxy_leaves_the_decision_to_datasets(fresh):
    fresh.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert data.hub_offline() is None
