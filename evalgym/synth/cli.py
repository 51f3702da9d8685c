"""The ``evalgym synth`` command (its parser is registered in ``evalgym.cli``; the work is here).

    evalgym synth --teacher MODEL --env ENV [--split train] --num-prompts K --n G [--keep correct|best|all] --out DIR
    evalgym synth --teacher math=runs/expert-math/step_000040 --teacher countdown=runs/expert-cd/step_000040 \\
        --env arithmetic --env countdown-gen --shapes sft,dpo --out data/mix
    evalgym synth --teacher smollm2-135m --prompts prompts.jsonl --judge smollm2-135m --keep best --out data/judged
    evalgym synth --config synth.yaml propose.num=64 curriculum.model=runs/sft/step_000600   # key=value overrides

Every field of :class:`evalgym.synth.config.SynthConfig` can be set from a YAML ``--config`` file or a
``key=value`` override (dotted for sections: ``propose.agreement=0.8``); the options below are shortcuts
for the common ones. A bad value is one ``evalgym: error:`` line naming its field.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evalgym.errors import EvalgymError

# option -> config field, for options that map one to one
_SIMPLE = {"split": "split", "prompts": "prompts", "num_prompts": "num_prompts", "n": "n", "keep": "keep",
           "out": "out", "max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
           "max_per_prompt": "max_per_prompt", "pairs": "pairs", "weak_teacher": "weak_teacher", "judge": "judge",
           "judge_backend": "judge_backend", "rubric": "rubric", "judge_threshold": "judge_threshold",
           "verify": "verify", "near_dup": "near_dup", "ngram": "ngram", "name": "name", "push_to_hub": "push_to_hub",
           "teacher_backend": "teacher_backend", "shard_prompts": "shard_prompts", "batch_prompts": "batch_prompts"}


def add_synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", action="append", default=[], metavar="[ROUTE=]MODEL",
                   help="the teacher: a model for every problem, or ROUTE=MODEL routed by domain or env (repeatable)")
    p.add_argument("--teacher-backend", choices=("hf", "vllm", "openai"), default=None)
    p.add_argument("--base-url", default=None, help="openai backend: the server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--env", action="append", default=[], help="env whose split gives prompts (repeatable)")
    p.add_argument("--split", default=None, help="env split to draw prompts from (default train; never the eval split)")
    p.add_argument("--prompts", default=None, help="JSONL / parquet / HF dataset folder of prompt rows")
    p.add_argument("--num-prompts", type=int, default=None, help="prompts per env (default 64); of --prompts: the first K")
    p.add_argument("--n", type=int, default=None, help="samples per prompt (default 4)")
    p.add_argument("--keep", choices=("correct", "best", "all"), default=None, help="default correct")
    p.add_argument("--max-per-prompt", type=int, default=None, help="kept samples per prompt at most")
    p.add_argument("--pass-band", default=None, metavar="LO-HI", help="keep prompts solved by LO..HI of the n samples")
    p.add_argument("--shapes", default=None, help="comma-separated: sft, dpo, rl (default sft)")
    p.add_argument("--pairs", choices=("verified", "delta"), default=None, help="dpo pairs (default verified)")
    p.add_argument("--weak-teacher", default=None, help="delta pairs: the weaker model (rejected side)")
    p.add_argument("--judge", default=None, help="judge model for problems without a checker (LLM-as-judge)")
    p.add_argument("--judge-backend", choices=("hf", "vllm", "openai"), default=None)
    p.add_argument("--rubric", default=None, help="the judge's rubric ({lo} and {hi} are the score range)")
    p.add_argument("--judge-threshold", type=float, default=None, help="share of the score range that is correct "
                   "(default 0.7)")
    p.add_argument("--verify", choices=("auto", "env", "judge", "none"), default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--shard-prompts", type=int, default=None, help="prompts per resumable shard (default 32)")
    p.add_argument("--batch-prompts", type=int, default=None, help="prompts per engine call (default 16)")
    p.add_argument("--no-dedup", action="store_true", help="keep duplicate problems")
    p.add_argument("--near-dup", type=float, default=None, help="near-duplicate Jaccard threshold (0: exact only)")
    p.add_argument("--no-decontam", action="store_true", help="skip decontamination (the card says so)")
    p.add_argument("--ngram", type=int, default=None, help="decontamination window in tokens (default 13)")
    p.add_argument("--out", default=None, help="dataset folder to write")
    p.add_argument("--name", default=None, help="dataset name on its card")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset folder made with another config")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="also upload to the hub (needs network)")
    p.add_argument("--config", default=None, help="YAML file of SynthConfig fields")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any SynthConfig field (dotted for sections)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def config_from_args(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from evalgym.synth.config import SynthConfig
    from evalgym.trainers.config import load_yaml, parse_override, set_dotted, validation_message

    data: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as f:
                data = load_yaml(f.read()) or {}
        except OSError as e:
            raise EvalgymError(f"--config {args.config}: {e.strerror}") from None
        if not isinstance(data, dict):
            raise EvalgymError(f"--config {args.config}: expected a mapping of SynthConfig fields")
    for opt, fld in _SIMPLE.items():
        value = getattr(args, opt, None)
        if value is not None:
            data[fld] = value
    routes = {}
    for t in args.teacher:
        route, sep, model = t.partition("=")
        if sep and route and model and "/" not in route:
            routes[route] = model
        elif data.get("teacher") and data["teacher"] != t:
            raise EvalgymError(f"--teacher: two default teachers ({data['teacher']}, {t}); route one: ROUTE=MODEL")
        else:
            data["teacher"] = t
    if routes:
        data["teachers"] = {**data.get("teachers", {}), **routes}
    if args.env:
        data["envs"] = list(args.env)
    if args.shapes:
        data["shapes"] = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if args.pass_band:
        lo, sep, hi = args.pass_band.partition("-")
        try:
            data["pass_band"] = [int(lo), int(hi if sep else lo)]
        except ValueError:
            raise EvalgymError(f"--pass-band: expected LO-HI (e.g. 1-6), got {args.pass_band!r}") from None
    if args.base_url:
        data.setdefault("teacher_kwargs", {})["base_url"] = args.base_url
    if args.no_dedup:
        data["dedup"] = False
    if args.no_decontam:
        data["decontam"] = False
    if args.overwrite:
        data["overwrite"] = True
    for item in args.overrides:
        set_dotted(data, *parse_override(item))
    try:
        return SynthConfig.model_validate(data)
    except ValidationError as e:
        raise EvalgymError(f"synth: {validation_message(e)}") from None


def cmd_synth(args: argparse.Namespace) -> int:
    from evalgym.synth.pipeline import synthesize

    cfg = config_from_args(args)
    summary = synthesize(cfg, progress=not args.quiet)
    card = summary["card"]
    out = {"out": summary["out"], "state": summary["state"], "content_hash": card.get("content_hash"),
           "rows": card.get("rows"), "counts": card.get("counts"),
           "contamination_dropped": card.get("contamination", {}).get("dropped"),
           "failures": {k: v for k, v in card.get("failures", {}).items() if k not in ("examples", "selection")},
           "timing": card.get("timing")}
    if args.json:
        sys.stdout.write(json.dumps(out, ensure_ascii=False, default=str) + "\n")
    else:
        print(f"{out['out']}: {', '.join(f'{k} {v}' for k, v in (out['rows'] or {}).items()) or 'no rows'} "
              f"(content hash {out['content_hash']}; {out['state']})")
        for k, v in (out["counts"] or {}).items():
            print(f"  {k}: {v}")
        print(f"  contamination dropped: {out['contamination_dropped']}; card: {summary['out']}/README.md")
    return 0
