"""Find the final answer in a whole model response.

Order: the reasoning section is dropped (``<think>…</think>`` by default, configurable with ``think=``;
an unterminated one means the model never answered); then the last ``\\boxed{}`` / ``\\fbox{}`` /
``<answer>…</answer>``; then the last ``#### X`` line; then the last "the answer is X" / "final answer:
X"; then the whole response when it is a short bare answer; then the final number.

Several *different* boxed answers: when the text before the last one presents it as a correction
("wait, let me recheck", "I made a mistake", "actually") the last one is the answer; otherwise they are
a hedge and yield no answer. So does an empty box. Enumerations ("5 or 6", "1, 2, 3") are extracted as
written and fail equivalence later, because a list is not equal to a single value.

    extract_answer("so x = 3. \\boxed{3}")  ->  Extraction(answer="3", source="boxed")
    extract_answer("<r>5</r> 6", think=("<r>", "</r>"))  ->  Extraction(answer="6", source="bare")

Everything here is linear in the response length (no backtracking regexes on unbounded input).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evalgym.errors import EvalgymError

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_PHRASE = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")
MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
MAX_BARE = 80
THINK = ("<think>", "</think>")
# Between a box and a different last box: words that retract the first answer, and words that offer the
# second as an alternative ("or" only counts right before the last box: rechecking text may say "or").
_CORRECTION = re.compile(
    r"\bwait\b|re-?check|double[- ]?check|\bmistake|\berror|\bwrong\b|\bactually\b|\bcorrect(?:ion|ed|ing)?\b"
    r"|reconsider|second thought|\bverif|recalculat|recomput|\bre-?do\b|\bredoing\b|\boops\b|\bmis(?:count|read|calculat|took)"
    r"|\bincorrect\b|not right|\bfix(?:ing|ed)?\b(?!\s+points?)|\binstead\b|\bno[,:!]|\bnope\b|\bforgot|let me check|on closer", re.I)
_HEDGE = re.compile(r"\beither\b|alternativ|\botherwise\b|\b(?:could|might|may|can) also\b|also (?:be|possible|valid)"
                    r"|\bpossib|\bdepend|not sure|\bunsure\b|\bboth\b", re.I)
_OR_NEAR_END = re.compile(r"\bor\b", re.I)


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


def boxed_spans(text: str) -> list[tuple[int, int, str | None]]:
    """``(start, end, contents)`` of every ``\\boxed{...}`` in order; contents None for an unbalanced box."""
    out: list[tuple[int, int, str | None]] = []
    pos = 0
    while True:
        m = _BOX.search(text, pos)
        if not m:
            return out
        j = m.end()
        if j < len(text) and text[j] == "{":
            end = braced(text, j)
            if end < 0:
                out.append((m.start(), len(text), None))
                return out
            out.append((m.start(), end + 1, text[j + 1 : end]))
            pos = end + 1
        else:  # "\boxed 5": one token
            tok = re.match(r"[^\s$]+", text[j : j + 200])
            pos = j + (tok.end() if tok else 0)
            out.append((m.start(), pos, tok.group(0) if tok else ""))


def find_boxed(text: str) -> list[str | None]:
    """Contents of every ``\\boxed{...}`` in order; None for an unbalanced box."""
    return [c for _, _, c in boxed_spans(text)]


def check_think(think: object) -> tuple[str, str] | None:
    """The ``think`` setting as (open, close) tags: a pair of strings, a tag name (``"think"`` or
    ``"<think>"``), or None / False / "" to keep every word of the response."""
    if think is None or think is False or think == "":
        return None
    if isinstance(think, str):
        name = think.strip().strip("<>/").strip()
        if not name:
            raise EvalgymError(f"think: {think!r} is not a tag name")
        return (f"<{name}>", f"</{name}>")
    if isinstance(think, (tuple, list)) and len(think) == 2 and all(isinstance(t, str) and t for t in think):
        return (think[0], think[1])
    raise EvalgymError(f"think: expected a tag name like 'think', an (open, close) pair of strings, or None; "
                     f"got {think!r}")


def strip_think(response: str, think: tuple[str, str] | None = THINK) -> str | None:
    """The response after its reasoning section: the text after the last closing tag; None when the
    section is opened and never closed (no answer was given); unchanged without tags or ``think``."""
    if think is None:
        return response
    opening, closing = think
    close = response.rfind(closing)
    if close >= 0:
        return response[close + len(closing) :]
    return None if opening in response else response


def _corrected(text: str, boxes: list[tuple[int, int, str | None]]) -> bool:
    """Whether the last box, differing from an earlier one, is presented as a correction of it."""
    final = _squash(boxes[-1][2] or "")
    k = len(boxes) - 1
    while k > 0 and _squash(boxes[k - 1][2] or "") == final:
        k -= 1
    between = text[boxes[k - 1][1] : boxes[k][0]]
    return bool(_CORRECTION.search(between)) and not _HEDGE.search(between) \
        and not _OR_NEAR_END.search(between[-40:])


def _squash(s: str) -> str:
    return re.sub(r"\s+|\$|\\[,;:! ]", "", s)


def _strip_sentence(s: str) -> str:
    s = s.strip().lstrip("*:").strip()  # "**Answer:** 42"
    m = MATH_SPAN.search(s)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    s = re.split(r"\.\s|\n", s, maxsplit=1)[0]
    return s.strip().rstrip(".").strip()


def extract_answer(response: str, think: tuple[str, str] | None = THINK) -> Extraction:
    text = strip_think(response.replace("\x00", ""), think)
    if text is None:
        return Extraction(None, "none", f"unterminated {think[0] if think else ''}: no final answer outside "
                                        "the reasoning")

    spans = boxed_spans(text)
    if spans:
        boxes = [c for _, _, c in spans]
        if any(b is None for b in boxes):
            return Extraction(None, "boxed", "unbalanced \\boxed{")
        source = "boxed"
        distinct = list(dict.fromkeys(_squash(b) for b in boxes if b is not None))
        if len(distinct) > 1:
            if not _corrected(text, spans):
                shown = ", ".join(d[:40] for d in distinct[:4])
                return Extraction(None, "boxed", f"several different boxed answers ({shown})")
            source = "boxed_corrected"
        answer = boxes[-1] or ""
        if not answer.strip():
            return Extraction(None, "boxed", "empty \\boxed{}")
        return Extraction(answer.strip(), source)

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
    spans = list(MATH_SPAN.finditer(tail))
    numbers = list(_NUMBER.finditer(tail))
    if spans and (not numbers or spans[-1].end() >= numbers[-1].end()):
        return Extraction(next(g for g in spans[-1].groups() if g is not None).strip(), "last_math")
    if numbers:
        return Extraction(numbers[-1].group(0), "last_number")
    return Extraction(None, "none", "no final answer found")
