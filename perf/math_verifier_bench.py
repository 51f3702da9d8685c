"""Benchmark: our math grader (``evalgym.verifiers.math.MathVerifier``) against Math-Verify, side by side.

Datasets, each labelled (expected correct or not):
  table           the hand-labelled rows of ``tests/verifiers/math_cases.py`` (written with the grader);
  tune            ``tests/verifiers/math_cases_tune.py``: issue 15's table, written before the v2 changes and
                  looked at while tuning them;
  unseen          ``tests/verifiers/math_cases_unseen.py``: written and committed with ``tune``, before the v2
                  changes, and not looked at while tuning (its first score is the one to report);
  math500_equiv   each MATH-500 gold answer vs a value-preserving reformatting of itself, in a sentence;
  math500_wrong   each MATH-500 gold answer vs a deterministic perturbation (a number +1, a tuple swapped).
Rows of ``tune``/``unseen`` that need the question carry it: ours gets it (``check_batch`` triples),
Math-Verify has no way to take one. Both graders run with the same number of worker processes (ours:
``MathVerifier(workers=N)``; Math-Verify: ``multiprocessing.Pool(N)``), pools warmed before timing.
Reported per dataset: accuracy vs the labels, false positives (graded correct, labelled wrong) and checks/s
(wall clock over the dataset). ``--ref COMMIT`` adds the accuracy of our grader as it was at COMMIT (run
in-process from ``git archive``; no throughput). On ``HOSTILE`` predictions: the slowest case for each
grader (Math-Verify runs each case in its own subprocess under a hard cap, default 30 s).

Writes perf/results/math_verifier.json and perf/results/math_verifier.md (ratios ours / Math-Verify).

    .venv/bin/python perf/math_verifier_bench.py [--workers 2] [--limit N] [--hostile-cap 30] [--ref COMMIT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATH500 = os.path.join(os.environ.get("EVALGYM_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data"),
                       "math500", "test.jsonl")
RESULTS = os.path.join(ROOT, "perf", "results")
BUDGET_S = 1.0

# ----------------------------------------------------------------------------------------- reformatting

_SIMPLE_FRAC = re.compile(
    r"(?<![\w})\]])(?<!\d\s)\\frac\{(\d+|[a-zA-Z])\}\{(\d+|[a-zA-Z])\}"
    r"(?=\s*(?:$|[,)\]&+\-=]|\\right|\\\\|\\\}|\\text|\\mbox))")
_THOUSANDS = re.compile(r"(\\\$)?(\d{1,3}(?:,(?:\\!)?\s?\d{3})+)")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _closing(s: str, i: int) -> int:
    """Index of the bracket closing the one at ``s[i]`` (any of ([{ vs )]}), or -1."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] in "([{" and (j == 0 or s[j - 1] != "\\" or s[j] == "{"):
            depth += 1
        elif s[j] in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_top(s: str) -> list[str]:
    """Split on commas not inside any bracket."""
    parts, depth, start = [], 0, 0
    for j, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:j])
            start = j + 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _single_group(g: str) -> bool:
    return len(g) >= 2 and g[0] in "([" and g[-1] in ")]" and _closing(g, 0) == len(g) - 1


def reformat(gold: str, idx: int) -> str:
    """A response stating the same answer as ``gold`` in another form (deterministic in ``idx``)."""
    g = gold.strip().replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    m = _THOUSANDS.fullmatch(g)
    if m:  # 10,\!080 -> 10080
        g = (m.group(1) or "") + re.sub(r"[,\\!\s]", "", m.group(2))
    if idx % 2 == 0:
        g = _SIMPLE_FRAC.sub(r"\1/\2", g)
    g = re.sub(r"\^\\circ", r"^{\\circ}", g)
    if r"\left(" in g or r"\left[" in g:
        g = re.sub(r"\\left\s*([(\[])", r"\1", g)
        g = re.sub(r"\\right\s*([)\]])", r"\1", g)
    elif _single_group(g) and idx % 3 == 0:
        g = r"\left" + g[0] + g[1:-1] + r"\right" + g[-1]
    if g.startswith(r"\{") and g.endswith(r"\}"):
        g = r"\{" + ", ".join(reversed(_split_top(g[2:-2]))) + r"\}"
    if idx % 2 == 1:
        g = re.sub(r"\s*\+\s*", " + ", g)
        g = re.sub(r"\s*=\s*", " = ", g)
    else:
        g = re.sub(r"\s*\+\s*", "+", g)
    if _PLAIN_NUMBER.fullmatch(g) and idx % 3 == 1:
        g = "x = " + g
    template = ["The answer is ${}$.", r"So we get $\boxed{{{}}}$.",
                r"Therefore, the final answer is $\boxed{{{}}}$.", "After simplifying, the answer is ${}$."][idx % 4]
    return template.format(g)


_WORDS = {"Evelyn": "Navin", "Navin": "Evelyn", "east": "west", "ellipse": "hyperbola", "even": "odd"}


def perturb(gold: str, idx: int) -> str:
    """A wrong answer close to ``gold`` (deterministic in ``idx``), bare as a model would box it."""
    g = gold.strip()
    g = re.sub(r"\\frac\s*(\d)(\d)", r"\\frac{\1}{\2}", g)  # \frac 34 -> \frac{3}{4}
    g = re.sub(r"\\frac\s*(\d)\{", r"\\frac{\1}{", g)
    g = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", g)
    m = _THOUSANDS.fullmatch(g)
    if m:
        return (m.group(1) or "") + str(int(re.sub(r"[,\\!\s]", "", m.group(2))) + 1)
    m = re.fullmatch(r"(\d+)_(\{?\d+\}?)", g)  # a numeral in a base: keep its digits valid
    if m:
        n = m.group(1)
        last = int(n[-1])
        return n[:-1] + str(last - 1 if last > 0 else last + 1) + "_" + m.group(2)
    m = re.fullmatch(r"\\text\{\(([A-E])\)\}", g)
    if m:
        return r"\text{(" + "ABCDEA"["ABCDE".index(m.group(1)) + 1] + ")}"
    m = re.fullmatch(r"\\text\{([A-Za-z]+)\}", g)
    if m:
        return r"\text{" + _WORDS.get(m.group(1), m.group(1)[::-1] + "x") + "}"
    inner = g
    lo, hi = "", ""
    if g.startswith(r"\left(") and g.endswith(r"\right)"):
        lo, hi, inner = r"\left(", r"\right)", g[6:-7]
    elif _single_group(g) and g[0] == "(" and g[-1] == ")":
        lo, hi, inner = "(", ")", g[1:-1]
    if lo and r"\infty" not in inner and idx % 2 == 0:
        parts = _split_top(inner)
        if len(parts) >= 2 and parts[0] != parts[1]:
            parts[0], parts[1] = parts[1], parts[0]
            return lo + ", ".join(parts) + hi
    m = re.search(r"\d+\.\d+|\.\d+|\d+", g)
    if m:
        s = m.group(0)
        new = str(Decimal(s) + 1) if "." in s else str(int(s) + 1)
        return g[: m.start()] + new + g[m.end():]
    if g == r"\pi":
        return r"2\pi"
    return g + " + 1"


# ------------------------------------------------------------------------------------------- datasets


HAND_WRITTEN = ("table", "tune", "unseen")  # our own rows: mistakes may be quoted in the results


def load_datasets(limit: int | None) -> dict[str, list[tuple[str, str, bool, str]]]:
    """Rows ``(gold, pred, expected, question)``."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "verifiers"))
    import math_cases_tune
    import math_cases_unseen
    from math_cases import CASES

    rows = [json.loads(line) for line in open(MATH500, encoding="utf-8") if line.strip()]
    if limit:
        rows = rows[:limit]
    golds = [r["answer"] for r in rows]
    cut = (lambda xs: xs[:limit]) if limit else (lambda xs: xs)
    return {
        "table": [(g, r, e, "") for g, r, e, _ in cut(CASES)],
        "tune": [(g, r, e, q) for g, r, e, _, q in cut(math_cases_tune.rows())],
        "unseen": [(g, r, e, q) for g, r, e, _, q in cut(math_cases_unseen.rows())],
        "math500_equiv": [(g, reformat(g, i), True, "") for i, g in enumerate(golds)],
        "math500_wrong": [(g, perturb(g, i), False, "") for i, g in enumerate(golds)],
    }


# ------------------------------------------------------------------------------------------ Math-Verify


def _mv_init() -> None:
    import math_verify  # noqa: F401  (import once per worker, before timing)


def mv_check(gold: str, pred: str, wrap: bool = False) -> tuple[bool, str | None]:
    """Math-Verify's judgement; any exception counts as incorrect (returned as an error string).

    ``wrap``: put a pred with no ``$`` and no ``\\boxed`` inside ``$...$`` first: Math-Verify's default
    ``parse`` only reads LaTeX between delimiters, so bare LaTeX answers (``\\sqrt{12}``) would be
    judged unparsable; the wrapped variant shows what it does when given that help.
    """
    try:
        from math_verify import parse, verify

        if wrap and "$" not in pred and "\\boxed" not in pred:
            pred = "$" + pred + "$"
        return bool(verify(parse("$" + gold + "$"), parse(pred))), None
    except BaseException as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"[:200]


def _mv_star(args: tuple) -> tuple[bool, str | None]:
    return mv_check(*args)


def _mv_one_child() -> None:
    """Subprocess mode: read [gold, pred] as JSON on stdin, print {seconds, correct, error}."""
    gold, pred = json.loads(sys.stdin.read())
    _mv_init()
    t0 = time.perf_counter()
    correct, error = mv_check(gold, pred)
    print(json.dumps({"seconds": time.perf_counter() - t0, "correct": correct, "error": error}))


def mv_hostile(gold: str, pred: str, cap_s: float) -> dict:
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--mv-one"], input=json.dumps([gold, pred]),
                             capture_output=True, text=True, timeout=cap_s)
    except subprocess.TimeoutExpired:
        return {"seconds": cap_s, "wall_s": time.perf_counter() - t0, "killed": True, "correct": False}
    wall = time.perf_counter() - t0
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):  # the child died (e.g. out of memory, recursion in C)
        return {"seconds": wall, "wall_s": wall, "killed": False, "crashed": True, "correct": False,
                "error": out.stderr[-300:]}
    return {**res, "wall_s": wall, "killed": False}


# -------------------------------------------------------------------------------------------- running


def _score(results: list[bool], labels: list[bool]) -> float:
    return sum(r == e for r, e in zip(results, labels)) / max(1, len(labels))


def _false_positives(results: list[bool], labels: list[bool]) -> int:
    return sum(r and not e for r, e in zip(results, labels))


def run_mv(pool, data: list[tuple[str, str, bool, str]], wrap: bool = False) -> dict:
    t0 = time.perf_counter()
    out = pool.map(_mv_star, [(g, p, wrap) for g, p, _, _ in data], chunksize=1)
    wall = time.perf_counter() - t0
    labels, got = [e for _, _, e, _ in data], [c for c, _ in out]
    return {"accuracy": _score(got, labels), "false_positives": _false_positives(got, labels), "wall_s": wall,
            "checks_per_s": len(data) / wall, "errors": sum(err is not None for _, err in out),
            "mistake_idx": [i for i, (c, e) in enumerate(zip(got, labels)) if c != e]}


def run_ours(verifier, data: list[tuple[str, str, bool, str]]) -> dict:
    t0 = time.perf_counter()
    out = verifier.check_batch([(g, p, q) for g, p, _, q in data])
    wall = time.perf_counter() - t0
    labels, got = [e for _, _, e, _ in data], [v.correct for v in out]
    return {"accuracy": _score(got, labels), "false_positives": _false_positives(got, labels), "wall_s": wall,
            "checks_per_s": len(data) / wall,
            "errors": sum(v.error is not None for v in out), "timeouts": sum(v.error == "timeout" for v in out),
            "max_elapsed_s": max((v.elapsed_s for v in out), default=0.0),
            "slowest": sorted(((round(v.elapsed_s, 4), i) for i, v in enumerate(out)), reverse=True)[:5],
            "mistake_idx": [i for i, (c, e) in enumerate(zip(got, labels)) if c != e],
            "mistake_info": [{"error": v.error, "extracted": str(dict(v.details).get("extracted"))[:200],
                              "reason": str(dict(v.details).get("reason"))[:200]}
                             for v, e in zip(out, labels) if v.correct != e]}


_REF_SCRIPT = r"""
import inspect, json, sys
from evalgym.verifiers.math import grade
data = json.load(sys.stdin)
takes_q = len(inspect.signature(grade).parameters) >= 3
out = {}
for name, rows in data.items():
    got = [bool((grade(g, p, q) if takes_q else grade(g, p))["correct"]) for g, p, _, q in rows]
    out[name] = got
print(json.dumps(out))
"""


def run_ref(ref: str, datasets: dict) -> dict:
    """Accuracy and false positives of our grader as it was at git ``ref`` (in-process, one core)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "evalgym"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        out = subprocess.run([sys.executable, "-c", _REF_SCRIPT], input=json.dumps(datasets), capture_output=True,
                             text=True, env=env, cwd=tmp)
    if out.returncode != 0:
        raise RuntimeError(f"grader at {ref} failed: {out.stderr[-1000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    res = {}
    for name, rows in datasets.items():
        labels = [e for _, _, e, _ in rows]
        res[name] = {"accuracy": _score(got[name], labels), "false_positives": _false_positives(got[name], labels),
                     "mistake_idx": [i for i, (c, e) in enumerate(zip(got[name], labels)) if c != e]}
    return res


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def render_markdown(res: dict) -> str:
    ref = res["meta"].get("ref")
    lines = [f"# Math grader benchmark: ours (v{res['meta']['ours_version']}) vs Math-Verify "
             f"{res['meta']['math_verify_version']}", "",
             f"workers={res['meta']['workers']}, budget={BUDGET_S}s, cpus={res['meta']['cpu_count']}, "
             f"ours={'available' if res['meta']['ours_available'] else 'NOT AVAILABLE: ' + res['meta']['ours_error']}, "
             f"{res['meta']['time']}",
             "", "MV = `verify(parse('$'+gold+'$'), parse(pred))`; MV$ = the same with a bare pred put in `$...$`.",
             "FP = false positives (graded correct, labelled wrong). Ratios are ours / MV. The `unseen` table's "
             "one-time score (before any change made after seeing it) is in `math_verifier_unseen_once.md`; "
             "the rows here are the latest run."
             + (f" `ref` = our grader at `{ref}` (before the issue-15 changes), in-process." if ref else ""), "",
             "| dataset | n | acc ours | FP ours | acc MV | FP MV | acc MV$ | FP MV$ |" + (" acc ref | FP ref |" if ref else "")
             + " acc ratio | checks/s ours | checks/s MV | speed ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ref else "") + "---:|---:|---:|---:|"]
    for name, d in res["datasets"].items():
        o, m, w = d.get("ours") or {}, d["math_verify"], d["math_verify_wrapped"]
        r = (d.get("ref") or {}) if ref else None
        lines.append(f"| {name} | {d['n']} | {_fmt(o.get('accuracy'))} | {_fmt(o.get('false_positives'))} | "
                     f"{_fmt(m['accuracy'])} | {m['false_positives']} | {_fmt(w['accuracy'])} | {w['false_positives']} | "
                     + (f"{_fmt(r.get('accuracy'))} | {_fmt(r.get('false_positives'))} | " if ref else "")
                     + f"{_fmt(_ratio(o.get('accuracy'), m['accuracy']), 2)} | {_fmt(o.get('checks_per_s'), 1)} | "
                     f"{_fmt(m['checks_per_s'], 1)} | {_fmt(_ratio(o.get('checks_per_s'), m['checks_per_s']), 2)} |")
    h = res["hostile"]
    lines += ["", "| hostile (n={}) | slowest s ours | slowest s MV | ratio | ours timeouts | MV killed at cap |"
              .format(h["n"]), "|---|---:|---:|---:|---:|---:|",
              f"| slowest case | {_fmt(h['ours_max_s'])} | {_fmt(h['mv_max_s'])} | "
              f"{_fmt(_ratio(h['ours_max_s'], h['mv_max_s']), 3)} | {_fmt(h['ours_timeouts'])} | {h['mv_killed']} |"]
    for name in HAND_WRITTEN:
        d = res["datasets"].get(name, {})
        wrong = (d.get("ours") or {}).get("mistakes")
        if wrong:
            lines += ["", f"Our mistakes on `{name}` (gold, response, label):", ""]
            lines += [f"- `{g!r}` / `{p[:120]!r}` / {e}" for g, p, e, *_ in wrong]
    return "\n".join(lines) + "\n"


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N MATH-500 rows (and table rows)")
    ap.add_argument("--hostile-cap", type=float, default=30.0, help="hard cap per Math-Verify hostile case (s)")
    ap.add_argument("--datasets", default=None, help="comma-separated subset of: table,tune,unseen,math500_equiv,"
                    "math500_wrong (default: all)")
    ap.add_argument("--ref", default=None, help="also score our grader as it was at this git commit (accuracy only)")
    ap.add_argument("--mv-one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mv_one:
        return _mv_one_child()

    import multiprocessing as mp

    import math_verify

    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests", "verifiers"))
    from math_cases import HOSTILE

    datasets = load_datasets(args.limit)
    if args.datasets:
        unknown = set(args.datasets.split(",")) - set(datasets)
        if unknown:
            ap.error(f"--datasets: unknown {sorted(unknown)}; known: {sorted(datasets)}")
        datasets = {k: v for k, v in datasets.items() if k in args.datasets.split(",")}
    ours_error = ""
    try:
        from evalgym.verifiers.math import VERSION, MathVerifier
        verifier = MathVerifier(budget_s=BUDGET_S, workers=args.workers)
    except Exception as exc:  # noqa: BLE001 - the grader may be unfinished; still benchmark Math-Verify
        verifier, ours_error = None, f"{type(exc).__name__}: {exc}"[:300]
        print(f"[bench] our grader unavailable: {ours_error}", file=sys.stderr)

    warm = [("5", r"\boxed{5}"), (r"\frac12", "0.5"), ("(1,2)", "(2,1)"), ("x^2", "x*x")] * args.workers
    res: dict = {"meta": {"workers": args.workers, "limit": args.limit, "budget_s": BUDGET_S,
                          "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                          "math_verify_version": getattr(math_verify, "__version__", "0.9.0"),
                          "ours_available": verifier is not None, "ours_error": ours_error,
                          "ours_version": VERSION if verifier is not None else None, "ref": args.ref,
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, "datasets": {}}
    with mp.get_context("fork").Pool(args.workers, initializer=_mv_init) as pool:
        pool.map(_mv_star, warm, chunksize=1)
        if verifier is not None:
            verifier.check_batch(warm)
        for name, data in datasets.items():
            print(f"[bench] {name}: {len(data)} checks", file=sys.stderr)
            entry = {"n": len(data), "math_verify": run_mv(pool, data),  # type: ignore[dict-item]
                     "math_verify_wrapped": run_mv(pool, data, wrap=True), "ours": None}
            if verifier is not None:
                try:
                    entry["ours"] = run_ours(verifier, data)
                except Exception as exc:  # noqa: BLE001
                    entry["ours_error"] = f"{type(exc).__name__}: {exc}"[:300]
            for side in ("math_verify", "math_verify_wrapped", "ours"):
                if not entry.get(side):
                    continue
                if name in HAND_WRITTEN:  # our own hand-written rows may be quoted; MATH-500 rows only by index
                    entry[side]["mistakes"] = [list(data[i]) for i in entry[side]["mistake_idx"]]
                else:  # shown on the terminal, never written into the repo
                    for i in entry[side]["mistake_idx"][:40]:
                        print(f"[bench] {name} {side} wrong #{i}: {data[i]!r}", file=sys.stderr)
                    for info in entry[side].get("mistake_info", []):
                        info.pop("extracted", None)
            res["datasets"][name] = entry
    if args.ref:
        print(f"[bench] our grader at {args.ref}", file=sys.stderr)
        for name, ref in run_ref(args.ref, datasets).items():
            if name in HAND_WRITTEN:
                ref["mistakes"] = [list(datasets[name][i]) for i in ref["mistake_idx"]]
            res["datasets"][name]["ref"] = ref

    print(f"[bench] hostile: {len(HOSTILE)} cases", file=sys.stderr)
    hostile = {"n": len(HOSTILE), "gold": "5", "cap_s": args.hostile_cap, "ours_max_s": None, "ours_timeouts": None}
    if verifier is not None:
        try:
            hv = verifier.check_batch([("5", h) for h in HOSTILE])
            hostile["ours_max_s"] = max(v.elapsed_s for v in hv)
            hostile["ours_timeouts"] = sum(v.error == "timeout" for v in hv)
            hostile["ours_per_case_s"] = [round(v.elapsed_s, 4) for v in hv]
        except Exception as exc:  # noqa: BLE001
            hostile["ours_error"] = f"{type(exc).__name__}: {exc}"[:300]
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        mv = list(ex.map(lambda h: mv_hostile("5", h, args.hostile_cap), HOSTILE))
    hostile["mv_max_s"] = max(r["seconds"] for r in mv)
    hostile["mv_killed"] = sum(r.get("killed", False) for r in mv)
    hostile["mv_per_case_s"] = [round(r["seconds"], 4) for r in mv]
    hostile["mv_per_case_wall_s"] = [round(r["wall_s"], 4) for r in mv]
    hostile["case_heads"] = [repr(h[:40]) for h in HOSTILE]
    hostile["mv_errors"] = {i: r.get("error") for i, r in enumerate(mv) if r.get("error")}
    res["hostile"] = hostile

    os.makedirs(RESULTS, exist_ok=True)
    md = render_markdown(res)
    _atomic_write(os.path.join(RESULTS, "math_verifier.json"), json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    _atomic_write(os.path.join(RESULTS, "math_verifier.md"), md)
    print(md)


if __name__ == "__main__":
    main()
