"""Recipes: post-training pipelines as YAML files of stages (``evalgym/recipes/*.yaml``), and the
runner that trains each stage from the previous one, evaluates every checkpoint and ends with a
leaderboard comparing the stages.

    evalgym recipes list
    evalgym recipes show tulu3 scale=0.1
    evalgym run [mopd-2026] [--out runs] [key=value ...]

    from evalgym.recipes import load_recipe, run_recipe
    summary = run_recipe(load_recipe("instructgpt", ["scale=0.1"]), out="runs")

The file format and overrides: ``evalgym.recipes.spec``; running, evaluation and resume:
``evalgym.recipes.runner``.
"""

from evalgym.recipes.runner import run_recipe
from evalgym.recipes.spec import Recipe, load_recipe, plan, recipe_names

__all__ = ["Recipe", "load_recipe", "plan", "recipe_names", "run_recipe"]
