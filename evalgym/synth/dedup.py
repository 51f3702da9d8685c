"""Deduplication within a generated set: exact duplicates after normalization, and near-duplicates by
MinHash LSH (``datasketch``), each candidate pair confirmed by its exact Jaccard similarity.

    kept, dropped = dedup(texts, threshold=0.8)     # indices kept (first of each cluster), and why others went
    dropped[0]    # {"index": 7, "reason": "near-duplicate", "of": 2, "jaccard": 0.86}

What is compared is the caller's choice; the pipeline passes each problem's question (its prompt without
the env's fixed instruction, which every problem of an env shares) and then, within one problem, its
responses (exact duplicates only). Texts are normalized by :mod:`evalgym.synth.text` (case, whitespace,
punctuation, number formatting), so ``Compute 3+4.`` and ``compute 3 + 4`` are exact duplicates.

Near-duplicates: Jaccard similarity of the sets of ``shingle``-token windows (3 by default: short math
questions differ in one number, which changes every window that holds it, so ``Compute 3 + 4`` and
``Compute 3 + 5`` are far apart). MinHash LSH proposes candidates in expected constant time per text; a
candidate counts only when its true Jaccard is at least ``threshold`` (LSH alone has false positives).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from evalgym.synth.text import normalized, shingles

DEFAULT_THRESHOLD = 0.8
DEFAULT_SHINGLE = 3
DEFAULT_PERM = 128


def _minhash(shingle_set: set[str], num_perm: int) -> Any:
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch([s.encode("utf-8") for s in shingle_set])
    return m


def exact_key(text: str) -> str:
    """The key two exact duplicates share: a hash of the normalized text."""
    return hashlib.blake2b(normalized(text).encode("utf-8"), digest_size=12).hexdigest()


def dedup(texts: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD, shingle: int = DEFAULT_SHINGLE,
          num_perm: int = DEFAULT_PERM, near: bool = True) -> tuple[list[int], list[dict[str, Any]]]:
    """(indices kept, in order; one record per dropped text: index, reason, ``of`` = the kept index it
    duplicates, and for near-duplicates their Jaccard). The first text of each cluster is kept."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dedup threshold must be in (0, 1], got {threshold}")
    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    first_of: dict[str, int] = {}
    lsh = None
    sets: dict[int, set[str]] = {}
    if near:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, text in enumerate(texts):
        key = exact_key(text)
        if key in first_of:
            dropped.append({"index": i, "reason": "exact-duplicate", "of": first_of[key]})
            continue
        if lsh is not None:
            sh = shingles(normalized(text).split(), shingle)
            mh = _minhash(sh, num_perm)
            best = None
            for cand in lsh.query(mh):
                j = jaccard(sh, sets[cand])
                if j >= threshold and (best is None or j > best[1]):
                    best = (cand, j)
            if best is not None:
                dropped.append({"index": i, "reason": "near-duplicate", "of": best[0], "jaccard": round(best[1], 3)})
                continue
            lsh.insert(i, mh)
            sets[i] = sh
        first_of[key] = i
        kept.append(i)
    return kept, dropped


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
