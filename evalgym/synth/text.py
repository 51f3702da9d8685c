"""Text normalization shared by deduplication and decontamination: two texts that differ only in
whitespace, case, unicode form, punctuation or number formatting become the same token sequence.

    tokens("What is  $1,200.50 + Seven?")   # ['what', 'is', '1200.5', '+', '7']
    normalized("Compute 3+4.")               # 'compute 3 + 4'

Choices (each is a way a copied benchmark problem is commonly disguised):
- NFKC unicode, lower case, any run of whitespace is one separator;
- numbers: thousands separators dropped (``1,200`` / ``1 200`` stay ``1200`` only for the comma form: a
  space between digit groups is ambiguous with two numbers), leading zeros dropped (``007``), trailing
  decimal zeros dropped (``3.50`` → ``3.5``, ``5.0`` → ``5``), ``.5`` → ``0.5``, unicode minus → ``-``; small spelled-out
  numbers (zero … twenty, the tens, hundred, thousand) → digits;
- tokens are words, numbers and the math symbols ``+ - * / = ^ < > ( ) [ ] % !``; other punctuation
  (``. , ; : ? " '``, braces, backslashes) is dropped, so ``\\frac{1}{2}`` is ``frac 1 2``.
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?|(?<!\d)\.\d+|[+\-*/=^<>()\[\]%!]")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d])")
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u00f7": "/"})
WORD_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
WORD_NUMBERS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                     "ninety": "90", "hundred": "100", "thousand": "1000"})


def _number(tok: str) -> str:
    if "." in tok:
        whole, frac = tok.split(".", 1)          # ".5" is "0.5"
        frac = frac.rstrip("0")
        whole = whole.lstrip("0") or "0"
        return f"{whole}.{frac}" if frac else whole
    return tok.lstrip("0") or "0"


def tokens(text: str) -> list[str]:
    """The normalized token sequence of ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(_MINUS).lower()
    text = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), text)
    out = []
    for tok in _TOKEN.findall(text):
        c = tok[0]
        if c.isdigit() or c == ".":
            out.append(_number(tok))
        elif c.isalpha():
            out.append(WORD_NUMBERS.get(tok, tok))
        else:
            out.append(tok)
    return out


def normalized(text: str) -> str:
    """``tokens`` joined by single spaces: the form exact-duplicate checks compare."""
    return " ".join(tokens(text))


def shingles(toks: list[str], k: int) -> set[str]:
    """The set of ``k``-token windows of ``toks`` (the whole sequence when shorter)."""
    if len(toks) <= k:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i:i + k]) for i in range(len(toks) - k + 1)}
