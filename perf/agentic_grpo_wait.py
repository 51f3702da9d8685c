"""Benchmark: the share of an agentic GRPO step's wall time in which the engine waits on tools (issue 16 goal:
<= 10 %).

A real ``train_grpo`` run (hf backend, the tiny model or SmolLM2-135M) on ``python-math`` with the local or
docker sandbox. The models here write no tool calls of their own, so a scripted parser makes every turn a
``python`` call running ``--work`` (a small program) until the turn budget ends the episode (truncated,
reward 0: the step's update has nothing to learn, its timing is what is measured): ``max_turns`` tool calls
an episode, the load the async runner must hide. The rollout's ``engine_tool_wait_s`` (wall
time in which no generation ran and every unfinished episode was in a tool call) is read from the step's
rollout (``evalgym.rollouts.collect_many``, wrapped to keep its stats) and divided by the step's wall time
(``step_s`` of metrics.jsonl) and by its sampling time (``sample_s``).

    .venv/bin/python perf/agentic_grpo_wait.py [--model tiny] [--sandbox local] [--steps 3] [--prompts 8]
        [--group 4] [--turns 3] [--max-tokens 24]

Writes perf/results/agentic_grpo_wait.json and .md (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from evalgym.benchmarks.leaderboard import write_text_atomic  # noqa: E402
os.environ.setdefault("EVALGYM_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
RESULTS = os.path.join(ROOT, "perf", "results")
WORK = "s = sum(i * i for i in range(200000)); print(s)"


class EveryTurnPython:
    """Every turn runs ``code`` in the python tool; the env's turn budget ends the episode (truncated)."""

    name = "bench-every-turn-python"

    def __init__(self, code: str):
        self.code = code

    def parse(self, text: str):
        from evalgym.agentic.tools import ParsedTurn, ToolCall

        return ParsedTurn(calls=(ToolCall("python", {"code": self.code}),))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--sandbox", default="local", choices=["local", "docker"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--work", default=WORK)
    args = ap.parse_args()

    import evalgym.rollouts as rollouts
    from evalgym.agentic.tools import register_parser
    from evalgym.models import resolve_model
    from evalgym.trainers.grpo import GRPOConfig, train_grpo

    parser = EveryTurnPython(args.work)
    register_parser(parser)
    stats: list[dict] = []
    real = rollouts.collect_many

    def collect_many(*a, **kw):
        out = real(*a, **kw)
        stats.append(out.stats.as_dict())
        return out

    rollouts.collect_many = collect_many   # the trainer's sampler looks it up at each step
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(model=resolve_model(args.model), steps=args.steps, prompts_per_step=args.prompts,
                         group_size=args.group, max_tokens=args.max_tokens, run_dir=os.path.join(tmp, "run"),
                         save_every=10_000, envs={"python-math": 1.0},
                         env_kwargs={"python-math": {"dataset": "arithmetic", "parser": parser.name,
                                                     "max_turns": args.turns, "sandbox": args.sandbox}})
        train_grpo(cfg, progress=False)
        with open(os.path.join(tmp, "run", "metrics.jsonl")) as f:
            metrics = [json.loads(x) for x in f]
    rows = []
    for m, s in zip(metrics, stats):
        rows.append({"step": m["step"], "step_s": m["step_s"], "sample_s": m["sample_s"], "update_s": m["update_s"],
                     "engine_tool_wait_s": s["engine_tool_wait_s"], "tool_s": s["tool_s"], "turns": s["turns"],
                     "generate_s": s["generate_s"], "wait_share_of_step": s["engine_tool_wait_s"] / m["step_s"],
                     "wait_share_of_sampling": s["engine_tool_wait_s"] / m["sample_s"]})
    steady = rows[1:] or rows   # step 1 also starts the session pool and the grader workers
    share = sum(r["engine_tool_wait_s"] for r in steady) / sum(r["step_s"] for r in steady)
    result = {"args": vars(args), "cpus": os.cpu_count(), "rows": rows, "wait_share_of_step_after_step1": share,
              "goal": 0.10}
    md = ["# Engine time waiting on tools in an agentic GRPO step", "",
          f"`train_grpo` on python-math (arithmetic), model {args.model}, hf backend, {args.sandbox} sandbox; "
          f"{args.prompts} prompts x {args.group} episodes a step, {args.turns} turns each, every turn a python "
          f"call of `{args.work}` (scripted parser: these models write no tool calls), max_tokens "
          f"{args.max_tokens} a turn. {os.cpu_count()} cpus, shared with other work. perf/agentic_grpo_wait.py.", "",
          "| step | step s | sampling s | update s | tool s (episode-seconds) | engine waiting on tools s | "
          "share of step | share of sampling |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['step']} | {r['step_s']:.1f} | {r['sample_s']:.1f} | {r['update_s']:.1f} | {r['tool_s']:.1f} | "
                  f"{r['engine_tool_wait_s']:.2f} | {100 * r['wait_share_of_step']:.1f} % | "
                  f"{100 * r['wait_share_of_sampling']:.1f} % |")
    md += ["", f"Steps 2+: the engine waited on tools {100 * share:.1f} % of the step's wall time (goal <= 10 %)."]
    os.makedirs(RESULTS, exist_ok=True)
    for name, text in (("agentic_grpo_wait.json", json.dumps(result, indent=2)),
                       ("agentic_grpo_wait.md", "\n".join(md) + "\n")):
        write_text_atomic(Path(RESULTS) / name, text)
    print("\n".join(md))


if __name__ == "__main__":
    main()
