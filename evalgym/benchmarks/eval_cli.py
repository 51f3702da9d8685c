"""The ``evalgym eval`` and ``evalgym watch`` commands (parsers in ``evalgym.cli``, work here).

    evalgym eval --model tiny --tasks evalgym_arithmetic,gsm8k --limit 32 [--backend hf|vllm]
                 [--num-samples k] [--store runs/results.sqlite] [--run NAME] [--json]
    evalgym watch runs/sft --tasks evalgym_arithmetic --limit 32 (--until-step N | --once)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from evalgym.benchmarks.evaluate_ckpt import EvalSpec, format_rows, row_dict
from evalgym.benchmarks.store import DEFAULT_STORE, ResultRow, ResultsStore
from evalgym.errors import EvalgymError


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """The options ``eval`` and ``watch`` share."""
    p.add_argument("--tasks", required=True, help="comma-separated: evalgym_<env> (any registered env, e.g. "
                   "evalgym_arithmetic, evalgym_ifeval) or lm-eval task names (gsm8k, ifeval, ...)")
    p.add_argument("--limit", type=int, default=None, help="docs per task (default: all)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="hf: torch threads (default: torch's own)")
    p.add_argument("--num-samples", type=int, default=1, help="samples per doc of env tasks: k > 1 reports "
                   "pass@1, pass@k and mean@k (default 1, greedy)")
    p.add_argument("--temperature", type=float, default=None, help="env tasks (default: 0 for one sample, "
                   "1.0 for several)")
    p.add_argument("--max-tokens", type=int, default=256, help="env tasks: tokens per response (default 256)")
    p.add_argument("--num-fewshot", type=int, default=None, help="standard tasks (default: the task's own)")
    p.add_argument("--no-chat-template", action="store_true", help="plain-text prompts even if the model "
                   "has a chat template")
    p.add_argument("--include-path", action="append", default=[], help="folder of extra lm-eval task YAMLs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=DEFAULT_STORE, help=f"results database (default {DEFAULT_STORE})")
    p.add_argument("--verbose", action="store_true", help="lm-eval's own log lines too")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def spec_from_args(args: argparse.Namespace) -> EvalSpec:
    if args.limit is not None and args.limit < 1:
        raise EvalgymError(f"--limit must be >= 1, got {args.limit}")
    if args.num_samples < 1:
        raise EvalgymError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.max_tokens < 1:
        raise EvalgymError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    return EvalSpec(tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], limit=args.limit,
                    num_samples=args.num_samples, temperature=args.temperature, max_tokens=args.max_tokens,
                    seed=args.seed, backend=args.backend, device=args.device, threads=args.threads,
                    num_fewshot=args.num_fewshot,
                    chat_template=False if args.no_chat_template else None, include_path=list(args.include_path),
                    data_dir=args.data_dir or os.environ.get("EVALGYM_DATA_DIR"))


def _quiet(verbose: bool) -> None:
    if not verbose:
        for name in ("lm-eval", "lm_eval", "datasets", "transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)
        os.environ.setdefault("TQDM_DISABLE", "1")


def _print_rows(rows: list[ResultRow], as_json: bool) -> None:
    from evalgym.cli import _table

    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(row_dict(r), default=str) + "\n")
    elif rows:
        header, cells = format_rows(rows)
        print(_table(cells, header))


def cmd_eval(args: argparse.Namespace) -> int:
    from evalgym.benchmarks.evaluate_ckpt import evaluate_model

    spec = spec_from_args(args)
    _quiet(args.verbose)

    def progress(task: str, status: str, rows: list[ResultRow]) -> None:
        note = "already in the store, skipped" if status == "skipped" else f"{len(rows)} rows recorded"
        print(f"evalgym eval: {task}: {note}", file=sys.stderr)

    with ResultsStore(args.store) as store:
        rows = evaluate_model(args.model, spec, store=store, run=args.run, on_task=progress)
    _print_rows(rows, args.json)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from evalgym.benchmarks.watch import watch

    if not args.once and args.until_step is None and args.timeout is None:
        print("evalgym watch: no --once, --until-step or --timeout: watching until interrupted", file=sys.stderr)
    spec = spec_from_args(args)
    _quiet(args.verbose)

    def report(event: str, info: dict[str, Any]) -> None:
        if args.json:
            sys.stdout.write(json.dumps({"event": event, **info}) + "\n")
            sys.stdout.flush()
        else:
            print(f"evalgym watch: {event} " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)

    with ResultsStore(args.store) as store:
        watch(args.run_dir, spec, store, once=args.once, until_step=args.until_step, poll_s=args.poll,
              timeout_s=args.timeout, report=report)
    return 0
