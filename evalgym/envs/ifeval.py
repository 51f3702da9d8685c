"""IFEval: 541 prompts with verifiable formatting instructions ("no commas", "at least 300 words",
"wrap the answer in JSON"...), graded by lm-eval's own checkers (``evalgym.verifiers.ifeval``), so
instruction following is a verifiable domain for training as well as evaluation.

    gymnasium.make("evalgym/ifeval-v0", data_dir="../shared/data")   # ifeval/input_data.jsonl

IFEval ships one split of 541 prompts (the hub calls it ``train``); here it is ``test``. There is no
gold answer: ``Problem.answer`` lists the instruction ids, and ``Problem.reference`` is a response
written by :func:`write_reference` to follow every instruction of its prompt (filler text, in the
requested language, with the requested structure), checked against the grader itself, so SFT has
something to imitate and the gold test has something to score. It follows the instructions, not
the request: it is no model of a good answer.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from functools import lru_cache
from typing import Any, Mapping

from evalgym.data import load_rows
from evalgym.envs.sources import Fields, RowsSource
from evalgym.errors import EvalgymError

# filler words: plain, lowercase, more than one letter (a capitalized one-letter word is all caps)
ENGLISH = ("the plan covers every part of this request with clear steps and simple words so each reader "
           "can follow along from start to finish and find what they need today").split()
NO_VOWEL = "myth rhythm gym crypt lynx hymn nymph sky dry fly try why shy spy cry".split()
SHOUT = "NOTE KEY PLAN STEP GOAL IDEA TASK LIST".split()


@lru_cache(maxsize=64)
def language_words(lang: str) -> tuple[str, ...]:
    """24 pseudo-words of ``lang`` built from its most frequent letter trigrams in langdetect's own
    profile: text that the IFEval language checker (langdetect) reads as ``lang``."""
    import langdetect

    path = os.path.join(os.path.dirname(langdetect.__file__), "profiles", lang)
    try:
        with open(path, encoding="utf-8") as f:
            freq = json.load(f)["freq"]
    except OSError:
        raise EvalgymError(f"ifeval: langdetect has no profile for language {lang!r}") from None
    tri = sorted((g for g in freq if len(g) == 3 and all(c.isalpha() or not c.isascii() for c in g)
                  and " " not in g), key=lambda g: (-freq[g], g))[:40]
    return tuple(tri[i] + tri[(i * 7 + 3) % len(tri)] for i in range(24))


def _spec(ids: list[str], kwargs: list[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    spec: dict[str, list[dict[str, Any]]] = {}
    for i, kw in zip(ids, kwargs):
        spec.setdefault(i, []).append({k: v for k, v in (kw or {}).items() if v is not None})
    return spec


def _pool(spec: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Filler words that break no instruction: no forbidden word, no capped keyword or letter."""
    lang = next((kw["language"] for kw in spec.get("language:response_language", [])), "en")
    words = list(language_words(lang)) if lang != "en" else list(ENGLISH)
    banned = [w.lower() for kw in spec.get("keywords:forbidden_words", []) for w in kw["forbidden_words"]]
    banned += [kw["keyword"].lower() for kw in spec.get("keywords:frequency", []) if kw["relation"] == "less than"]
    letters = {kw["letter"].lower() for kw in spec.get("keywords:letter_frequency", [])
               if kw["let_relation"] == "less than"}
    ok = lambda w: not any(b in w.lower() for b in banned) and not letters & set(w.lower())  # noqa: E731
    pool = [w for w in words if ok(w)]
    return pool if len(pool) >= 3 else [w for w in NO_VOWEL if ok(w)] or ["zzz"]


