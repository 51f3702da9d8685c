"""Problem sources: dataset rows and seeded generators, the two ways an env gets its problems.

    RowsSource(info, rows, convert, split="test")   # convert(row) -> (question, answer, reference, extra)
    GeneratedSource(info, generate, seed=0, **knobs) # generate(Random(seed + index), **knobs) -> same tuple

Procedural sources follow reasoning-gym: problem ``i`` is drawn from ``random.Random(seed + i)``, so
any index reproduces on its own and the supply is unlimited (``size`` is nominal).
"""

from __future__ import annotations

import inspect
import random
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from evalgym.errors import EvalgymError
from evalgym.types import ChatMessage, Problem

if TYPE_CHECKING:
    from evalgym.envs.registry import EnvInfo

Fields = tuple[str, str, str, Mapping[str, Any]]  # question, answer, reference, extra
UNLIMITED = 2**31 - 1


def _problem(info: "EnvInfo", key: str, index: int, fields: Fields, instruction: str,
             system: str | None) -> Problem:
    question, answer, reference, extra = fields
    prompt = f"{question}\n\n{instruction}" if instruction else question
    messages = ((ChatMessage("system", system),) if system else ()) + (ChatMessage("user", prompt),)
    return Problem(id=f"{info.name}-v{info.version}/{key}/{index}", env_id=info.id, env_version=info.version,
                   domain=info.domain, messages=messages, answer=answer, reference=reference, index=index,
                   extra=dict(extra))


class RowsSource:
    """A fixed split of a dataset."""

    def __init__(self, info: "EnvInfo", rows: Sequence[Mapping[str, Any]], convert: Callable[[Mapping[str, Any]], Fields],
                 *, split: str, instruction: str = "", system: str | None = None):
        self.info, self.rows, self.convert, self.split = info, rows, convert, split
        self.instruction, self.system = instruction, system
        self.size = len(rows)

    def problem(self, index: int) -> Problem:
        return _problem(self.info, self.split, index, self.convert(self.rows[index]), self.instruction, self.system)


class GeneratedSource:
    """An unlimited, seeded generator with difficulty knobs."""

    def __init__(self, info: "EnvInfo", generate: Callable[..., Fields], *, seed: int = 0,
                 instruction: str = "", system: str | None = None, **knobs: Any):
        self.info, self.generate, self.seed, self.knobs = info, generate, int(seed), knobs
        self.instruction, self.system = instruction, system
        self.size = UNLIMITED
        try:  # bad knobs fail at make(), naming the knob
            generate(random.Random(self.seed), **knobs)
        except TypeError as exc:
            known = [p for p in inspect.signature(generate).parameters if p != "rng"]
            raise EvalgymError(f"{info.id}: {exc}; known knobs: {known}") from None

    def problem(self, index: int) -> Problem:
        fields = self.generate(random.Random(self.seed + index), **self.knobs)
        return _problem(self.info, f"seed{self.seed}", index, fields, self.instruction, self.system)
