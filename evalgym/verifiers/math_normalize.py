"""Normalize an answer's surface form before parsing: unicode, ``$`` and ``\\(\\)``, ``\\left``/``\\right``,
spacing macros, ``\\dfrac``, degrees and percent (kept as flags for the comparer), ``\\text{}`` wrappers,
units after a number, thousands separators, spelled small numbers, choice letters, ``x \\in``.

    normalize("$1{,}000$ dollars")  ->  ("1000", set())
    normalize("50\\%")             ->  ("50", {"percent"})
"""

from __future__ import annotations

import re
import unicodedata

from evalgym.verifiers.math_extract import braced

_UNICODE = {
    "−": "-", "–": "-", "—": "-", "×": r"\times ", "÷": r"\div ", "·": r"\cdot ", "⋅": r"\cdot ",
    "π": r"\pi ", "√": r"\sqrt", "∞": r"\infty ", "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ",
    "∪": r"\cup ", "±": r"\pm ", "∓": r"\mp ", "°": "", "⁄": "/", "∅": r"\emptyset ", "θ": r"\theta ",
    "α": r"\alpha ", "β": r"\beta ", "’": "'", "\u00a0": " ",
}
_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_TEXT_CMDS = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|mathit|operatorname|hbox)\s*\{")
_FUNCS = ("arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "sec", "csc", "cot",
          "log", "ln", "exp", "sqrt")
_PLAIN_FUNC = re.compile(r"(?<![\\a-zA-Z])(" + "|".join(_FUNCS) + r"|pi|infty|inf)(?![a-zA-Z])")
_NUMERIC_HEAD = re.compile(r"^([-+]?\$?\s*[\d.,/]+)\s*((?:[a-zA-Z]+\.?\s*){1,3}(?:\^?\{?[23]\}?)?)$")
_UNIT_TAIL = re.compile(r"(?<=[\d})])\s*(?:degrees?|units?|square\s+units|sq\.?\s*units|cm|inches|inch|feet|meters?|"
                        r"dollars?|cents?|miles?|hours?|minutes?|seconds?|days?|years?)(?:\^?\{?[23]\}?)?\s*$")


def _unwrap_text(s: str) -> str:
    for _ in range(50):
        m = _TEXT_CMDS.search(s)
        if not m:
            return s
        end = braced(s, m.end() - 1)
        if end < 0:
            return s[: m.start()] + s[m.end():]
        s = s[: m.start()] + s[m.end(): end] + s[end + 1:]
    return s


def normalize(raw: str) -> tuple[str, set[str]]:
    """Canonical surface form of an answer, and flags (``percent``, ``degrees``) for the comparer."""
    flags: set[str] = set()
    s = unicodedata.normalize("NFKC", raw.replace("\x00", ""))
    for k, v in _UNICODE.items():
        if k in s:
            if k == "°":
                flags.add("degrees")
            s = s.replace(k, v)
    s = _unwrap_text(s)
    s = re.sub(r"\\(?:displaystyle|left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![a-zA-Z])\.?", "", s)
    s = re.sub(r",\\!\s*(?=\d{3})", ",", s)  # 10,\!080
    s = re.sub(r"(?<!\\)\\!", "", s)
    s = re.sub(r"(?<!\\)\\[,;: ]|\\q?quad|~", " ", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = s.replace("\\[", "").replace("\\]", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\[dt]binom", r"\\binom", s)
    s, n = re.subn(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|\\circ", "", s)
    if n:
        flags.add("degrees")
    s, n = re.subn(r"\\?%", "", s)
    if n:
        flags.add("percent")
    s = s.replace("{,}", "").replace("\\infty", "\\infty ")
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s+)", "", s)  # "x \in [1, 2]"
    s = re.sub(r"\s+(?:or|and)\s+", ", ", s)
    low = s.lower()
    if low in _WORDS:
        return str(_WORDS[low]), flags
    m = re.fullmatch(r"\(?([A-E])\)?", s)
    if m:
        return m.group(1), flags | {"choice"}
    s = _UNIT_TAIL.sub("", s)
    if re.fullmatch(r"[-+]?\d{1,3}(?: \d{3})+", s):
        s = s.replace(" ", "")  # 1\,000
    m = _NUMERIC_HEAD.match(s)
    if m and not re.search(r"[a-zA-Z]", m.group(1)):
        s = m.group(1)  # "18 dollars", "5 cm^2"
    s = s.strip()
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators, only when the whole answer is one number
    s = _PLAIN_FUNC.sub(lambda m: "\\" + ("infty" if m.group(1) == "inf" else m.group(1)), s)
    return s.strip(), flags
