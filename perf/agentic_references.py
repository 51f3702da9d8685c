"""Reference solutions of the agentic envs, graded for real (issue 16's "Measured" list).

- swe-lite: for ``--seeds`` repositories (problem i of the train split, seed 0, and of the eval split), the
  reference patch (the package before the bug) must pass the hidden tests and the unpatched repository must
  fail them, through ``SweLiteVerifier`` (code harness in the one-shot sandbox). Also with larger knobs
  (``modules=4, functions=5, bugs=3``) on a tenth as many.
- code-tools: every reference of MBPP (test split), HumanEval and 200 code-gen problems, submitted as the
  transcript's ``submit`` would (``final`` of the env: the code fenced), must score 1.

    .venv/bin/python perf/agentic_references.py [--seeds 500] [--workers 2]

Writes perf/results/agentic_references.json and .md (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from evalgym.benchmarks.leaderboard import write_text_atomic  # noqa: E402
os.environ.setdefault("EVALGYM_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
RESULTS = os.path.join(ROOT, "perf", "results")


def swe(seeds: int, workers: int, split: str, **knobs) -> dict:
    from evalgym.envs.swe_lite import SweLiteVerifier, snapshot_response
    from evalgym.rollouts import make_env

    env = make_env("swe-lite", split=split, **knobs)
    verifier = SweLiteVerifier(workers=workers)
    t0 = time.perf_counter()
    problems = [env.source.problem(i) for i in range(seeds)]
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fixed = verifier.verify_batch(problems, [p.reference for p in problems])
    broken = verifier.verify_batch(problems, [snapshot_response(p.extra["repo"]) for p in problems])
    bad_ref = [(p.id, v.details.get("reason"), v.error) for p, v in zip(problems, fixed) if v.reward != 1.0]
    bad_unp = [(p.id, v.details.get("reason"), v.error) for p, v in zip(problems, broken) if v.reward != 0.0 or v.error]
    return {"split": split, "knobs": knobs, "repos": seeds, "reference_pass": seeds - len(bad_ref),
            "unpatched_fail": seeds - len(bad_unp), "reference_failures": bad_ref[:10],
            "unpatched_not_failing": bad_unp[:10], "generate_s": gen_s, "grade_s": time.perf_counter() - t0,
            "mutations": sorted({b["mutation"].split(" ")[0] for p in problems for b in p.extra["bugs"]})}


def code_tools(workers: int) -> list[dict]:
    from evalgym.rollouts import make_env

    out = []
    for dataset, split, count in (("mbpp", "test", None), ("humaneval", "test", None), ("code-gen", "test", 200)):
        env = make_env("code-tools", dataset=dataset, split=split)
        env.verifier.workers = workers
        n = env.source.size if count is None else count
        problems = [env.source.problem(i) for i in range(n)]
        from evalgym.agentic.demos import reference_turns

        # the answer the transcript submits, turned into the graded response exactly as the env does
        answers = [json.loads(reference_turns(p)[-1].split("<tool_call>\n", 1)[1].split("\n</tool_call>")[0])
                   ["arguments"]["answer"] for p in problems]
        responses = [env.options.final(env, a, True) for a in answers]
        t0 = time.perf_counter()
        verdicts = env.verifier.verify_batch(problems, responses)
        bad = [(p.id, v.details.get("reason"), v.error) for p, v in zip(problems, verdicts) if v.reward != 1.0]
        out.append({"dataset": dataset, "split": split, "problems": n, "score_1": n - len(bad), "failures": bad[:10],
                    "grade_s": time.perf_counter() - t0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    swe_rows = [swe(args.seeds, args.workers, "train"), swe(max(1, args.seeds // 5), args.workers, "eval"),
                swe(max(1, args.seeds // 10), args.workers, "train", modules=4, functions=5, bugs=3)]
    for r in swe_rows:
        print(json.dumps(r), flush=True)
    code_rows = code_tools(args.workers)
    for r in code_rows:
        print(json.dumps(r), flush=True)
    md = ["# Agentic reference solutions", "", "| swe-lite split | knobs | repos | reference passes | unpatched fails | "
          "grading s |", "|---|---|---:|---:|---:|---:|"]
    md += [f"| {r['split']} | {r['knobs'] or 'default (2 modules x 3 functions, 1 bug)'} | {r['repos']} | "
           f"{r['reference_pass']} | {r['unpatched_fail']} | {r['grade_s']:.0f} |" for r in swe_rows]
    md += ["", "| code-tools dataset | problems | references scoring 1 | grading s |", "|---|---:|---:|---:|"]
    md += [f"| {r['dataset']} ({r['split']}) | {r['problems']} | {r['score_1']} | {r['grade_s']:.0f} |" for r in code_rows]
    md += ["", "Goal: every reference patch passes and every unpatched repo fails; every code-tools reference scores 1."]
    failures = [x for r in swe_rows for x in r["reference_failures"] + r["unpatched_not_failing"]] + \
               [x for r in code_rows for x in r["failures"]]
    if failures:
        md += ["", "Failures (first ten of each row):", ""] + [f"- `{f[0]}`: {f[1]} {f[2] or ''}" for f in failures]
    result = {"swe_lite": swe_rows, "code_tools": code_rows, "workers": args.workers, "cpus": os.cpu_count()}
    os.makedirs(RESULTS, exist_ok=True)
    for name, text in (("agentic_references.json", json.dumps(result, indent=2)),
                       ("agentic_references.md", "\n".join(md) + "\n")):
        write_text_atomic(Path(RESULTS) / name, text)
    print("\n".join(md))


if __name__ == "__main__":
    main()
