"""Problem sources: dataset rows and seeded generators, the two ways an env gets its problems, and the
splits that keep evaluation problems out of training.

    RowsSource(info, rows, convert, split="test")   # convert(row) -> (question, answer, reference, extra)
    GeneratedSource(info, generate, seed=0, split="train", space=SPACE, **knobs)

Procedural sources follow reasoning-gym: problem ``i`` is drawn from ``random.Random(seed + i)``, so any
index reproduces on its own and the supply is unlimited (``size`` is nominal).

Splits, disjoint by construction. Every problem has a canonical content (``Problem.extra["canonical"]``:
what the problem *is*, independent of the prompt's wording: ``"arithmetic:3 + 4"``; dataset rows use their
question and gold answer) and so a content hash (``evalgym.types.content_hash``). A procedural source
partitions its space by that hash: a problem belongs to ``eval`` when the hash's first 32 bits fall in the
lowest ``EVAL_SHARE`` of their range, else to ``train``. Problem ``i`` of a split is the first draw of
``Random(seed + i)`` that lands in that split, so no problem is in both splits whatever the seeds, and the
split a problem is in never depends on the knobs, the seed or the env that drew it. Dataset envs keep
their official splits.

A space model (:class:`SpaceModel`) says how many distinct problems a generator's knobs allow (``count``)
and, when small enough to list, what they are (``canonicals``): ``evalgym envs info`` reports both, and
asking a split for more distinct problems than it holds is an error that says so
(:func:`distinct_indices`).
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from evalgym.errors import EvalgymError
from evalgym.types import ChatMessage, Problem, canonical_hash, content_hash

if TYPE_CHECKING:
    from evalgym.envs.registry import EnvInfo

Fields = tuple[str, str, str, Mapping[str, Any]]  # question, answer, reference, extra
UNLIMITED = 2**31 - 1
PROCEDURAL_SPLITS = ("train", "eval")
EVAL_SHARE = 0.2                 # share of a procedural space in the eval split (by content hash)
MAX_REDRAWS = 2000               # draws to find a problem of the asked split before calling it empty
ENUMERATE_LIMIT = 2_000_000      # spaces up to this size are listed to count their splits exactly


def split_of(hash16: str) -> str:
    """``"eval"`` or ``"train"``: the split of a procedural problem with content hash ``hash16``."""
    return "eval" if int(hash16[:8], 16) < EVAL_SHARE * 2**32 else "train"


def canonical_text(question: str, answer: str) -> str:
    """The canonical content of a dataset row: its question and gold answer, whitespace-normalized."""
    return f"{' '.join(question.split())}\x1d{' '.join(str(answer).split())}"


def _problem(info: "EnvInfo", key: str, index: int, fields: Fields, instruction: str,
             system: str | None) -> Problem:
    question, answer, reference, extra = fields
    prompt = f"{question}\n\n{instruction}" if instruction else question
    messages = ((ChatMessage("system", system),) if system else ()) + (ChatMessage("user", prompt),)
    extra = dict(extra)
    extra.setdefault("canonical", canonical_text(question, answer))
    return Problem(id=f"{info.name}-v{info.version}/{key}/{index}", env_id=info.id, env_version=info.version,
                   domain=info.domain, messages=messages, answer=answer, reference=reference, index=index,
                   extra=extra)


@dataclass(frozen=True)
class SpaceModel:
    """How large a generator's problem space is for given knobs.

    count(**knobs) -> int | None:     distinct problems (canonical contents); None when not countable.
    canonicals(**knobs) -> iterable:  every canonical content, or None (only called when count is at most
                                      ``ENUMERATE_LIMIT``); lets the splits be counted exactly.
    """

    count: Callable[..., int | None]
    canonicals: Callable[..., Iterable[str] | None] | None = None


@dataclass(frozen=True)
class SpaceInfo:
    """``space``: distinct problems (None: unbounded or unknown); ``splits``: split -> distinct problems in
    it (None: unknown); ``exact``: whether the split counts were listed (else estimated from EVAL_SHARE)."""

    space: int | None
    splits: dict[str, int | None]
    exact: bool


class RowsSource:
    """A fixed split of a dataset."""

    def __init__(self, info: "EnvInfo", rows: Sequence[Mapping[str, Any]], convert: Callable[[Mapping[str, Any]], Fields],
                 *, split: str, instruction: str = "", system: str | None = None):
        self.info, self.rows, self.convert, self.split = info, rows, convert, split
        self.instruction, self.system = instruction, system
        self.size = len(rows)

    def problem(self, index: int) -> Problem:
        return _problem(self.info, self.split, index, self.convert(self.rows[index]), self.instruction, self.system)


def check_split(info: "EnvInfo", split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise EvalgymError(f"{info.id}: unknown split {split!r}; its splits: {list(splits)}")


class GeneratedSource:
    """An unlimited, seeded generator with difficulty knobs, serving one split of its space."""

    def __init__(self, info: "EnvInfo", generate: Callable[..., Fields], *, seed: int = 0, split: str = "train",
                 instruction: str = "", system: str | None = None, space: SpaceModel | None = None, **knobs: Any):
        check_split(info, split, PROCEDURAL_SPLITS)
        self.info, self.generate, self.seed, self.split, self.knobs = info, generate, int(seed), split, knobs
        self.instruction, self.system, self.space_model = instruction, system, space
        self.size = UNLIMITED
        try:  # bad knobs fail at make(), naming the knob
            generate(random.Random(self.seed), **knobs)
        except TypeError as exc:
            known = [p for p in inspect.signature(generate).parameters if p != "rng"]
            raise EvalgymError(f"{info.id}: {exc}; known knobs: {known}") from None

    def problem(self, index: int) -> Problem:
        rng = random.Random(self.seed + index)
        for _ in range(MAX_REDRAWS):
            p = _problem(self.info, f"{self.split}-seed{self.seed}", index, self.generate(rng, **self.knobs),
                         self.instruction, self.system)
            if split_of(content_hash(p)) == self.split:
                return p
        raise EvalgymError(f"{self.info.id} {self.knobs}: no problem of split {self.split!r} in {MAX_REDRAWS} draws: "
                           f"the space is too small to have one (`evalgym envs info {self.info.name} ...` counts it)")

    def space(self) -> SpaceInfo:
        count = self.space_model.count(**self.knobs) if self.space_model else None
        return space_info(count, self.space_model.canonicals if self.space_model else None, self.knobs)


def space_info(count: int | None, canonicals: Callable[..., Iterable[str] | None] | None,
               knobs: Mapping[str, Any]) -> SpaceInfo:
    """Split sizes of a procedural space: listed exactly when it is small enough, else estimated."""
    if count is not None and canonicals is not None and count <= ENUMERATE_LIMIT:
        listed = canonicals(**knobs)
        if listed is not None:
            n_eval = n_all = 0
            for c in listed:
                n_all += 1
                n_eval += split_of(canonical_hash(c)) == "eval"
            return SpaceInfo(n_all, {"train": n_all - n_eval, "eval": n_eval}, True)
    if count is None:
        return SpaceInfo(None, {"train": None, "eval": None}, False)
    n_eval = round(count * EVAL_SHARE)
    return SpaceInfo(count, {"train": count - n_eval, "eval": n_eval}, False)


def distinct_indices(source: Any, k: int | None, *, where: str = "", max_docs: int | None = None) -> list[int]:
    """Indices of the first ``k`` distinct problems (by content hash) of ``source`` in index order.

    A dataset split gives its first ``k`` rows (all of them for ``k=None``). A procedural split gives the
    first ``k`` distinct draws (``k=None``: ``max_docs``); asking for more than the split holds is an
    :class:`EvalgymError` that says how many it holds."""
    size = source.size
    if size != UNLIMITED:
        if k is not None and k > size:
            raise EvalgymError(f"{where or getattr(source.info, 'id', 'env')}: asked for {k} problems, the split "
                               f"{getattr(source, 'split', '?')!r} holds {size}")
        return list(range(size if k is None else k))
    want = k if k is not None else max_docs
    if want is None:
        raise EvalgymError(f"{where}: a procedural split is unlimited: give a number of problems")
    info = source.space() if hasattr(source, "space") else None
    held = info.splits.get(source.split) if info is not None else None
    name = where or source.info.id
    if held is not None and info is not None and info.exact and want > held:
        if k is None:
            want = held
        else:
            raise EvalgymError(f"{name} {source.knobs}: asked for {want} distinct problems of split {source.split!r}, "
                               f"which holds {held} (of a space of {info.space}); choose larger knobs or fewer problems")
    seen: set[str] = set()
    out: list[int] = []
    i, misses = 0, 0
    budget = max(50 * want, 2000)      # draws are with replacement: a nearly exhausted space needs many
    while len(out) < want:
        h = content_hash(source.problem(i))
        if h not in seen:
            seen.add(h)
            out.append(i)
            misses = 0
        else:
            misses += 1
            if misses > budget:
                raise EvalgymError(f"{name} {source.knobs}: found only {len(out)} distinct problems of split "
                                   f"{source.split!r} in {i + 1} draws, {want} asked; the space is too small "
                                   "(`evalgym envs info` counts it)")
        i += 1
    return out
