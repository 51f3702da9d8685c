"""Benchmark: sandbox latency and throughput, side by side with the anchors, in one run.

Anchors: a bare ``subprocess`` running the same program (for the local backend), one ``docker run --rm``
per call (for the docker pool). Also: verifying all 164 HumanEval reference solutions end to end.

    .venv/bin/python perf/sandbox_bench.py [--runs 60] [--workers 2] [--no-docker]

Writes perf/results/sandbox.json and perf/results/sandbox.md (atomically).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.environ.get("EVALGYM_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
RESULTS = os.path.join(ROOT, "perf", "results")
PROGRAM = "print(sum(range(1000)))\n"


def stats(samples: list[float]) -> dict:
    xs = sorted(samples)
    return {"n": len(xs), "p50_ms": 1000 * statistics.median(xs), "p99_ms": 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))],
            "per_s": len(xs) / sum(xs)}


def time_calls(fn, runs: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bare_subprocess() -> None:
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, "main.py"), "w") as f:
            f.write(PROGRAM)
        subprocess.run(["/usr/bin/python3", "main.py"], cwd=d, capture_output=True, timeout=30, env={})
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-docker", action="store_true")
    args = ap.parse_args()
    from evalgym.sandbox import Limits, Program
    from evalgym.sandbox.local import LocalSandbox

    prog, limits = Program({"main.py": PROGRAM}, ["python3", "main.py"]), Limits(timeout_s=30)
    rows: dict[str, dict] = {}
    local = LocalSandbox()
    # interleave the anchor and the backend so machine noise hits both alike
    bare_t, local_t = [], []
    for _ in range(args.runs):
        bare_t += time_calls(bare_subprocess, 1)
        local_t += time_calls(lambda: local.run(prog, limits), 1)
    rows["bare subprocess (anchor)"] = stats(bare_t)
    rows[f"local {'+'.join(local.isolation)}"] = stats(local_t)
    ratio_local = rows[f"local {'+'.join(local.isolation)}"]["p50_ms"] / rows["bare subprocess (anchor)"]["p50_ms"]

    docker_note = "skipped (--no-docker)"
    ratio_docker = None
    if not args.no_docker:
        try:
            from evalgym.sandbox.docker_backend import DockerSandbox

            box = DockerSandbox()
            pool_t = time_calls(lambda: box.run(prog, limits), args.runs)
            rows["docker warm pool"] = stats(pool_t)
            host = box.base_url if hasattr(box, "base_url") else None
            cmd = ["docker"] + (["-H", host] if host else []) + ["run", "--rm", "--network", "none", box.image,
                                                                  "python3", "-c", PROGRAM]
            run_t = time_calls(lambda: subprocess.run(cmd, capture_output=True, timeout=60), max(5, args.runs // 6))
            rows["docker run --rm per call (anchor)"] = stats(run_t)
            ratio_docker = rows["docker warm pool"]["p50_ms"] / rows["docker run --rm per call (anchor)"]["p50_ms"]
            box.close()
            docker_note = "ok"
        except Exception as exc:  # noqa: BLE001 - report, do not hide
            docker_note = f"unavailable: {type(exc).__name__}: {exc}"[:300]

    from evalgym.verifiers.code import grade_rows

    he = [json.loads(line) for line in gzip.open(os.path.join(DATA, "humaneval", "HumanEval.jsonl.gz"), "rt")]
    t0 = time.perf_counter()
    verdicts = grade_rows([{**r, "completion": r["canonical_solution"]} for r in he], workers=args.workers)
    he_s = time.perf_counter() - t0
    result = {"runs": args.runs, "cpus": os.cpu_count(), "program": PROGRAM.strip(), "latency": rows,
              "local_over_bare_p50": ratio_local, "docker_pool_over_docker_run_p50": ratio_docker,
              "docker": docker_note, "humaneval": {"n": len(he), "passed": sum(v.correct for v in verdicts),
                                                   "seconds": he_s, "workers": args.workers, "backend": "local"}}
    os.makedirs(RESULTS, exist_ok=True)
    md = ["# Sandbox benchmark", "", f"{args.runs} runs of `{PROGRAM.strip()}`, {os.cpu_count()} cpus; docker: {docker_note}", "",
          "| backend | p50 ms | p99 ms | runs/s |", "|---|---:|---:|---:|"]
    md += [f"| {k} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['per_s']:.1f} |" for k, v in rows.items()]
    md += ["", f"local / bare subprocess p50: **{ratio_local:.2f}x** (goal <= 1.5x)"]
    if ratio_docker is not None:
        md += [f"docker pool / docker run p50: **{ratio_docker:.3f}x**; pool p50 {rows['docker warm pool']['p50_ms']:.0f} ms (goal <= 100 ms)"]
    md += [f"HumanEval: {result['humaneval']['passed']}/{len(he)} references pass in {he_s:.1f} s "
           f"({args.workers} workers, local backend)"]
    for name, text in (("sandbox.json", json.dumps(result, indent=2)), ("sandbox.md", "\n".join(md) + "\n")):
        tmp = os.path.join(RESULTS, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(RESULTS, name))
    print("\n".join(md))


if __name__ == "__main__":
    main()
