"""Decontamination: drop generated rows that contain evaluation problems, and say which and why.

    index = EvalIndex.build(n=13)              # every registered env's eval split + lm-eval tasks with local data
    hits = index.check(rows)                   # rows: ContamRow(id, question, texts, hash, env_id, env_scheme)
    hits[0]   # {"row": "r7", "reason": "ngram", "source": "env:evalgym/gsm8k-v0/test", "doc": "gsm8k-v0/test/12", ...}

What is evaluated, so what is indexed: the evaluation split of every registered env (``test`` of a
dataset env, all of it; ``eval`` of a procedural env: the first ``procedural_docs`` distinct problems, the
same 500 the evaluation driver scores by default, for the default knobs and for the knobs the run uses),
and the evaluation docs of every lm-eval task whose data is staged locally (``doc_to_text`` of each:
GSM8K and its chain-of-thought variants, IFEval). A doc's text is the env's question (its prompt without
the env's fixed instruction) or lm-eval's rendered prompt.

Five checks, any one drops the row (the report names the first that fired):

- ``eval-split`` — the row's problem carries its env's canonical content (problems drawn from an env, or
  teacher proposals whose text parses back into the env's form) and that content hashes into the env's
  ``eval`` split (``evalgym.envs.sources.split_of``): exact for any knobs, however many eval problems exist;
- ``eval-hash`` — its content hash (``evalgym.types.content_hash``) is one of an indexed eval problem's;
- ``exact`` — its question, normalized (:mod:`evalgym.synth.text`: whitespace, case, punctuation, number
  formatting), equals an eval doc's;
- ``ngram`` — its texts (question and responses) share ``n``-token windows with an eval doc (lm-eval's
  decontamination uses 13-grams; ``n`` is configurable) covering at least ``min_coverage`` of that doc's
  windows (default 0.5; 0 is lm-eval's rule: any one shared window). Measured on 100k rows
  (perf/decontam_bench.py): any-window drops ~1 in 4 clean MATH training problems, which share phrases such as
  "where m and n are relatively prime positive integers find m +" with test problems; half the doc keeps
  every copied problem and drops few clean rows. Windows in more than ``max_doc_freq`` docs of one source are
  template text (an env's boilerplate) and are left out of the index;
- ``short-doc`` — a dataset or lm-eval doc shorter than ``n`` tokens (but at least ``min_short``) appears
  whole inside the row's question (``find the units digit of 18 ^ 6`` wrapped in other words). Short
  procedural docs are compositional (``compute 3 + 4`` sits inside ``compute 3 + 4 - 1``, another problem):
  they are matched exactly or by their content hash, never by containment. Procedural docs of ``n`` tokens
  or more go through the ``ngram`` check like any doc: another problem of the same form differs inside
  most of its windows (its numbers or terms), so it stays under ``min_coverage``; the doc wrapped whole in
  other words is caught (tested in tests/synth/test_dedup_decontam.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.synth.text import normalized, tokens

DEFAULT_N = 13
MAX_DOC_FREQ = 10
MIN_SHORT = 8
MIN_COVERAGE = 0.5
PROCEDURAL_DOCS = 500


@dataclass(frozen=True)
class EvalDoc:
    source: str            # "env:evalgym/gsm8k-v0/test" or "lm-eval:gsm8k"
    doc: str               # its id within the source
    text: str
    hash: str | None = None
    procedural: bool = False   # from a procedural env's eval split (matched exactly or by hash only)


@dataclass(frozen=True)
class ContamRow:
    """One generated row as decontamination sees it."""

    id: str
    question: str
    texts: tuple[str, ...] = ()          # responses (the question is checked too)
    hash: str | None = None              # content hash of its problem
    env_id: str | None = None
    env_scheme: bool = False             # its canonical content is in its env's own form (see the docstring)


def question_of(problem: Any, instruction: str = "") -> str:
    """A problem's question: its last user message without the env's fixed instruction suffix."""
    text = problem.prompt_text
    if instruction and text.endswith(instruction):
        text = text[: -len(instruction)].rstrip()
    return text


def _hash_partitioned(env_id: str) -> bool:
    from evalgym.envs.registry import CATALOG

    info = CATALOG.get(env_id)
    return info is not None and info.eval_split == "eval"


def env_docs(env_names: Sequence[str] | None = None, *, env_kwargs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
             procedural_docs: int = PROCEDURAL_DOCS, data_dir: str | None = None) -> tuple[list[EvalDoc], list[dict[str, Any]]]:
    """Eval-split docs of the named envs (None: every registered env), and one note per env left out
    (data not staged, optional package missing) — the report lists them: unchecked is not clean."""
    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import CATALOG, resolve_id
    from evalgym.envs.sources import distinct_indices
    from evalgym.evaluate import eval_env

    ids = list(CATALOG) if env_names is None else [resolve_id(n) for n in env_names]
    docs: list[EvalDoc] = []
    skipped: list[dict[str, Any]] = []
    for env_id in ids:
        info = CATALOG[env_id]
        if info.eval_split is None:
            skipped.append({"source": env_id, "reason": "no evaluation split"})
            continue
        knob_sets = [{}] + [dict(k) for k in (env_kwargs or {}).get(env_id, ()) if k]
        seen: set[str] = set()
        for knobs in knob_sets:
            try:
                text_env, split = eval_env(env_id, env_kwargs={k: v for k, v in knobs.items() if k != "split"},
                                           data_dir=data_dir, think=None)
                source = text_env.source
                indices = distinct_indices(source, None, max_docs=procedural_docs, where=env_id)
            except Exception as exc:  # noqa: BLE001 - a missing dataset or package: reported, not fatal
                skipped.append({"source": env_id, "knobs": knobs, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
                continue
            instruction = getattr(source, "instruction", "") or ""
            from evalgym.types import content_hash

            for i in indices:
                p = source.problem(i)
                h = content_hash(p)
                if h in seen:
                    continue
                seen.add(h)
                docs.append(EvalDoc(f"env:{env_id}/{split}", p.id, question_of(p, instruction), h,
                                    _hash_partitioned(env_id)))
    return docs, skipped


def lmeval_docs(tasks: Sequence[str] | None = None, data_dir: str | None = None) -> tuple[list[EvalDoc], list[dict[str, Any]]]:
    """Eval docs of lm-eval tasks with local data (None: every such task evalgym knows: GSM8K and its
    variants, IFEval), as lm-eval renders them (``doc_to_text``)."""
    from evalgym.benchmarks.lmeval import LOCAL_DATA, TASK_DIRS, build_standard_task
    from evalgym.data import data_dir as resolve_data_dir

    root = resolve_data_dir(data_dir)
    names = list(TASK_DIRS) if tasks is None else list(tasks)
    docs: list[EvalDoc] = []
    skipped: list[dict[str, Any]] = []
    if root is None:
        return docs, [{"source": f"lm-eval:{n}", "reason": "no local data folder ($EVALGYM_DATA_DIR)"} for n in names]
    staged = {rel for files in LOCAL_DATA.values() for rel in files.values() if (root / rel).is_file()}
    for name in names:
        if tasks is None and not staged:
            break
        try:
            for task in build_standard_task(name, data_dir=str(root)):
                for k, d in enumerate(task.eval_docs):
                    text = task.doc_to_text(d)
                    docs.append(EvalDoc(f"lm-eval:{name}", str(k), text if isinstance(text, str) else str(text)))
        except Exception as exc:  # noqa: BLE001
            skipped.append({"source": f"lm-eval:{name}", "reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return docs, skipped


@dataclass
class EvalIndex:
    """The n-gram, exact-text and hash index of a set of eval docs."""

    n: int = DEFAULT_N
    max_doc_freq: int = MAX_DOC_FREQ
    docs: list[EvalDoc] = field(default_factory=list)
    min_short: int = MIN_SHORT
    min_coverage: float = MIN_COVERAGE
    grams: dict[int, int] = field(default_factory=dict)       # window hash -> doc position
    doc_windows: list[int] = field(default_factory=list)      # distinct windows of each doc
    short: dict[int, int] = field(default_factory=dict)       # whole short doc (min_short..n-1 tokens) -> doc position
    exact: dict[str, int] = field(default_factory=dict)       # normalized question -> doc position
    hashes: dict[str, int] = field(default_factory=dict)      # content hash -> doc position
    skipped: list[dict[str, Any]] = field(default_factory=list)
    template_grams: int = 0
    build_s: float = 0.0

    @classmethod
    def build(cls, *, n: int = DEFAULT_N, envs: Sequence[str] | None = None, lmeval_tasks: Sequence[str] | None = None,
              env_kwargs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, procedural_docs: int = PROCEDURAL_DOCS,
              max_doc_freq: int = MAX_DOC_FREQ, min_coverage: float = MIN_COVERAGE,
              data_dir: str | None = None) -> EvalIndex:
        t0 = time.perf_counter()
        docs, skipped = env_docs(envs, env_kwargs=env_kwargs, procedural_docs=procedural_docs, data_dir=data_dir)
        more, skipped2 = lmeval_docs(lmeval_tasks, data_dir=data_dir)
        index = cls.from_docs(docs + more, n=n, max_doc_freq=max_doc_freq, min_coverage=min_coverage)
        index.skipped = skipped + skipped2
        index.build_s = time.perf_counter() - t0
        return index

    @classmethod
    def from_docs(cls, docs: Iterable[EvalDoc], *, n: int = DEFAULT_N, max_doc_freq: int = MAX_DOC_FREQ,
                  min_coverage: float = MIN_COVERAGE) -> EvalIndex:
        if not isinstance(n, int) or n < 1:
            raise EvalgymError(f"decontam.ngram must be an integer >= 1, got {n!r}")
        if not 0.0 <= min_coverage <= 1.0:
            raise EvalgymError(f"decontam min_coverage must be in [0, 1], got {min_coverage!r}")
        index = cls(n=n, max_doc_freq=max_doc_freq, min_coverage=min_coverage, docs=list(docs))
        # template text: a window in more than max_doc_freq docs of ONE source (the same problem in several
        # sources, e.g. GSM8K as an env and as five lm-eval variants, is not a template)
        freq: dict[tuple[str, int], int] = {}
        common: set[int] = set()
        for pos, d in enumerate(index.docs):
            toks = tokens(d.text)
            index.exact.setdefault(" ".join(toks), pos)
            if d.hash:
                index.hashes.setdefault(d.hash, pos)
            if index.min_short <= len(toks) < n and not d.procedural:
                index.short.setdefault(hash(tuple(toks)), pos)
            windows = set(_windows(toks, n))
            index.doc_windows.append(len(windows))
            for g in windows:
                if g not in index.grams:
                    index.grams[g] = pos
                c = freq[(d.source, g)] = freq.get((d.source, g), 0) + 1
                if c > max_doc_freq:
                    common.add(g)
        for g in common:
            index.grams.pop(g, None)
        index.template_grams = len(common)
        return index

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for d in self.docs:
            by_source[d.source] = by_source.get(d.source, 0) + 1
        return {"n": self.n, "docs": len(self.docs), "windows": len(self.grams), "short_docs": len(self.short),
                "min_short": self.min_short, "min_coverage": self.min_coverage, "template_windows": self.template_grams,
                "max_doc_freq": self.max_doc_freq, "sources": by_source, "not_checked": self.skipped,
                "build_s": round(self.build_s, 2)}

    def check(self, rows: Iterable[ContamRow]) -> list[dict[str, Any]]:
        """One record per contaminated row (see the module docstring for the reasons)."""
        from evalgym.envs.sources import split_of

        hits = []
        for row in rows:
            hit = None
            if row.env_scheme and row.hash and row.env_id and _hash_partitioned(row.env_id) and split_of(row.hash) == "eval":
                hit = {"reason": "eval-split", "source": f"env:{row.env_id}/eval", "evidence": row.hash}
            elif row.hash and row.hash in self.hashes:
                hit = self._hit("eval-hash", self.hashes[row.hash], row.hash)
            else:
                qt = tokens(row.question)
                pos = self.exact.get(" ".join(qt))
                if pos is not None:
                    hit = self._hit("exact", pos, " ".join(qt)[:200])
                else:
                    hit = self._ngram_hit([qt, *(tokens(t) for t in row.texts)]) or self._short_hit(qt)
            if hit is not None:
                hits.append({"row": row.id, **hit, "question": row.question[:300]})
        return hits

    def _ngram_hit(self, token_lists: list[list[str]]) -> dict[str, Any] | None:
        """The doc whose windows the row's texts cover most, when that covers ``min_coverage`` of it."""
        grams = self.grams
        n = self.n
        shared: dict[int, set[int]] = {}
        first: dict[int, str] = {}
        for toks in token_lists:
            for i in range(len(toks) - n + 1):
                g = hash(tuple(toks[i:i + n]))
                pos = grams.get(g)
                if pos is not None:
                    shared.setdefault(pos, set()).add(g)
                    first.setdefault(pos, " ".join(toks[i:i + n]))
        best = None
        for pos, gs in shared.items():
            cover = len(gs) / max(self.doc_windows[pos], 1)
            if cover >= self.min_coverage and (best is None or cover > best[1]):
                best = (pos, cover)
        if best is None:
            return None
        return {**self._hit("ngram", best[0], first[best[0]]), "coverage": round(min(best[1], 1.0), 3)}

    def _short_hit(self, toks: list[str]) -> dict[str, Any] | None:
        if not self.short:
            return None
        for length in range(self.min_short, min(self.n, len(toks) + 1)):
            for i in range(len(toks) - length + 1):
                pos = self.short.get(hash(tuple(toks[i:i + length])))
                if pos is not None:
                    return self._hit("short-doc", pos, " ".join(toks[i:i + length]))
        return None

    def _hit(self, reason: str, pos: int, evidence: str) -> dict[str, Any]:
        d = self.docs[pos]
        return {"reason": reason, "source": d.source, "doc": d.doc, "evidence": evidence, "doc_text": d.text[:300]}


def _windows(toks: list[str], n: int) -> list[int]:
    return [hash(tuple(toks[i:i + n])) for i in range(len(toks) - n + 1)]


def normalized_question(text: str) -> str:
    return normalized(text)