def write_reference(ids: list[str], kwargs: list[Mapping[str, Any]], prompt: str, *, sentences: int = 2,
                    words_per_sentence: int = 8) -> str:
    """A response that follows every instruction in ``ids`` (see the module docstring)."""
    spec = _spec(ids, kwargs)
    pool = _pool(spec)
    lang = next((kw["language"] for kw in spec.get("language:response_language", [])), "en")
    # words every response must contain, spread over the sentences
    must: list[str] = []
    for kw in spec.get("keywords:existence", []):
        must += list(kw["keywords"])
    for kw in spec.get("keywords:frequency", []):
        if kw["relation"] == "at least":
            must += [kw["keyword"]] * int(kw["frequency"])
    for kw in spec.get("keywords:letter_frequency", []):
        if kw["let_relation"] == "at least":
            letter = str(kw["letter"]).lower()
            if len(letter) == 1 and "a" <= letter <= "z":
                must += [letter * 3] * -(-int(kw["let_frequency"]) // 3)
            else:  # lm-eval swaps an invalid letter for a random one: have them all
                must += ["abcdefghijklmnopqrstuvwxyz"] * int(kw["let_frequency"])
    caps_needed = max((int(kw["capital_frequency"]) for kw in spec.get("change_case:capital_word_frequency", [])
                       if kw["capital_relation"] == "at least"), default=0)
    must += [SHOUT[i % len(SHOUT)] for i in range(caps_needed)]
    for kw in spec.get("detectable_content:number_placeholders", []):
        must += [f"[item{k + 1}]" for k in range(int(kw["num_placeholders"]))]
    highlights = max((int(kw["num_highlights"]) for kw in spec.get("detectable_format:number_highlighted_sections", [])),
                     default=0)
    must += [f"*{pool[k % len(pool)]} {k + 1}*" for k in range(highlights)]

    n_sent = max(1, sentences, -(-len(must) // max(1, words_per_sentence)))
    filler = (pool[k % len(pool)] for k in itertools.count())
    sents = []
    for s in range(n_sent):
        words = must[s::n_sent] + [next(filler) for _ in range(words_per_sentence)]
        text = " ".join(words)
        sents.append((text[0].upper() + text[1:] if lang == "en" and text[0].isalpha() else text) + ".")

    blocks_n = 1
    for kw in spec.get("length_constraints:number_paragraphs", []):
        blocks_n = int(kw["num_paragraphs"])
    first = spec.get("length_constraints:nth_paragraph_first_word", [])
    if first:
        blocks_n = int(first[0]["num_paragraphs"])
    blocks: list[list[str]] = [[] for _ in range(blocks_n)]
    for k, s in enumerate(sents):
        blocks[k % blocks_n].append(s)
    for b in blocks:
        if not b:
            b.append(" ".join(pool[:3]) + ".")
    if first:
        n = int(first[0]["nth_paragraph"]) - 1
        blocks[n][0] = f"{first[0]['first_word']} {blocks[n][0][0].lower()}{blocks[n][0][1:]}"
    lines_last: list[str] = []
    for kw in spec.get("detectable_format:multiple_sections", []):
        lines_last += [f"{kw['section_spliter']} {k + 1}: {' '.join(pool[:4])}." for k in range(int(kw["num_sections"]))]
    for kw in spec.get("detectable_format:number_bullet_lists", []):
        lines_last += [f"* {' '.join(pool[:3])} {k + 1}." for k in range(int(kw["num_bullets"]))]
    for kw in spec.get("detectable_content:postscript", []):
        lines_last.append(f"{kw['postscript_marker']} {' '.join(pool[:3])}.")
    paragraphs = [" ".join(b) for b in blocks]
    if lines_last:
        paragraphs[-1] += "\n" + "\n".join(lines_last)
    if "detectable_format:title" in spec:
        paragraphs[0] = f"<<{' '.join(pool[:2])}>>\n" + paragraphs[0]
    for kw in spec.get("combination:repeat_prompt", []):
        paragraphs[0] = kw["prompt_to_repeat"].strip() + "\n" + paragraphs[0]
    sep = "\n***\n" if "length_constraints:number_paragraphs" in spec else "\n\n"
    text = sep.join(paragraphs)
    for kw in spec.get("startend:end_checker", []):
        text += " " + kw["end_phrase"].strip()
    if "detectable_format:constrained_response" in spec:
        text += "\nMy answer is yes."
    if "combination:two_responses" in spec:
        text += "\n******\n" + " ".join(pool[-4:]) + "."
    if "change_case:english_lowercase" in spec:
        text = text.lower()
    if "change_case:english_capital" in spec:
        text = text.upper()
    if "detectable_format:json_format" in spec:
        text = json.dumps({"answer": text}, ensure_ascii=False)
    if "punctuation:no_comma" in spec:
        text = text.replace(",", "")
    if "startend:quotation" in spec:
        text = f'"{text}"'
    return text


def _satisfy(ids: list[str], kwargs: list[Mapping[str, Any]], prompt: str) -> tuple[str, bool]:
    """(reference, whether the grader scores it 1.0): the first variant that passes, trying sentence
    counts inside the prompt's sentence limits and sentence lengths that reach its word minimum.
    A few IFEval prompts contradict themselves (repeat a prompt that has commas, with no commas);
    their reference is the last variant tried, and the flag says so."""
    from evalgym.verifiers.ifeval import grade

    spec = _spec(ids, kwargs)
    words = spec.get("length_constraints:number_words", [])
    need_words = max([int(kw["num_words"]) for kw in words if kw["relation"] == "at least"] or [0])
    max_words = min([int(kw["num_words"]) - 1 for kw in words if kw["relation"] == "less than"] or [10**6])
    target = (need_words + max_words) // 2 if max_words < 10**6 else need_words + 10
    sents = spec.get("length_constraints:number_sentences", [])
    lo = max([int(kw["num_sentences"]) for kw in sents if kw["relation"] == "at least"] or [1])
    hi = min([int(kw["num_sentences"]) - 1 for kw in sents if kw["relation"] == "less than"] or [10**6])
    near_hi = (hi, hi - 1, hi - 2) if hi < 10**6 else ()
    counts = sorted({n for n in (lo, lo + 1, lo + 2, 2, 3, 1, *near_hi) if max(1, lo - 2) <= n <= hi} or {1})
    text = ""
    for n in counts:
        fit = max(1, target // n - 3)  # the prompt's words and the structure add a few per sentence
        for wps in sorted({6, 12, 24, 48, fit}, key=lambda w: (w != fit, w)):
            text = write_reference(ids, kwargs, prompt, sentences=n, words_per_sentence=wps)
            if grade(ids, kwargs, prompt, text)["reward"] == 1.0:
                return text, True
    return text, False


def ifeval_fields(row: Mapping[str, Any]) -> Fields:
    ids, kwargs = list(row["instruction_id_list"]), [dict(k or {}) for k in row["kwargs"]]
    reference, satisfiable = _satisfy(ids, kwargs, row["prompt"])
    return row["prompt"], ", ".join(ids), reference, {"key": row["key"], "instruction_id_list": ids, "kwargs": kwargs,
                                                      "reference_follows_all": satisfiable}


class _CachedFields:
    """References cost a grading pass each: build each row's once per source."""

    def __init__(self) -> None:
        self.cache: dict[int, Fields] = {}

    def __call__(self, row: Mapping[str, Any]) -> Fields:
        key = int(row["key"])
        if key not in self.cache:
            self.cache[key] = ifeval_fields(row)
        return self.cache[key]


def ifeval_source(info: Any, split: str = "test", data_dir: str | None = None) -> RowsSource:
    if split != "test":
        raise EvalgymError(f"ifeval: unknown split {split!r}; available: ['test'] (IFEval's 541 prompts)")
    rows = load_rows("ifeval/input_data.jsonl", hub=("google/IFEval", None, "train"), data_dir_=data_dir)
    bad = [i for i, r in enumerate(rows) if not re.fullmatch(r"\d+", str(r.get("key", "")))]
    if bad:
        raise EvalgymError(f"ifeval/input_data.jsonl: rows {bad[:5]} have no integer 'key'")
    return RowsSource(info, rows, _CachedFields(), split=split)
