"""Benchmark: agentic tool calls and episodes, local and docker, against the one-shot sandbox, in one run.

For each backend and each concurrency (1, 8, 32 sessions at once, one thread each):
- tool-call latency: every session makes ``--calls`` ``python`` calls of the same program, then as many
  ``shell`` calls running it with python3 (a fork and two execs); the anchor is the one-shot sandbox
  (``get_sandbox(backend).run``) running that program, as many at once;
- episodes/s: ``python-math`` episodes (the reference transcript: a python call, then submit; graded by the
  math verifier) through the async runner with that many in flight, a fresh session (box) each; the anchor
  does the same episode's work the one-shot way: one one-shot run per tool call, then the same grading.
  Every episode must score 1: a failure is counted.

    .venv/bin/python perf/agentic_bench.py [--calls 20] [--episodes 64] [--concurrency 1,8,32] [--no-docker]
        [--backends local,docker] [--merge]

Writes perf/results/agentic.json and perf/results/agentic.md (atomically) after every row, so a run that is
stopped keeps the rows it finished; ``--merge`` keeps the rows of the existing results that this run does not
redo (same backend and sessions), so the levels can be run in separate invocations.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from evalgym.benchmarks.leaderboard import write_text_atomic  # noqa: E402
os.environ.setdefault("EVALGYM_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
RESULTS = os.path.join(ROOT, "perf", "results")
PROGRAM = "print(sum(range(1000)))"
NOTES = "## Notes"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def in_threads(n: int, work) -> tuple[list[float], int, float]:
    """``work(k, lat, fails)`` on n threads at once; (latencies, failures, wall seconds)."""
    lat: list[float] = []
    fails = [0]
    barrier = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            barrier.wait()
            work(k, lat, fails)
        except Exception:  # noqa: BLE001  (counted, not hidden)
            fails[0] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, fails[0], time.perf_counter() - t0


def tool_calls(backend: str, c: int, calls: int) -> dict:
    from evalgym.sandbox.session import SessionLimits, SessionPool

    pool = SessionPool(backend, SessionLimits(timeout_s=30), warm=c)
    sessions = [pool.session() for _ in range(c)]
    for s in sessions:
        s.python("0")  # the interpreter started: latency is of calls, not of start-up

    def work(k: int, lat: list[float], fails: list[int]) -> None:
        for _ in range(calls):
            t0 = time.perf_counter()
            r = sessions[k].python(PROGRAM)
            lat.append(time.perf_counter() - t0)
            fails[0] += r.output != "499500\n"

    def shell(k: int, lat: list[float], fails: list[int]) -> None:
        for _ in range(calls):
            t0 = time.perf_counter()
            r = sessions[k].shell(f"python3 -c '{PROGRAM}'")
            lat.append(time.perf_counter() - t0)
            fails[0] += r.output != "499500\n"

    def shell_builtin(k: int, lat: list[float], fails: list[int]) -> None:
        for _ in range(calls):
            t0 = time.perf_counter()
            r = sessions[k].shell("echo 499500")
            lat.append(time.perf_counter() - t0)
            fails[0] += r.output != "499500\n"

    lat, fails, wall = in_threads(c, work)
    sh, sh_fails, _ = in_threads(c, shell)
    sb, sb_fails, _ = in_threads(c, shell_builtin)
    for s in sessions:
        s.close()
    pool.close()
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "calls": len(lat), "failed": fails + sh_fails + sb_fails,
            "calls_per_s": len(lat) / wall, "shell_p50_ms": pct(sh, 0.5), "shell_p99_ms": pct(sh, 0.99),
            "shell_echo_p50_ms": pct(sb, 0.5), "shell_echo_p99_ms": pct(sb, 0.99)}


def one_shot_calls(backend: str, c: int, calls: int) -> dict:
    from evalgym.sandbox import Limits, Program, get_sandbox

    box = get_sandbox(backend)
    if backend == "docker":
        box.pool_size = max(box.pool_size, c)
        box.warm(Limits(timeout_s=30))
    prog = Program({"main.py": PROGRAM}, ["python3", "main.py"])

    def work(k: int, lat: list[float], fails: list[int]) -> None:
        for _ in range(calls):
            t0 = time.perf_counter()
            r = box.run(prog, Limits(timeout_s=30))
            lat.append(time.perf_counter() - t0)
            fails[0] += r.stdout != "499500\n"

    lat, fails, wall = in_threads(c, work)
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "calls": len(lat), "failed": fails,
            "calls_per_s": len(lat) / wall}


def episodes(backend: str, c: int, n: int) -> dict:
    from transformers import AutoTokenizer

    from evalgym.agentic.demos import TranscriptPolicy
    from evalgym.agentic.runner import run_episodes
    from evalgym.models import resolve_model
    from evalgym.policies.base import SamplingParams
    from evalgym.agentic.toolset import close_pools
    from evalgym.rollouts import make_env

    close_pools()  # a pool warmed for this concurrency
    env = make_env("python-math", dataset="arithmetic", split="test", sandbox=backend)
    policy = TranscriptPolicy(AutoTokenizer.from_pretrained(resolve_model("tiny")),
                              problems=[env.source.problem(i) for i in range(n)])
    os.environ["EVALGYM_SESSION_WARM"] = str(c)
    run_episodes(policy, [(env, i) for i in range(min(n, c))], sampling=SamplingParams(max_tokens=400),
                 max_in_flight=c)  # warm: grader workers started, session pool filled
    t0 = time.perf_counter()
    groups, stats = run_episodes(policy, [(env, i) for i in range(n)], sampling=SamplingParams(max_tokens=400),
                                 max_in_flight=c)
    wall = time.perf_counter() - t0
    close_pools()
    failed = sum(t.reward != 1.0 for g in groups for t in g)
    return {"episodes": n, "failed": failed, "episodes_per_s": n / wall, "wall_s": wall,
            "tool_errors": sum(t.metrics.get("tool_errors", 0) for g in groups for t in g)}


def one_shot_episodes(backend: str, c: int, n: int) -> dict:
    """The same episodes' work the one-shot way: each python cell as a one-shot run, then the same grading."""
    from evalgym.rollouts import make_env
    from evalgym.sandbox import Limits, Program, get_sandbox

    box = get_sandbox(backend)
    env = make_env("python-math", dataset="arithmetic", split="test", sandbox=backend)
    problems = [env.source.problem(i) for i in range(n)]
    per = [list(range(k, n, c)) for k in range(c)]
    env.verifier.verify_batch(problems[:1], [f"\\boxed{{{problems[0].answer}}}"])  # warm, as the runner's

    def work(k: int, lat: list[float], fails: list[int]) -> None:
        for i in per[k]:
            answer = problems[i].answer
            prog = Program({"main.py": f"answer = {answer!r}\nprint(repr(answer))"}, ["python3", "main.py"])
            out = box.run(prog, Limits(timeout_s=30)).stdout
            verdict = env.verifier.verify_batch([problems[i]], [f"\\boxed{{{answer}}}"])[0]
            fails[0] += out != f"{answer!r}\n" or verdict.reward != 1.0

    _lat, fails, wall = in_threads(c, work)
    return {"episodes": n, "failed": fails, "episodes_per_s": n / wall, "wall_s": wall}


