"""Recipe files: a post-training pipeline as a YAML list of stages, checked whole before anything runs.

    recipe = load_recipe("instructgpt", ["scale=0.1", "stages.sft.lr=1e-3", "eval.limit=16"])
    stages = plan(recipe, "runs")        # each stage's validated trainer config, in order
    stages[1].config                     # RMConfig(model='/abs/runs/instructgpt/sft/step_000060', ...)

A recipe file (``evalgym/recipes/<name>.yaml``, or any path):

    name: instructgpt
    description: SFT, then a reward model, then RL on the reward model's score
    model: tiny                   # the base model: a built-in name, a folder or a hub id
    backend: hf                   # hf | vllm: the eval engine, and `backend` of the grpo/distill stages
    threads: null                 # torch CPU threads while it runs (null: torch's default)
    eval: {tasks: [evalgym_arithmetic], limit: 64, max_tokens: 32, env_kwargs: {arithmetic: {digits: 2}}}
    stages:
      - {name: sft, trainer: sft, config: {envs: [arithmetic], steps: 600, lr: 3.0e-3}}
      - {name: rm, trainer: rm, config: {envs: [arithmetic]}}
      - {name: rl, trainer: grpo, from: sft, config: {reward_model: "${rm}"}}

Stages run in the order listed. ``from`` is ``base`` (the recipe's model), an earlier stage, or
omitted: the latest earlier stage that trains a policy (not an ``rm`` stage), else ``base``.
``${stage}`` inside any config string is that stage's final checkpoint
(``<out>/<recipe>/<stage>/step_<steps>``), ``${base}`` the recipe's model. The runner sets each
stage's ``model`` (its ``from``) and ``run_dir`` (``<out>/<recipe>/<stage>``).

Overrides (``key=value``, YAML values): ``model=...``, ``backend=vllm``, ``eval.limit=16``,
``stages.sft.steps=10`` (a stage's config field; ``stages.sft.from=base`` its start),
``stages.*.max_tokens=16`` (every stage whose trainer has that field; a field no trainer has is an
error), and ``scale=0.1``: every stage's ``steps``, ``save_every`` and ``warmup_steps`` as written in
the file times 0.1 (at least 1 step), for smoke runs; an explicit override is taken as given, unscaled.

Evaluation reads each env's evaluation split (``eval`` of a procedural env, ``test`` of a dataset), which
is disjoint from the training split the stages draw from; ``eval.env_kwargs`` gives the knobs of that
space (the same as training's, so the eval problems are the same kind).

Every problem found (unknown trainer or field, a bad type, an unknown env, a reference to an unknown
or later stage, a cycle, an ``eval.limit`` larger than an env's eval split) is reported at once, each
naming the file and the place, e.g. ``stages[2].config.lr`` (stages count from 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from evalgym.errors import EvalgymError
from evalgym.trainers.config import parse_override, set_dotted

RECIPES_DIR = Path(__file__).resolve().parent
REF = re.compile(r"\$\{([^}]*)\}")
STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STEP_FIELDS = ("steps", "save_every", "warmup_steps")     # what ``scale`` multiplies
RUNNER_FIELDS = {"model": "use the stage's `from` (or the recipe's `model`)",
                 "run_dir": "it is <out>/<recipe>/<stage>"}


class RecipeEval(BaseModel):
    """How every checkpoint is evaluated: lm-eval tasks (``evalgym_<env>`` or lm-eval's own)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1)
    limit: int | None = 64             # docs per task (None: all)
    num_samples: int = 1               # samples per doc (1: greedy accuracy; k: pass@1 over k)
    temperature: float | None = None   # None: greedy for one sample, 1.0 for several
    max_tokens: int = 64
    env_kwargs: dict[str, dict[str, Any]] = {}   # env -> knobs of the space whose eval split is evaluated
    seed: int = 0


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    trainer: str
    start: str | None = Field(default=None, alias="from")
    config: dict[str, Any] = {}


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")    # also its folder under the output folder
    description: str = ""
    model: str = "tiny"
    backend: Literal["hf", "vllm"] = "hf"
    threads: int | None = None           # torch CPU threads while it runs (None: torch's default)
    eval: RecipeEval
    stages: list[StageSpec] = Field(min_length=1)
    _source: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        """Where it was loaded from (a file path), for error messages."""
        return self._source or self.name


@dataclass(frozen=True)
class PlannedStage:
    """One stage, ready to run: its trainer's validated config and where its checkpoints go."""

    index: int            # 1-based; the base model is stage 0
    name: str
    trainer: str
    start: str            # 'base' or the stage it starts from
    config: Any           # the trainer's config (pydantic), model and run_dir filled in
    run_dir: Path
    final: Path           # run_dir/step_<steps>: exists once the stage has finished

    @property
    def is_policy(self) -> bool:
        """Whether its checkpoints are policies (an ``rm`` stage's are reward models, a data stage's a dataset)."""
        return self.trainer != "rm" and self.trainer not in DATA_STAGES


# stages that produce a dataset, not a checkpoint: ``${stage}`` is the dataset folder, they are not evaluated,
# run in the driving process (not under --launch) and are never a later stage's default `from`
DATA_STAGES = {"synth": ("evalgym.synth.pipeline", "SynthConfig", "train_synth")}


def trainer_table() -> dict[str, tuple[str, str, str]]:
    from evalgym.cli import TRAINERS   # the one table of trainers: name -> (module, config class, function)

    return {**TRAINERS, **DATA_STAGES}


def config_class(trainer: str) -> type[BaseModel]:
    import importlib

    module, cls, _ = trainer_table()[trainer]
    return getattr(importlib.import_module(module), cls)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """A built-in recipe's file, or ``name`` itself when it is a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise EvalgymError(f"recipe file {name} does not exist")
        return path
    if not (RECIPES_DIR / f"{name}.yaml").is_file():
        raise EvalgymError(f"unknown recipe {name!r}; built in: {recipe_names()} (or give a .yaml file)")
    return RECIPES_DIR / f"{name}.yaml"


def load_recipe(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """The recipe ``name`` (built in, or a YAML file) with ``key=value`` overrides applied; its fields
    are checked here, its stages by :func:`plan`."""
    path = recipe_path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise EvalgymError(f"recipe {path}: not valid YAML: {e}") from None
    try:   # a plain tree: YAML anchors share their nodes, and an override must change one place only
        data = json.loads(json.dumps(data))
    except (TypeError, ValueError) as e:
        raise EvalgymError(f"recipe {path}: values must be plain YAML (strings, numbers, lists, mappings): {e}") from None
    if not isinstance(data, dict):
        raise EvalgymError(f"recipe {path}: expected a mapping (name, model, eval, stages), got {type(data).__name__}")
    parsed = [parse_override(item) for item in overrides]
    for key, value in parsed:
        if key == "scale":
            _scale(data, value, path)
    for key, value in parsed:
        if key != "scale":
            _override(data, key, value, path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise EvalgymError(f"recipe {path}: " + "; ".join(f"{_loc(err['loc'])}: {err['msg']}" for err in e.errors())) from None
    recipe._source = str(path)
    return recipe


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _stage_list(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    stages = data.get("stages")
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise EvalgymError(f"recipe {path}: stages: expected a list of stage mappings")
    return stages


def _scale(data: dict[str, Any], factor: Any, path: Path) -> None:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
        raise EvalgymError(f"override scale={factor!r}: expected a number > 0")
    for stage in _stage_list(data, path):
        if stage.get("trainer") not in trainer_table():
            continue   # reported by plan()
        fields = config_class(stage["trainer"]).model_fields
        config = stage.setdefault("config", {})
        if not isinstance(config, dict):
            continue
        for name in STEP_FIELDS:
            if (name not in config and name == "warmup_steps") or name not in fields:
                continue
            value = config.get(name, fields[name].default)
            if isinstance(value, int) and not isinstance(value, bool):
                config[name] = max(1 if name != "warmup_steps" else 0, round(value * factor))


def _override(data: dict[str, Any], key: str, value: Any, path: Path) -> None:
    parts = key.split(".")
    if parts[0] != "stages":
        if key in ("name", "stages"):
            raise EvalgymError(f"override {key}: cannot be overridden (edit a copy of {path} instead)")
        set_dotted(data, key, value)
        return
    stages = _stage_list(data, path)
    if len(parts) < 3 or not parts[2]:
        raise EvalgymError(f"override {key}: expected stages.<stage>.<field> (or stages.*.<field>)")
    name, field = parts[1], ".".join(parts[2:])
    if name == "*":
        targets = [s for s in stages if s.get("trainer") in trainer_table()
                   and parts[2] in config_class(s["trainer"]).model_fields and parts[2] not in RUNNER_FIELDS]
        if not any(parts[2] in config_class(t).model_fields for t in trainer_table()):
            raise EvalgymError(f"override {key}: no trainer has a field {parts[2]!r}")
    else:
        targets = [s for s in stages if s.get("name") == name]
        if not targets:
            raise EvalgymError(f"override {key}: no stage {name!r} in {path}; stages: "
                               f"{[s.get('name') for s in stages]}")
    for stage in targets:
        if field in ("from", "trainer"):
            stage[field] = value
        else:
            config = stage.setdefault("config", {})
            if not isinstance(config, dict):
                raise EvalgymError(f"override {key}: stage {stage.get('name')!r} config is not a mapping")
            set_dotted(config, field, value)


# -- planning ---------------------------------------------------------------------------------------


def _refs(value: Any, where: str) -> list[tuple[str, str]]:
    """(stage name, config location) of every ``${...}`` inside ``value``."""
    if isinstance(value, str):
        return [(m.group(1).strip(), where) for m in REF.finditer(value)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _refs(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _refs(v, f"{where}[{i}]")]
    return []


def stage_refs(recipe: Recipe, stage: str) -> list[str]:
    """The earlier stages a stage's config names with ``${...}`` (a student's teachers, a reward model),
    in order; ``base`` left out."""
    s = next(s for s in recipe.stages if s.name == stage)
    return list(dict.fromkeys(name for name, _ in _refs(s.config, "config") if name != "base"))


def _substitute(value: Any, paths: dict[str, str]) -> Any:
    if isinstance(value, str):
        return REF.sub(lambda m: paths.get(m.group(1).strip(), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _substitute(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, paths) for v in value]
    return value


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in deps.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt in deps and state.get(nxt) is None and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in deps:
        if state.get(node) is None and (found := visit(node, [])):
            return found
    return None


def _env_problems(cfg: dict[str, Any], where: str) -> list[str]:
    """Unknown env names in a config's ``envs`` (list or {env: weight}) and ``env_kwargs``."""
    names = [(f"{where}.envs", n) for n in (cfg.get("envs") or [])]
    names += [(f"{where}.env_kwargs", n) for n in (cfg.get("env_kwargs") or {})]
    return _unknown_envs(names)


