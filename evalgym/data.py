"""Where benchmark data comes from: a local folder laid out like ``shared/data``, or the hub.

Resolution order for every loader: an explicit ``data_dir`` argument (the CLI's ``--data-dir``), then
the ``EVALGYM_DATA_DIR`` environment variable, then the Hugging Face hub through ``datasets``. When
neither works the error names the file it looked for and the hub id it tried.

    rows = load_rows("gsm8k/test.jsonl", hub=("openai/gsm8k", "main", "test"))

Training data (the trainers' ``data:``): :func:`read_rows` (alias ``jsonl_objects``) reads a JSONL file,
a parquet file or a Hugging Face dataset folder (``save_to_disk``, e.g. what ``evalgym synth`` publishes)
into numbered rows, so every trainer loads any of the three unchanged.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from evalgym.errors import DataNotFound, EvalgymError

ENV_VAR = "EVALGYM_DATA_DIR"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local data folder in force, or None."""
    value = explicit if explicit is not None else os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def load_rows(
    relpath: str,
    *,
    hub: tuple[str, str | None, str] | None = None,
    data_dir_: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Rows of one split, as dicts. ``relpath`` is the file under the data folder; ``hub`` is
    ``(path, config_name, split)`` for ``datasets.load_dataset`` on a connected machine."""
    root = data_dir(data_dir_)
    if root is not None:
        path = root / relpath
        if path.is_file():
            return list(_load_local(str(path.resolve()), path.stat().st_mtime_ns))
        if hub is None:
            raise DataNotFound(f"{path} does not exist (data folder from --data-dir or ${ENV_VAR})")
    if hub is None:
        raise DataNotFound(f"no local copy of {relpath}: set ${ENV_VAR} or pass --data-dir")
    try:
        offline = hub_offline()
        if offline:
            raise ConnectionError(offline)
        return list(_load_hub(*hub))
    except Exception as exc:  # offline, unknown id, auth: all mean "not here"
        where = f"{root / relpath} does not exist; " if root is not None else f"${ENV_VAR} is not set; "
        raise DataNotFound(
            f"cannot load {relpath}: {where}the hub ({hub[0]}) failed: {type(exc).__name__}: "
            f"{str(exc)[:200]}. Point --data-dir or ${ENV_VAR} at a folder laid out like shared/data."
        ) from None


@functools.lru_cache(maxsize=32)
def _load_local(path: str, _mtime: int) -> tuple[dict[str, Any], ...]:
    import datasets

    datasets.disable_progress_bars()
    if path.endswith(".json") and _is_json_list(path):
        import json

        with open(path, encoding="utf-8") as f:
            return tuple(json.load(f))
    split = datasets.load_dataset("json", data_files=path, split="train")
    return tuple(split.to_list())


def _is_json_list(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return f.read(64).lstrip().startswith("[")


@functools.lru_cache(maxsize=1)
def hub_offline() -> str | None:
    """Why the hub cannot be reached (None: try it). Asked once per process, so that an offline machine
    fails at once instead of paying ``datasets``' retries (~30 s a dataset) on every load."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT")):
        return None   # a proxy or a mirror: let datasets decide
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as exc:
        return f"huggingface.co:443 is unreachable ({type(exc).__name__}: {exc})"
    return None


@functools.lru_cache(maxsize=32)
def _load_hub(path: str, name: str | None, split: str) -> tuple[dict[str, Any], ...]:
    import datasets

    datasets.disable_progress_bars()
    return tuple(datasets.load_dataset(path, name, split=split).to_list())


def jsonl_objects(path: str | Path, field: str) -> list[tuple[int, dict]]:
    """(row number, object) for each row of a data file the trainers' ``data:`` names: a JSONL file (1-based
    line numbers, blank lines skipped), a parquet file, or a Hugging Face dataset folder written by
    ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` with one split; with several, name one:
    ``PATH/<split>``) — 1-based row numbers for the last two. A missing file, bad JSON, a non-object row or
    an ambiguous dataset folder is an error naming ``field`` or ``file:line``."""
    import json

    p = Path(path)
    if not p.exists():
        raise EvalgymError(f"{field}: {p} does not exist")
    if p.is_dir():
        return list(enumerate(_dataset_folder_rows(p, field), 1))
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # noqa: BLE001 - any reader failure means "not a parquet file we can read"
            raise EvalgymError(f"{field}: {p} is not a readable parquet file ({type(e).__name__}: {e})") from None
        return list(enumerate(table.to_pylist(), 1))
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise EvalgymError(f"{p}:{n}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise EvalgymError(f"{p}:{n}: expected a JSON object")
        out.append((n, row))
    return out


read_rows = jsonl_objects   # the name for new code: it reads more than JSONL


def _dataset_folder_rows(p: Path, field: str) -> list[dict]:
    """Rows of a ``save_to_disk`` folder: a Dataset, or the one split of a DatasetDict."""
    import json

    import datasets

    datasets.disable_progress_bars()
    if (p / "dataset_dict.json").is_file():
        splits = json.loads((p / "dataset_dict.json").read_text()).get("splits") or []
        if len(splits) != 1:
            raise EvalgymError(f"{field}: {p} is a dataset with splits {splits}; name one, e.g. {p / splits[0]}"
                               if splits else f"{field}: {p} is a dataset with no splits")
        p = p / splits[0]
    if not (p / "dataset_info.json").is_file() and not (p / "state.json").is_file():
        raise EvalgymError(f"{field}: {p} is a folder but not a dataset written by save_to_disk "
                           "(no dataset_info.json / state.json); give a JSONL or parquet file or such a folder")
    try:
        return datasets.load_from_disk(str(p)).to_list()
    except Exception as e:  # noqa: BLE001
        raise EvalgymError(f"{field}: cannot load the dataset folder {p} ({type(e).__name__}: {e})") from None
