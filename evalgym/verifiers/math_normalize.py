"""Normalize an answer's surface form before parsing: unicode, ``$`` and ``\\(\\)``, ``\\left``/``\\right``,
spacing macros, ``\\dfrac``, degrees and percent (kept as flags for the comparer), ``\\text{}`` wrappers,
units after a number (kept as a ``unit:`` flag), e-notation, thousands separators, spelled small numbers,
choice letters, ``x \\in``.

    normalize("$1{,}000$ dollars")  ->  ("1000", {"unit:dollar"})
    normalize("50\\%")             ->  ("50", {"percent"})
    normalize("5 \\text{ m}^2")     ->  ("5", {"unit:m^2"})
    normalize("3x^2")              ->  ("3x^2", set())      # a letter after a number is a variable

Units: a tail after a number is a unit when each word is a known unit (``cm``, ``feet``, ``square
units``, ``mph``...; one-letter ones like ``m`` only after a space) or a plain noun of 3+ letters after a
space ("10 apples"; ``3abc`` is a product); an optional ``^2``/``^3`` or ``square``/``cubic`` gives its power. The comparer ignores units
written on one side only and refuses known units that differ (``m^2`` vs ``m^3``).
"""

from __future__ import annotations

import re
import unicodedata

from evalgym.verifiers.math_extract import braced

_UNICODE = {
    "−": "-", "–": "-", "—": "-", "×": r"\times ", "÷": r"\div ", "·": r"\cdot ", "⋅": r"\cdot ",
    "π": r"\pi ", "√": r"\sqrt", "∞": r"\infty ", "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ",
    "∪": r"\cup ", "±": r"\pm ", "∓": r"\mp ", "°": "", "⁄": "/", "∅": r"\emptyset ", "θ": r"\theta ",
    "α": r"\alpha ", "β": r"\beta ", "’": "'", "\u00a0": " ", "²": "^2", "³": "^3",
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
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,6})(?![\w.])")

# alias -> canonical unit; plurals are found by dropping a final "s"/"es"
_UNITS = {
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "cm": "cm", "centimeter": "cm", "centimetre": "cm",
    "m": "m", "meter": "m", "metre": "m", "km": "km", "kilometer": "km", "kilometre": "km",
    "in": "in", "inch": "in", "ft": "ft", "foot": "ft", "feet": "ft", "yd": "yd", "yard": "yd",
    "mi": "mi", "mile": "mi", "g": "g", "gram": "g", "kg": "kg", "kilogram": "kg", "mg": "mg",
    "milligram": "mg", "lb": "lb", "lbs": "lb", "pound": "lb", "oz": "oz", "ounce": "oz", "ton": "ton",
    "s": "s", "sec": "s", "second": "s", "min": "min", "minute": "min", "h": "h", "hr": "h", "hrs": "h",
    "hour": "h", "day": "day", "week": "week", "month": "month", "year": "year", "yr": "year",
    "l": "L", "liter": "L", "litre": "L", "ml": "mL", "milliliter": "mL", "millilitre": "mL",
    "gallon": "gal", "gal": "gal", "quart": "qt", "pint": "pt", "cup": "cup", "unit": "unit",
    "dollar": "dollar", "cent": "cent", "degree": "deg", "mph": "mi/h", "kph": "km/h",
}
_ONE_LETTER_UNITS = {"m", "g", "s", "h", "l"}  # also common variables: a unit only after a space
_NOT_UNITS = {"and", "or", "the", "is", "are", "of", "to", "for", "with", "than", "then", "so", "not", "but",
              "sin", "cos", "tan", "log", "ln", "exp", "sqrt", "pi", "inf", "infty",
              "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "mod", "cap"}  # "sec": seconds
_UNIT_WORD = r"(?:(?:square|sq\.?|cubic)\s+)?[A-Za-z]+\.?(?:\s*\^\s*\{?\s*[23]\s*\}?)?"
_UNIT_SPLIT = re.compile(rf"(?P<head>.*?(?:\d|\}}|\)|\\pi))(?P<gap>\s*)(?P<tail>{_UNIT_WORD}"
                         rf"(?:\s*(?:/|\bper\b)\s*{_UNIT_WORD}|\s+{_UNIT_WORD}){{0,3}})", re.S)
_UNIT_TOKEN = re.compile(r"(square|sq\.?|cubic)?\s*([A-Za-z]+)\.?(?:\s*\^\s*\{?\s*([23])\s*\}?)?")


def _unit_name(word: str) -> str | None:
    """Canonical unit for a word, ``?`` for a plain noun (ignored when comparing), None: not a unit."""
    low = word.lower()
    if low in _NOT_UNITS:
        return None
    for cand in (low, low[:-1] if low.endswith("s") else "", low[:-2] if low.endswith("es") else ""):
        if cand and cand in _UNITS:
            return _UNITS[cand]
    return "?" if len(word) >= 3 else None


def split_unit(s: str) -> tuple[str, str | None]:
    """``"5 m^2"`` -> ``("5", "m^2")``; ``"10 apples"`` -> ``("10", "?")``; no unit tail -> ``(s, None)``."""
    m = _UNIT_SPLIT.fullmatch(s.strip())
    if not m:
        return s, None
    parts = []
    for piece in re.split(r"\s*(?:/|\bper\b)\s*", m.group("tail")):
        names = []
        for tok in _UNIT_TOKEN.finditer(piece):
            prefix, word, power = tok.groups()
            name = _unit_name(word)
            glued = not m.group("gap") and not parts and not names  # "5m", "3abc": a product, not a unit
            if name is None or (glued and (name == "?" or word.lower() in _ONE_LETTER_UNITS)):
                return s, None
            power = "3" if prefix == "cubic" else "2" if prefix else power
            names.append(name + (f"^{power}" if power else ""))
        parts.append(" ".join(names))
    unit = "/".join(parts)
    return m.group("head"), ("?" if "?" in unit else unit)


def _unwrap_text(s: str) -> str:
    """``\\text{ cm}`` -> `` cm``; a word right after a number stays a separate word (``5\\text{m}``)."""
    for _ in range(50):
        m = _TEXT_CMDS.search(s)
        if not m:
            return s
        end = braced(s, m.end() - 1)
        if end < 0:
            return s[: m.start()] + s[m.end():]
        inner = s[m.end(): end]
        if m.start() > 0 and s[m.start() - 1].isdigit() and inner[:1].isalpha():
            inner = " " + inner
        s = s[: m.start()] + inner + s[end + 1:]
    return s


def normalize(raw: str) -> tuple[str, set[str]]:
    """Canonical surface form of an answer, and flags (``percent``, ``degrees``) for the comparer."""
    flags: set[str] = set()
    s = raw.replace("\x00", "").replace("²", "^2").replace("³", "^3")
    s = unicodedata.normalize("NFKC", s)
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
    s, unit = split_unit(s)
    if unit is not None:
        flags.add(f"unit:{unit}")
    if re.fullmatch(r"[-+]?\d{1,3}(?: \d{3})+", s.strip()):
        s = s.replace(" ", "")  # 1\\,000
    s = _E_NOTATION.sub(lambda m: f"{m.group(1)}\\times 10^{{{m.group(2)}}}", s)
    s = s.strip()
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators, only when the whole answer is one number
    s = _PLAIN_FUNC.sub(lambda m: "\\" + ("infty" if m.group(1) == "inf" else m.group(1)), s)
    return s.strip(), flags
