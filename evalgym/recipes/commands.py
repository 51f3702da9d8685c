"""What ``evalgym recipes list|show`` and ``evalgym run`` do (the parser lives in ``evalgym.cli``).

    evalgym recipes list [--json]
    evalgym recipes show NAME [key=value ...] [--out runs] [--json]
    evalgym run [RECIPE] [--out runs] [--launch 'accelerate launch ...'] [--quiet] [--json] [key=value ...]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

DEFAULT_RECIPE = "mopd-2026"


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def recipes_list(as_json: bool) -> int:
    from evalgym.recipes.spec import load_recipe, recipe_names

    rows = []
    for name in recipe_names():
        r = load_recipe(name)
        rows.append({"name": r.name, "stages": [s.name for s in r.stages], "description": r.description})
    if as_json:
        _print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['description']}")
        print(f"{''.ljust(width)}  stages: {' -> '.join(r['stages'])}")
    return 0


def recipes_show(name: str, overrides: list[str], out: str, as_json: bool) -> int:
    from evalgym.recipes.spec import load_recipe, resolved

    data = resolved(load_recipe(name, overrides), out)
    if as_json:
        _print_json(data)
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0


def split_recipe_arg(recipe: str | None, overrides: list[str]) -> tuple[str, list[str]]:
    """``evalgym run scale=0.1``: the first positional is an override, not a recipe name."""
    if recipe is not None and "=" in recipe:
        return DEFAULT_RECIPE, [recipe, *overrides]
    return recipe or DEFAULT_RECIPE, list(overrides)


def run(recipe: str | None, overrides: list[str], out: str, *, launch: str | None, quiet: bool,
        as_json: bool) -> int:
    from evalgym.recipes.runner import comparison_table, run_recipe
    from evalgym.recipes.spec import load_recipe

    name, overrides = split_recipe_arg(recipe, overrides)
    summary = run_recipe(load_recipe(name, overrides), out, progress=not quiet, launch=launch)
    summary["comparison"] = comparison_table(summary["store"], summary["recipe"])
    if as_json:
        _print_json(summary)
        return 0
    from evalgym.cli import _table
    from evalgym.recipes.runner import comparison_cell, comparison_tasks

    rows = summary["comparison"]
    tasks = comparison_tasks(rows)
    print()
    print(_table([[r["stage"], r.get("from") or "—", "—" if r["step"] is None else r["step"],
                   *(comparison_cell(rows, r, t) for t in tasks)] for r in rows], ["stage", "from", "step", *tasks]))
    print("(change from the stage it started from; *: beyond the stage's 95 % interval)")
    print(f"\n{summary['recipe']}: {len(summary['trained'])} stage(s) trained, {len(summary['skipped'])} skipped, "
          f"{summary['total_s']:.0f} s")
    print(f"leaderboard: {summary['report']}")
    print(f"             {summary['html']}")
    return 0
