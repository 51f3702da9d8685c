"""Find the final answer in a whole model response.

Order: text inside ``<think>…</think>`` is dropped (an unterminated ``<think>`` means the model never
answered); then the last ``\\boxed{}`` / ``\\fbox{}`` / ``<answer>…</answer>``; then the last ``#### X``
line; then the last "the answer is X" / "final answer: X"; then the whole response when it is a short
bare answer; then the final number.

Reward-hack refusals made here: several *different* boxed answers (hedging) yield no answer; so does an
empty box. Enumerations ("5 or 6", "1, 2, 3") are extracted as written and fail equivalence later,
because a list is not equal to a single value.

    extract_answer("so x = 3. \\boxed{3}")  ->  Extraction(answer="3", source="boxed")

Everything here is linear in the response length (no backtracking regexes on unbounded input).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_PHRASE = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
MAX_BARE = 80


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    source: str  # boxed | answer_tag | hashes | phrase | bare | last_math | last_number | none
    reason: str | None = None
    fallback: str | None = None  # for a "bare" answer that does not parse: the last math span or number


def braced(text: str, open_at: int) -> int:
    """Index of the ``}`` matching the ``{`` at ``open_at`` (escaped ``\\{ \\}`` skipped), or -1."""
    depth = 0
    k = open_at
    n = len(text)
    while k < n:
        c = text[k]
        if c == "\\":
            k += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    return -1


def find_boxed(text: str) -> list[str | None]:
    """Contents of every ``\\boxed{...}`` in order; None for an unbalanced box."""
    out: list[str | None] = []
    pos = 0
    while True:
        m = _BOX.search(text, pos)
        if not m:
            return out
        j = m.end()
        if j < len(text) and text[j] == "{":
            end = braced(text, j)
            if end < 0:
                out.append(None)
                return out
            out.append(text[j + 1 : end])
            pos = end + 1
        else:  # "\boxed 5": one token
            tok = re.match(r"[^\s$]+", text[j : j + 200])
            out.append(tok.group(0) if tok else "")
            pos = j + (tok.end() if tok else 0)


def _squash(s: str) -> str:
    return re.sub(r"\s+|\$|\\[,;:! ]", "", s)


def _strip_sentence(s: str) -> str:
    s = s.strip().lstrip("*:").strip()  # "**Answer:** 42"
    m = _MATH_SPAN.search(s)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    s = re.split(r"\.\s|\n", s, maxsplit=1)[0]
    return s.strip().rstrip(".").strip()


def extract_answer(response: str) -> Extraction:
    text = response.replace("\x00", "")
    close = text.rfind("</think>")
    if close >= 0:
        text = text[close + len("</think>") :]
    elif "<think>" in text:
        return Extraction(None, "none", "unterminated <think>: no final answer outside the reasoning")

    boxes = find_boxed(text)
    if boxes:
        if any(b is None for b in boxes):
            return Extraction(None, "boxed", "unbalanced \\boxed{")
        distinct = list(dict.fromkeys(_squash(b) for b in boxes if b is not None))
        if len(distinct) > 1:
            shown = ", ".join(d[:40] for d in distinct[:4])
            return Extraction(None, "boxed", f"several different boxed answers ({shown})")
        answer = boxes[-1] or ""
        if not answer.strip():
            return Extraction(None, "boxed", "empty \\boxed{}")
        return Extraction(answer.strip(), "boxed")

    tags = _ANSWER_TAG.findall(text)
    if tags:
        answer = tags[-1].strip()
        return Extraction(answer or None, "answer_tag", None if answer else "empty <answer></answer>")

    hashes = text.rfind("####")
    if hashes >= 0:
        answer = text[hashes + 4 :].strip().split("\n", 1)[0].strip()
        return Extraction(answer or None, "hashes", None if answer else "empty #### line")

    last_phrase = None
    for last_phrase in _PHRASE.finditer(text):
        pass
    if last_phrase is not None:
        answer = _strip_sentence(text[last_phrase.end() : last_phrase.end() + 500])
        if answer:
            return Extraction(answer, "phrase")

    last = _last_math_or_number(text[-2000:])
    bare = text.strip()
    if bare and len(bare) <= MAX_BARE and len(_WORD.findall(bare)) <= 2:
        return Extraction(bare.rstrip(".").strip(), "bare", fallback=last.answer)
    return last


def _last_math_or_number(tail: str) -> Extraction:
    spans = list(_MATH_SPAN.finditer(tail))
    numbers = list(_NUMBER.finditer(tail))
    if spans and (not numbers or spans[-1].end() >= numbers[-1].end()):
        return Extraction(next(g for g in spans[-1].groups() if g is not None).strip(), "last_math")
    if numbers:
        return Extraction(numbers[-1].group(0), "last_number")
    return Extraction(None, "none", "no final answer found")