def write(rows: list[dict]) -> str:
    """Both result files, atomically; returns the markdown."""
    rows = sorted(rows, key=lambda r: (["local", "docker"].index(r["backend"]), r["sessions"]))
    result = {"cpus": os.cpu_count(), "program": PROGRAM, "rows": rows,
              "goals": {"p50_ms_local_8": 30, "p50_ms_docker_8": 60, "failures_at_32": 0}}
    md = ["# Agentic tool calls and episodes", "",
          f"`{PROGRAM}` as a `python` tool call (`calls` a session) vs the one-shot sandbox running it; "
          f"python-math episodes (reference transcript: python, submit) vs their tool work as one-shot runs. "
          f"{os.cpu_count()} cpus, shared with other work. Written by perf/agentic_bench.py.", "",
          "`shell` runs the same program with `python3 -c` (a bash fork + the exec of a new python3: its start-up "
          "is most of the cost) and `echo 499500` (the shell tool's own cost: bash, no new interpreter).", "",
          "| backend | sessions | calls, episodes | python call p50 / p99 ms | shell python3 call p50 / p99 ms | "
          "shell echo call p50 / p99 ms | one-shot p50 / p99 ms | p50 ratio (python, shell python3) | episodes/s | "
          "one-shot episodes/s | failed |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['backend']} | {r['sessions']} | | error: {r['error']} | | | | | | | |")
            continue
        s, o, e, oe = r["session"], r["one_shot"], r["episodes"], r["one_shot_episodes"]
        md.append(f"| {r['backend']} | {r['sessions']} | {r.get('calls', '?')}, {e['episodes']} | "
                  f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} | "
                  f"{s['shell_p50_ms']:.1f} / {s['shell_p99_ms']:.1f} | "
                  f"{s.get('shell_echo_p50_ms', float('nan')):.1f} / {s.get('shell_echo_p99_ms', float('nan')):.1f} | "
                  f"{o['p50_ms']:.1f} / {o['p99_ms']:.1f} | "
                  f"{s['p50_ms'] / o['p50_ms']:.3f}x, {s['shell_p50_ms'] / o['p50_ms']:.2f}x | "
                  f"{e['episodes_per_s']:.1f} | {oe['episodes_per_s']:.1f} | "
                  f"{s['failed'] + o['failed'] + e['failed'] + oe['failed']} |")
    md += ["", "Goals: tool-call p50 <= 30 ms local and <= 60 ms docker at 8 sessions; nothing fails at 32."]
    md_path = os.path.join(RESULTS, "agentic.md")
    if os.path.exists(md_path):   # the reading written by hand under NOTES survives a rerun
        with open(md_path) as f:
            old = f.read()
        if NOTES in old:
            md += ["", NOTES + old.split(NOTES, 1)[1].rstrip("\n")]
    os.makedirs(RESULTS, exist_ok=True)
    for name, text in (("agentic.json", json.dumps(result, indent=2)), ("agentic.md", "\n".join(md) + "\n")):
        write_text_atomic(Path(RESULTS) / name, text)
    return "\n".join(md)


