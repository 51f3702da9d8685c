"""The ``evalgym eval`` and ``evalgym watch`` commands (parsers in ``evalgym.cli``, work here).

    evalgym eval --model tiny --tasks evalgym_arithmetic,gsm8k --limit 32 [--backend hf|vllm]
                 [--num-samples k] [--store runs/results.sqlite] [--run NAME] [--json]
    evalgym watch runs/sft --tasks evalgym_arithmetic --limit 32 (--until-step N | --once)

Task names: ``evalgym/gsm8k-v0``, ``gsm8k-v0`` and ``evalgym_gsm8k`` are the env task (the driver, on the
env's evaluation split); a bare lm-eval name (``gsm8k``) is lm-eval's task, run with lm-eval's defaults.
Chat templates: env tasks are chat prompts (the rollout's, through the model's template); lm-eval tasks
run without a template unless ``--chat-template on`` (lm-eval's ``--apply_chat_template``, with few-shot
examples as alternating turns: its ``fewshot_as_multiturn``).
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
    p.add_argument("--tasks", required=True, help="comma-separated: env tasks as evalgym_<env>, <env>-v<N> or "
                   "evalgym/<env>-v<N> (e.g. evalgym_arithmetic, gsm8k-v0), or lm-eval task names (gsm8k, ifeval, ...)")
    p.add_argument("--limit", type=int, default=None, help="problems per task (default: all of a dataset split, "
                   "500 of a procedural one); more than a split holds is an error")
    p.add_argument("--split", default=None, help="env tasks: the split to evaluate (default: each env's "
                   "evaluation split: test, or eval for procedural envs)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="hf: torch threads (default: torch's own)")
    p.add_argument("--num-samples", type=int, default=1, help="samples per problem: k > 1 reports pass@1, "
                   "pass@k and mean@k (default 1, greedy)")
    p.add_argument("--temperature", type=float, default=None, help="default: 0 for one sample, 1.0 for several "
                   "(lm-eval tasks: their own generation settings for one sample)")
    p.add_argument("--max-tokens", type=int, default=256, help="env tasks: tokens per response; lm-eval tasks: "
                   "the budget where the task sets none (default 256)")
    p.add_argument("--num-fewshot", type=int, default=None, help="lm-eval tasks (default: the task's own)")
    p.add_argument("--fewshot-seed", type=int, default=1234, help="lm-eval tasks: seed of the few-shot draw "
                   "(default 1234, lm-eval's)")
    p.add_argument("--chat-template", choices=("on", "off"), default=None, help="lm-eval tasks: 'on' renders "
                   "prompts with the model's chat template (lm-eval's --apply_chat_template); default off, as "
                   "lm-eval. Env tasks always use it (the rollout prompt)")
    p.add_argument("--think-tags", default="<think>,</think>", metavar="START,END", help="thinking section cut "
                   "from responses before answers are read (default '<think>,</think>')")
    p.add_argument("--keep-thinking", action="store_true", help="do not cut a thinking section")
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
    think = None
    if not args.keep_thinking:
        parts = [t for t in args.think_tags.split(",")]
        if len(parts) != 2 or not all(parts):
            raise EvalgymError(f"--think-tags: expected START,END (e.g. '<think>,</think>'), got {args.think_tags!r}")
        think = (parts[0], parts[1])
    return EvalSpec(tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], limit=args.limit,
                    num_samples=args.num_samples, temperature=args.temperature, max_tokens=args.max_tokens,
                    seed=args.seed, backend=args.backend, device=args.device, threads=args.threads,
                    num_fewshot=args.num_fewshot, fewshot_seed=args.fewshot_seed,
                    chat_template=None if args.chat_template is None else args.chat_template == "on", think=think,
                    split=args.split, include_path=list(args.include_path),
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
    from evalgym.benchmarks.evaluate_ckpt import EvaluationFailed, evaluate_model

    spec = spec_from_args(args)
    _quiet(args.verbose)

    def progress(task: str, status: str, rows: list[ResultRow]) -> None:
        note = {"skipped": "already in the store, skipped",
                "error": "FAILED (the error is stored; see below)"}.get(status, f"{len(rows)} rows recorded")
        print(f"evalgym eval: {task}: {note}", file=sys.stderr)

    with ResultsStore(args.store) as store:
        try:
            rows = evaluate_model(args.model, spec, store=store, run=args.run, on_task=progress)
        except EvaluationFailed as exc:
            _print_rows(exc.rows, args.json)
            raise
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
