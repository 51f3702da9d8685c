"""The math datasets: GSM8K, MATH (full), MATH-500. Rows come from ``evalgym.data`` (local folder or hub).

    gymnasium.make("evalgym/math500-v0", data_dir="../shared/data")
    gymnasium.make("evalgym/gsm8k-v0", split="test")     # training envs default to split="train"
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from evalgym.data import load_rows
from evalgym.envs.sources import Fields, RowsSource
from evalgym.errors import EvalgymError
from evalgym.verifiers.math_extract import braced, find_boxed

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

_FILES = {  # name -> split -> (local file, hub (path, config, split))
    "gsm8k": {s: (f"gsm8k/{s}.jsonl", ("openai/gsm8k", "main", s)) for s in ("train", "test")},
    "math": {s: (f"math/{s}.jsonl", ("DigitalLearningGmbH/MATH-lighteval", None, s)) for s in ("train", "test")},
    "math500": {"test": ("math500/test.jsonl", ("HuggingFaceH4/MATH-500", None, "test"))},
}


def _rows(name: str, split: str, data_dir: str | None) -> list[dict[str, Any]]:
    splits = _FILES[name]
    if split not in splits:
        raise EvalgymError(f"{name}: unknown split {split!r}; available: {sorted(splits)}")
    relpath, hub = splits[split]
    return load_rows(relpath, hub=hub, data_dir_=data_dir)


def gsm8k_fields(row: Mapping[str, Any]) -> Fields:
    rationale = re.sub(r"<<.*?>>", "", row["answer"])
    answer = rationale.rsplit("####", 1)[-1].strip().replace(",", "")
    return row["question"], answer, rationale, {}


def _unbox_all_but_last(solution: str) -> str:
    """MATH solutions sometimes box intermediate results; keep only the final box."""
    starts = [m.start() for m in re.finditer(r"\\boxed\s*\{", solution)]
    for start in reversed(starts[:-1]):
        brace = solution.index("{", start)
        end = braced(solution, brace)
        if end > 0:
            solution = solution[:start] + solution[brace + 1:end] + solution[end + 1:]
    return solution


def math_fields(row: Mapping[str, Any]) -> Fields:
    boxes = [b for b in find_boxed(row["solution"]) if b]
    answer = row.get("answer") or (boxes[-1] if boxes else "")
    extra = {k: row[k] for k in ("level", "type", "subject") if k in row}
    return row["problem"], answer, _unbox_all_but_last(row["solution"]), extra


def gsm8k_source(info: Any, split: str = "train", data_dir: str | None = None,
                 instruction: str = BOXED_INSTRUCTION) -> RowsSource:
    return RowsSource(info, _rows("gsm8k", split, data_dir), gsm8k_fields, split=split, instruction=instruction)


def _with_answer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop rows whose solution boxes nothing (2 of MATH train's 7500 have ``\\boxed{}``): no gold, no grade."""
    return [r for r in rows if math_fields(r)[1].strip()]


def math_source(info: Any, split: str = "train", data_dir: str | None = None,
                instruction: str = BOXED_INSTRUCTION) -> RowsSource:
    return RowsSource(info, _with_answer(_rows("math", split, data_dir)), math_fields, split=split,
                      instruction=instruction)


def math500_source(info: Any, split: str = "test", data_dir: str | None = None,
                   instruction: str = BOXED_INSTRUCTION) -> RowsSource:
    return RowsSource(info, _rows("math500", split, data_dir), math_fields, split=split, instruction=instruction)