def earlier_rows() -> list[dict]:
    """The rows of the existing results (a result written before rows carried ``calls``: the file's own)."""
    path = os.path.join(RESULTS, "agentic.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        doc = json.load(f)
    return [{"calls": doc.get("calls_per_session"), **r} for r in doc.get("rows", [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20, help="python calls per session")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--merge", action="store_true", help="keep the existing rows this run does not redo")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    backends = [b for b in args.backends.split(",") if not (args.no_docker and b == "docker")]
    unknown = [b for b in backends if b not in ("local", "docker")]
    if unknown:
        ap.error(f"--backends: unknown {unknown}; known: local, docker")
    redo = {(b, c) for b in backends for c in levels}
    rows = [r for r in earlier_rows() if (r["backend"], r["sessions"]) not in redo] if args.merge else []
    md = write(rows) if rows else ""
    for backend in backends:
        for c in levels:
            row = {"backend": backend, "sessions": c, "calls": args.calls}
            try:
                row["session"] = tool_calls(backend, c, args.calls)
                row["one_shot"] = one_shot_calls(backend, c, args.calls)
                row["episodes"] = episodes(backend, c, max(args.episodes, c))
                row["one_shot_episodes"] = one_shot_episodes(backend, c, max(args.episodes, c))
            except Exception as exc:  # noqa: BLE001  (reported, not hidden)
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            row["loadavg_1min"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
            md = write(rows)   # after every row: a stopped run keeps what it measured
    print(md)


if __name__ == "__main__":
    main()