def _unknown_envs(names: list[tuple[str, Any]]) -> list[str]:
    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import resolve_id

    out = []
    for loc, name in names:
        try:
            resolve_id(name) if isinstance(name, str) else None
        except EvalgymError:
            out.append(f"{loc}: unknown env {name!r} (see `evalgym envs list`)")
    return out


def _eval_split_problems(recipe: Recipe) -> list[str]:
    """``eval.limit`` against the size of each env task's eval split (an error when it holds fewer)."""
    from evalgym.evaluate import eval_env, eval_indices

    out = []
    for i, task in enumerate(recipe.eval.tasks):
        if not (task.startswith("evalgym_") or "/" in task or re.search(r"-v\d+$", task)):
            continue
        name = task.removeprefix("evalgym_")
        knobs = next((v for k, v in recipe.eval.env_kwargs.items() if k in (name, task)), {})
        try:
            text_env, _ = eval_env(name, env_kwargs=knobs)
            if text_env.source.size >= 2**31 - 1 or recipe.eval.limit is not None:
                eval_indices(text_env, recipe.eval.limit)
        except EvalgymError as exc:
            out.append(f"eval.tasks[{i}] ({task}) with eval.limit {recipe.eval.limit}: {exc}")
    return out


def plan(recipe: Recipe, out: str | Path = "runs") -> list[PlannedStage]:
    """Check every stage and build its trainer config; raises one EvalgymError listing every problem."""
    out_dir = Path(out).resolve() / recipe.name
    problems: list[str] = []
    names = [s.name for s in recipe.stages]
    index = {n: names.index(n) for n in names}
    trainers = trainer_table()
    for i, s in enumerate(recipe.stages):
        if not STAGE_NAME.match(s.name) or s.name == "base":
            problems.append(f"stages[{i}].name: {s.name!r} must be letters, digits, '.', '_' or '-' and not 'base'")
        if names.index(s.name) != i:
            problems.append(f"stages[{i}].name: {s.name!r} is taken by stages[{names.index(s.name)}]")
        if s.trainer not in trainers:
            problems.append(f"stages[{i}].trainer: unknown trainer {s.trainer!r}; choose from {sorted(trainers)}")
    # dependencies: `from` and ${...} references
    deps: dict[str, list[str]] = {}
    for i, s in enumerate(recipe.stages):
        wanted = ([(s.start, f"stages[{i}].from")] if s.start not in (None, "base") else [])
        wanted += _refs(s.config, f"stages[{i}].config")
        deps[s.name] = []
        for dep, where in wanted:
            if dep == "base":
                continue
            if dep not in index:
                problems.append(f"{where}: unknown stage {dep!r} (stages: {names}; or base)")
            else:
                deps[s.name].append(dep)
    cycle = _find_cycle(deps) or []
    if cycle:
        problems.append("stages: cycle " + " → ".join(cycle))
    for i, s in enumerate(recipe.stages):
        for dep in dict.fromkeys(deps[s.name]):
            if index[dep] >= i and not (s.name in cycle and dep in cycle):
                problems.append(f"stages[{i}] ({s.name}) refers to stage {dep!r} (stages[{index[dep]}]), which "
                                    "runs later: stages run in the order listed")
    problems += _unknown_envs([(f"eval.tasks[{i}]", t[len("evalgym_"):])
                               for i, t in enumerate(recipe.eval.tasks) if t.startswith("evalgym_")])
    problems += _env_problems({"env_kwargs": recipe.eval.env_kwargs}, "eval")
    if not problems:
        problems += _eval_split_problems(recipe)

    planned: list[PlannedStage] = []
    paths = {"base": recipe.model}
    policy_stages: list[str] = []
    for i, s in enumerate(recipe.stages):
        where = f"stages[{i}].config"
        start = s.start or (policy_stages[-1] if policy_stages else "base")
        if s.trainer != "rm" and start in index and recipe.stages[index[start]].trainer == "rm":
            problems.append(f"stages[{i}].from: {start!r} is a reward model (trainer rm); stage {s.name!r} "
                            f"({s.trainer}) must start from a policy")
        if start in index and recipe.stages[index[start]].trainer in DATA_STAGES:
            problems.append(f"stages[{i}].from: {start!r} is a dataset (trainer {recipe.stages[index[start]].trainer}); "
                            f"use it as data: \"${{{start}}}\" and start {s.name!r} from a policy")
        for key, why in RUNNER_FIELDS.items():
            if key in s.config:
                problems.append(f"{where}.{key}: set by the runner ({why})")
        run_dir = out_dir / s.name
        paths[s.name] = str(run_dir / "step_?")     # until its config (and so its steps) is known
        if s.trainer != "rm" and s.trainer not in DATA_STAGES:
            policy_stages.append(s.name)
        if s.trainer not in trainers:
            continue
        cls = config_class(s.trainer)
        data = {k: v for k, v in _substitute(s.config, paths).items() if k not in RUNNER_FIELDS}
        if recipe.backend != "hf" and "backend" in cls.model_fields and "backend" not in data:
            data["backend"] = recipe.backend
        data.update(model=paths.get(start, recipe.model), run_dir=str(run_dir))
        problems += _env_problems(data, where)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as e:
            problems += [f"{where}.{_loc(err['loc'])}: " + (f"unknown field of {cls.__name__} ({s.trainer})"
                         if err["type"] == "extra_forbidden" else err["msg"]) for err in e.errors()]
            continue
        final = Path(cfg.out_dir) if s.trainer in DATA_STAGES else run_dir / f"step_{cfg.steps:06d}"
        paths[s.name] = str(final)
        planned.append(PlannedStage(i + 1, s.name, s.trainer, start, cfg, run_dir, final))
    if problems:
        _raise(recipe, problems)
    return planned


def _raise(recipe: Recipe, problems: list[str]) -> None:
    head = f"recipe {recipe.name} ({recipe.source})"
    if len(problems) == 1:
        raise EvalgymError(f"{head}: {problems[0]}")
    raise EvalgymError(f"{head}: {len(problems)} problems:\n  " + "\n  ".join(problems))


def resolved(recipe: Recipe, out: str | Path = "runs") -> dict[str, Any]:
    """The recipe as it will run: each stage's start, run_dir and config with references resolved
    (the fields the recipe sets, plus model and run_dir)."""
    stages = plan(recipe, out)
    head = recipe.model_dump(mode="json", by_alias=True, exclude={"stages"})
    return {**head, "stages": [{"name": p.name, "trainer": p.trainer, "from": p.start, "run_dir": str(p.run_dir),
                                "final": str(p.final), "config": p.config.model_dump(mode="json", exclude_unset=True)}
                               for p in stages]}
