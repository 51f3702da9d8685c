"""Decontamination at scale: 100k generated rows checked against every local eval set, with planted
contaminated rows (eval problems disguised only in whitespace, case and number formatting) that must all be
caught, and the false drops on clean rows reported.

The index: every registered env's evaluation split (dataset test splits in full; the first 500 distinct
problems of each procedural eval split, as the evaluation driver scores them) and every lm-eval task with
local data (GSM8K and its variants, IFEval) — ``EvalIndex.build()``, the synth pipeline's default.

Rows (question + one response each):

- clean: GSM8K train (question, worked answer), MATH train (problem, solution), MBPP train, and procedural
  training-split problems with their reference solutions (arithmetic with 2 and 3 digits, linear equations,
  fractions, countdown) up to ``--rows``;
- planted: ``--planted`` eval problems drawn from every source in the index, each disguised (random case,
  spacing and line breaks, thousands separators, ``5`` as ``5.0``, ``0.5`` as ``.5``, small numbers spelled
  out), half of them wrapped in extra words ("Here is a problem: ... Answer it."); plus procedural eval
  problems of larger knobs than the index holds (three-digit arithmetic), given with their env and content hash
  as a synth row carries them, caught by the eval-split hash rule.

The check runs in one process (``--workers 2`` forks two over the index, copy-on-write). Goal: 100k rows in
<= 60 s on 2 cores, every planted row caught.

    python perf/decontam_bench.py [--rows 100000] [--planted 400] [--workers 1]

Results: perf/results/decontam.json and decontam.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
SPELL = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def disguise(text: str, rng: random.Random) -> str:
    """The same problem in other whitespace, case and number formatting."""
    def number(m: re.Match) -> str:
        tok = m.group(0)
        r = rng.random()
        if "." not in tok and len(tok) >= 4 and r < 0.5:
            return f"{int(tok):,}"
        if tok.startswith("0.") and r < 0.5:
            return tok[1:]
        if "." not in tok and r < 0.25:
            return tok + ".0"
        if tok in SPELL and r < 0.6 and m.end() < len(m.string) and not m.string[m.end()].isalpha():
            return SPELL[tok]          # a standalone number only: "3x" stays "3x"
        return tok

    text = re.sub(r"(?<![\d.,\w])\d+(?:\.\d+)?(?![\d,])", number, text)
    text = {0: str.upper, 1: str.lower, 2: str.title, 3: lambda t: t}[rng.randrange(4)](text)
    words = text.split()
    return "".join(w + rng.choice([" ", "  ", "\n", " \t "]) for w in words).strip()


def clean_rows(n: int, data_dir: str) -> list[tuple[str, str, str]]:
    """(source, question, response) from training splits only."""
    from evalgym.data import load_rows
    from evalgym.rollouts import make_env

    out = [("gsm8k/train", r["question"], r["answer"]) for r in load_rows("gsm8k/train.jsonl", data_dir_=data_dir)]
    out += [("math/train", r["problem"], r["solution"]) for r in load_rows("math/train.jsonl", data_dir_=data_dir)]
    mbpp = make_env("mbpp", split="train", data_dir=data_dir).source
    out += [("mbpp/train", mbpp.problem(i).prompt_text, mbpp.problem(i).reference) for i in range(mbpp.size)]
    gens = [("arithmetic", {"digits": 2, "terms": 3}), ("arithmetic", {"digits": 3}), ("linear-equations", {"coef_max": 20}),
            ("fractions", {"den_max": 12}), ("countdown-gen", {})]
    k = 0
    srcs = [make_env(name, split="train", seed=1000 + j, **knobs).source for j, (name, knobs) in enumerate(gens)]
    while len(out) < n:
        src = srcs[k % len(srcs)]
        p = src.problem(k // len(srcs))
        out.append((f"{src.info.name}/train", p.prompt_text, p.reference))
        k += 1
    return out[:n]


def planted_rows(index, count: int, rng: random.Random) -> list[tuple[str, str, str, str | None, str | None]]:
    """(planted source, question, response, hash, env_id): disguised eval docs from every indexed source, and
    eval problems of larger knobs than the index holds (caught by hash)."""
    from evalgym.rollouts import make_env
    from evalgym.synth.problems import canonical_for
    from evalgym.types import canonical_hash

    by_source: dict[str, list] = {}
    for d in index.docs:
        by_source.setdefault(d.source, []).append(d)
    per = max(1, count // (2 * len(by_source) + 1))
    out = []
    for source, docs in sorted(by_source.items()):
        for k, d in enumerate(rng.sample(docs, min(2 * per, len(docs)))):
            q = disguise(d.text, rng)
            kind = source
            if k % 2:               # half of them also wrapped in other words: beyond the goal, reported apart
                q, kind = f"Here is a problem: {q} Answer it.", f"{source} [wrapped]"
            out.append((kind, q, "Let me think. The answer is 42.", None, None))
    src = make_env("arithmetic", split="eval", digits=3, terms=2).source
    for i in range(per):
        p = src.problem(i)
        question = p.prompt_text[: -len(src.instruction)].strip()
        canonical, own = canonical_for(p.env_id, disguise(question, rng).replace("COMPUTE", "Compute"), p.answer)
        out.append(("env:evalgym/arithmetic-v1/eval (digits=3, by hash)", question.lower(), p.reference,
                    canonical_hash(canonical) if own else None, p.env_id))
    return out


def check(index, rows, workers: int) -> list[dict]:
    if workers <= 1:
        return index.check(rows)
    import multiprocessing as mp

    global _INDEX
    _INDEX = index
    chunks = [rows[i::workers] for i in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_check_chunk, chunks)
    return [h for part in parts for h in part]


_INDEX = None


def _check_chunk(rows):
    return _INDEX.check(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--planted", type=int, default=400)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    data_dir = os.environ.get("EVALGYM_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    os.environ["EVALGYM_DATA_DIR"] = data_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from evalgym.synth.decontam import ContamRow, EvalIndex

    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    index = EvalIndex.build(data_dir=data_dir)
    build_s = time.perf_counter() - t0
    planted = planted_rows(index, args.planted, rng)
    clean = clean_rows(args.rows - len(planted), data_dir)
    rows = [ContamRow(f"c{i}", q, (r,)) for i, (_, q, r) in enumerate(clean)]
    rows += [ContamRow(f"p{i}", q, (r,), h, e, h is not None) for i, (_, q, r, h, e) in enumerate(planted)]
    rng.shuffle(rows)
    result = {"meta": {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpus": os.cpu_count(),
                       "command": "python perf/decontam_bench.py " + " ".join(sys.argv[1:]), "workers": args.workers},
              "index": index.summary(), "rows": len(rows), "clean_rows": len(clean), "planted_rows": len(planted),
              "build_s": round(build_s, 1), "by_coverage": {}}
    clean_src = {f"c{i}": s for i, (s, _q, _r) in enumerate(clean)}
    for coverage in (0.5, 0.0):         # the default, and lm-eval's any-shared-window rule
        index.min_coverage = coverage
        t0 = time.perf_counter()
        hits = check(index, rows, args.workers)
        check_s = time.perf_counter() - t0
        hit_ids = {h["row"]: h for h in hits}
        by_source: dict[str, list[int]] = {}
        missed = {"disguised": [], "wrapped": []}
        for i, (src, q, *_r) in enumerate(planted):
            caught = f"p{i}" in hit_ids
            by_source.setdefault(src, [0, 0])[0] += caught
            by_source[src][1] += 1
            if not caught:
                missed["wrapped" if src.endswith("[wrapped]") else "disguised"].append((src, q[:200]))
        n_wrapped = sum(src.endswith("[wrapped]") for src, *_r in planted)
        false = [h for h in hits if h["row"].startswith("c")]
        false_by: dict[str, int] = {}
        for h in false:
            false_by[clean_src[h["row"]]] = false_by.get(clean_src[h["row"]], 0) + 1
        reasons: dict[str, int] = {}
        for h in hits:
            if h["row"].startswith("p"):
                reasons[h["reason"]] = reasons.get(h["reason"], 0) + 1
        result["by_coverage"][str(coverage)] = {
            "check_s": round(check_s, 1), "rows_per_s": round(len(rows) / check_s),
            "disguised_caught": len(planted) - n_wrapped - len(missed["disguised"]), "disguised": len(planted) - n_wrapped,
            "wrapped_caught": n_wrapped - len(missed["wrapped"]), "wrapped": n_wrapped, "missed": missed,
            "planted_by_source": by_source, "planted_by_reason": reasons, "false_drops": len(false),
            "false_drop_rate": round(len(false) / len(clean), 6), "false_drops_by_source": false_by,
            "false_drop_examples": [{k: h.get(k) for k in ("reason", "source", "doc", "evidence", "coverage", "question")}
                                    for h in false[:12]]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decontam.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    (out / "decontam.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    m = r["meta"]
    d = r["by_coverage"]["0.5"]
    a = r["by_coverage"]["0.0"]
    lines = ["# Decontamination: 100k generated rows against every local eval set", "",
             f"Measured {m['when']} on {m['machine']} ({m['cpus']} CPUs, shared with other agents' jobs), "
             f"{m['workers']} worker process(es). Command: `{m['command']}`.", "",
             f"- index: {r['index']['docs']} eval docs from {len(r['index']['sources'])} sources, "
             f"{r['index']['windows']} {r['index']['n']}-token windows ({r['index']['template_windows']} template windows "
             f"left out), {r['index']['short_docs']} short docs; built in {r['build_s']} s (once per process)",
             f"- check (default: an n-gram hit needs 0.5 of the eval doc's windows): {r['rows']} rows "
             f"({r['clean_rows']} clean + {r['planted_rows']} planted) in **{d['check_s']} s** ({d['rows_per_s']} rows/s); "
             "goal <= 60 s",
             f"- planted, disguised in whitespace / case / number formatting only: **{d['disguised_caught']} / "
             f"{d['disguised']} caught** (goal: all)",
             f"- planted, disguised and wrapped in other words (beyond the goal): {d['wrapped_caught']} / {d['wrapped']} "
             "caught (short procedural problems inside other words are not: by design, see evalgym/synth/decontam.py)",
             f"- false drops on clean rows: **{d['false_drops']}** of {r['clean_rows']} ({100 * d['false_drop_rate']:.3f} %), "
             f"by source: {d['false_drops_by_source']} — read the examples below: most are MATH training problems "
             "that are near-copies of MATH test problems (the same problem, often other numbers), which a "
             "decontaminated training set should not hold either",
             f"- lm-eval's rule (any one shared 13-gram): disguised {a['disguised_caught']} / {a['disguised']}, wrapped "
             f"{a['wrapped_caught']} / {a['wrapped']}, false drops **{a['false_drops']}** ({100 * a['false_drop_rate']:.2f} %), "
             f"by source: {a['false_drops_by_source']}; {a['check_s']} s", "",
             "## Planted rows by eval source (default rule)", "", "| eval source | caught / planted |", "|---|---|"]
    lines += [f"| {s} | {c} / {n} |" for s, (c, n) in sorted(d["planted_by_source"].items())]
    for name, res in (("default rule", d), ("lm-eval's any-window rule", a)):
        lines += ["", f"## False drops, {name} (examples)", "", "| reason | eval source | doc | coverage | shared text | clean row |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {h['reason']} | {h['source']} | {h['doc']} | {h.get('coverage')} | {h['evidence'][:70]} | "
                  f"{h['question'][:90].replace('|', '/').replace(chr(10), ' ')} |" for h in res["false_drop_examples"]]
    for kind in ("disguised", "wrapped"):
        if d["missed"][kind]:
            lines += ["", f"## Missed planted rows ({kind}), default rule", ""]
            lines += [f"- {s}: {q!r}" for s, q in d["missed"][kind][:25]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
