"""Where benchmark data comes from: a local folder laid out like ``shared/data``, or the hub.

Resolution order for every loader: an explicit ``data_dir`` argument (the CLI's ``--data-dir``), then
the ``EVALGYM_DATA_DIR`` environment variable, then the Hugging Face hub through ``datasets``. When
neither works the error names the file it looked for and the hub id it tried.

    rows = load_rows("gsm8k/test.jsonl", hub=("openai/gsm8k", "main", "test"))
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


@functools.lru_cache(maxsize=32)
def _load_hub(path: str, name: str | None, split: str) -> tuple[dict[str, Any], ...]:
    import datasets

    datasets.disable_progress_bars()
    return tuple(datasets.load_dataset(path, name, split=split).to_list())


def jsonl_objects(path: str | Path, field: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSONL file; a missing file, bad JSON or a
    non-object is an error naming ``field`` and ``file:line``."""
    import json

    p = Path(path)
    if not p.exists():
        raise EvalgymError(f"{field}: {p} does not exist")
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
