"""Recipes: validation errors that name the file and the place, overrides and ``scale``, and every
built-in recipe run end to end on the tiny model (real trainers, real lm-eval evaluation, the
results store, the leaderboard), then resumed."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from evalgym.errors import EvalgymError
from evalgym.recipes.spec import load_recipe, plan, recipe_names, resolved

BUILT_IN = ["instructgpt", "llama3", "mopd-2026", "mopd-agentic", "r1", "tulu3"]
# recipes whose episodes run tools in sandbox sessions (local backend: bubblewrap, as root here)
AGENTIC = {"mopd-agentic"}
NO_SANDBOX = os.geteuid() != 0 or not shutil.which("bwrap")


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = """
name: mini
eval: {tasks: [evalgym_arithmetic], limit: 4}
stages:
  - {name: sft, trainer: sft, config: {envs: [arithmetic], steps: 10}}
  - {name: rm, trainer: rm, config: {envs: [arithmetic], steps: 20, save_every: 20}}
  - {name: rl, trainer: grpo, config: {reward_model: "${rm}", steps: 40, save_every: 20, warmup_steps: 5}}
  - {name: dpo, trainer: dpo, from: base, config: {pairing: delta, chosen_model: "${rl}", rejected_model: "${base}"}}
"""


# -- validation ------------------------------------------------------------------------------------


def test_built_in_recipes_all_plan():
    assert recipe_names() == BUILT_IN
    for name in BUILT_IN:
        stages = plan(load_recipe(name), "runs")
        assert stages and all(s.final.name == (f"step_{s.config.steps:06d}" if s.trainer != "synth" else "dataset")
                              for s in stages)


def test_eval_limit_larger_than_the_eval_split_is_named():
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe("tulu3", ["eval.limit=100"]), "runs")
    msg = str(e.value)
    assert "eval.tasks[0] (evalgym_arithmetic) with eval.limit 100" in msg and "holds 41" in msg
    # mopd-2026's spaces hold its 100 eval problems with room: two-digit sums, countdown over 1..50
    plan(load_recipe("mopd-2026", ["eval.limit=512"]), "runs")


def test_unknown_trainer_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("trainer: grpo", "trainer: ppo"))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    msg = str(e.value)
    assert path in msg and "stages[2].trainer: unknown trainer 'ppo'" in msg and "'grpo'" in msg


def test_bad_and_unknown_fields_name_the_stage_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace("steps: 40,", "steps: 40, lr: fast, lrr: 1,"))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    msg = str(e.value)
    assert path in msg and "2 problems" in msg
    assert "stages[2].config.lr: Input should be a valid number" in msg
    assert "stages[2].config.lrr: unknown field of GRPOConfig (grpo)" in msg
    # a field the runner sets, and an unknown env
    path = write(tmp_path, GOOD.replace("envs: [arithmetic], steps: 10", "envs: [arithmetik], model: x"))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    assert "stages[0].config.model: set by the runner" in str(e.value)
    assert "stages[0].config.envs: unknown env 'arithmetik'" in str(e.value)


def test_bad_references_are_named(tmp_path):
    cases = {
        'reward_model: "${rmm}"': "stages[2].config.reward_model: unknown stage 'rmm'",
        'reward_model: "${rl}"': "stages: cycle rl → rl",
    }
    for ref, expected in cases.items():
        path = write(tmp_path, GOOD.replace('reward_model: "${rm}"', ref))
        with pytest.raises(EvalgymError, match="problem|stage") as e:
            plan(load_recipe(path), tmp_path)
        assert expected in str(e.value) and path in str(e.value), (ref, str(e.value))
    path = write(tmp_path, GOOD.replace("steps: 10}", 'steps: 10, data: "${rm}"}'))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    assert "stages[0] (sft) refers to stage 'rm' (stages[1]), which runs later" in str(e.value)
    path = write(tmp_path, GOOD.replace("from: base", "from: rl").replace('chosen_model: "${rl}"', 'chosen_model: "${dpo}"'))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    assert "stages: cycle dpo → dpo" in str(e.value)
    # a policy stage cannot start from a reward model
    path = write(tmp_path, GOOD.replace("trainer: grpo, config", "trainer: grpo, from: rm, config"))
    with pytest.raises(EvalgymError, match=r"stages\[2\].from: 'rm' is a reward model"):
        plan(load_recipe(path), tmp_path)


def test_bad_overrides_and_files(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(EvalgymError, match=r"override stages.nope.lr: no stage 'nope'.*\['sft', 'rm', 'rl', 'dpo'\]"):
        load_recipe(path, ["stages.nope.lr=1"])
    with pytest.raises(EvalgymError, match="no trainer has a field 'lrr'"):
        load_recipe(path, ["stages.*.lrr=1"])
    with pytest.raises(EvalgymError, match="scale=0: expected a number > 0"):
        load_recipe(path, ["scale=0"])
    with pytest.raises(EvalgymError, match=r"recipe .*r.yaml: eval.limt: Extra inputs"):
        load_recipe(path, ["eval.limt=3"])
    with pytest.raises(EvalgymError, match="unknown recipe 'nope'; built in: .*mopd-2026"):
        load_recipe("nope")
    with pytest.raises(EvalgymError, match="not valid YAML"):
        load_recipe(write(tmp_path, "stages: [", "broken.yaml"))


def test_plan_resolves_starts_references_overrides_and_scale(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD), ["scale=0.1", "stages.rl.lr=0.5", "stages.*.max_tokens=7",
                                                 "backend=vllm", "model=tiny"])
    sft, rm, rl, dpo = plan(recipe, tmp_path / "out")
    root = (tmp_path / "out" / "mini").resolve()
    assert (sft.start, rm.start, rl.start, dpo.start) == ("base", "sft", "sft", "base")  # rm is skipped as a start
    assert sft.config.model == "tiny" and rm.config.model == str(root / "sft" / "step_000001")
    assert rl.config.model == str(root / "sft" / "step_000001") and rl.config.run_dir == str(root / "rl")
    # scale: steps, save_every and a written warmup, at least 1 step; an explicit override is not scaled
    assert (sft.config.steps, rm.config.steps, rl.config.steps) == (1, 2, 4)
    assert (rm.config.save_every, rl.config.save_every, rl.config.warmup_steps) == (2, 2, 0)
    assert dpo.config.steps == 10 and dpo.config.save_every == 5   # trainer defaults 100 / 50, scaled
    assert rl.config.lr == 0.5 and rl.config.max_tokens == 7 and dpo.config.max_tokens == 7
    assert rl.config.reward_model == str(root / "rm" / "step_000002")
    assert dpo.config.chosen_model == str(root / "rl" / "step_000004") and dpo.config.rejected_model == "tiny"
    assert rl.config.backend == "vllm" and not hasattr(sft.config, "backend")
    # `recipes show`: the same, as YAML
    shown = resolved(recipe, tmp_path / "out")
    assert shown["stages"][2]["config"]["reward_model"] == str(root / "rm" / "step_000002")
    assert yaml.safe_load(yaml.safe_dump(shown)) == shown


def test_synth_stages_are_datasets_referenced_by_later_stages(tmp_path):
    stages = {s.name: s for s in plan(load_recipe("tulu3"), tmp_path)}
    mix = stages["sft-mix"]
    assert mix.trainer == "synth" and not mix.is_policy and mix.final == tmp_path.resolve() / "tulu3" / "sft-mix" / "dataset"
    assert mix.config.teacher == str(stages["teacher"].final) and mix.config.out_dir == mix.final
    assert stages["sft"].config.data == str(mix.final) and stages["sft"].start == "base"
    pairs = stages["dpo-pairs"]
    assert pairs.config.teacher == str(stages["sft"].final) and pairs.config.pairs == "delta"
    assert stages["dpo"].start == "sft" and stages["dpo"].config.data == str(pairs.final)   # a dataset is never a `from`
    assert plan(load_recipe("r1"), tmp_path)[2].config.data.endswith("r1/cold-start-data/dataset")
    path = write(tmp_path, GOOD.replace("- {name: dpo, trainer: dpo, from: base,",
                                        "- {name: mix, trainer: synth, config: {teacher: tiny, envs: [arithmetic], n: 0}}\n"
                                        "  - {name: dpo, trainer: dpo, from: mix,"))
    with pytest.raises(EvalgymError) as e:
        plan(load_recipe(path), tmp_path)
    assert "stages[3].config.n: Input should be greater than or equal to 1" in str(e.value)
    assert "stages[4].from: 'mix' is a dataset (trainer synth)" in str(e.value)


def test_anchors_in_a_recipe_do_not_share_overrides(tmp_path):
    text = """
name: anchors
eval: {tasks: [evalgym_arithmetic]}
stages:
  - {name: a, trainer: grpo, config: &c {envs: {arithmetic: 1.0}, env_kwargs: {arithmetic: {ops: "+-"}}}}
  - {name: b, trainer: grpo, config: {<<: *c}}
"""
    a, b = plan(load_recipe(write(tmp_path, text), ["stages.a.env_kwargs.arithmetic.ops=+"]), tmp_path)
    assert a.config.env_kwargs == {"arithmetic": {"ops": "+"}} and b.config.env_kwargs == {"arithmetic": {"ops": "+-"}}


def test_cli_recipes_list_show_and_errors(capsys, tmp_path):
    from evalgym.cli import main

    assert main(["recipes", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == BUILT_IN
    mopd = next(r for r in rows if r["name"] == "mopd-2026")
    assert mopd["stages"] == ["expert-math", "expert-countdown", "student"]
    assert main(["recipes", "show", "mopd-2026", "--out", str(tmp_path), "scale=0.1"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    student = shown["stages"][-1]
    assert student["trainer"] == "distill" and student["from"] == "base"   # 16 expert steps x 0.1, rounded: 2
    assert student["config"]["teachers"]["math"] == str(tmp_path.resolve() / "mopd-2026" / "expert-math" / "step_000002")
    assert main(["run", write(tmp_path, GOOD.replace("trainer: grpo", "trainer: ppo")), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "evalgym: error: recipe mini" in err and "stages[2].trainer: unknown trainer 'ppo'" in err
    assert not (tmp_path / "mini").exists()    # nothing ran


# -- end to end ------------------------------------------------------------------------------------

# every stage as small as it goes: a step or two, tiny batches, 8-token samples, 4 eval docs; synth stages
# answer 6 prompts and keep every sample (a one-step teacher solves nothing)
SMOKE = ["threads=1", "scale=0.002", "stages.*.batch_size=4", "stages.*.prompts_per_step=2", "stages.*.group_size=2",
         "stages.*.max_tokens=8", "stages.*.env_rows=16", "stages.*.min_reward=0", "stages.*.probe_prompts=2",
         "stages.*.num_prompts=6", "stages.*.keep=all", "eval.limit=4", "eval.max_tokens=8"]


class PythonThenSubmit:
    """A tool-call format for the tiny model's 8-token noise: a completion of even length calls ``python``
    (printing its length), an odd one submits itself, so the agentic recipe's rollouts and evaluation episodes
    are a mix of one-turn and multi-turn episodes with real tool calls (3 turns at most), whatever is sampled."""

    name = "test-python-then-submit"

    def parse(self, text: str):
        from evalgym.agentic.tools import ParsedTurn, ToolCall

        if len(text) % 2:
            return ParsedTurn(calls=(ToolCall("submit", {"answer": text}),))
        return ParsedTurn(calls=(ToolCall("python", {"code": f"print('turn', {len(text)})"}),))


def _scripted(places: list[str]) -> list[str]:
    return [f"{place}.{env}.{knob}" for place in places for env in ("python-math", "code-tools")
            for knob in ("parser=test-python-then-submit", "max_turns=3")]


# one stage with two checkpoints: both are evaluated, not only the last; the agentic recipe's RL stages and
# evaluation read tool calls with the scripted parser above (its SFT stage plays the reference transcripts,
# Hermes calls, with the env's own parser)
EXTRA = {"instructgpt": ["stages.sft.steps=2", "stages.sft.save_every=1"],
         "mopd-agentic": _scripted(["eval.env_kwargs", "stages.student.env_kwargs"])
         + [o for o in _scripted(["stages.expert-math.env_kwargs"]) if "python-math" in o]
         + [o for o in _scripted(["stages.expert-code.env_kwargs"]) if "code-tools" in o]}


class RecipeRuns(dict):
    """Each recipe's run summary, the recipe run on first use (so `-k NAME` runs only that one), all in one
    output folder and results store."""

    def __init__(self, out: Path, tiny_path: str):
        super().__init__()
        self.out, self.tiny_path = out, tiny_path

    def __missing__(self, name: str) -> dict:
        from evalgym.recipes import run_recipe

        if name in AGENTIC and NO_SANDBOX:
            pytest.skip("sandbox sessions need root and bubblewrap here")
        if name in AGENTIC:
            from evalgym.agentic.tools import register_parser

            register_parser(PythonThenSubmit())
        self[name] = run_recipe(load_recipe(name, [f"model={self.tiny_path}", *SMOKE, *EXTRA.get(name, [])]),
                                self.out, progress=False)
        return self[name]


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory, tiny_path, data_dir):
    out = tmp_path_factory.mktemp("recipes")
    return out, RecipeRuns(out, tiny_path)


def _events(run_dir: Path) -> int:
    return len((run_dir / "events.jsonl").read_text().splitlines())


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", BUILT_IN)
def test_recipe_runs_end_to_end(recipe_runs, name, tiny_path):
    from evalgym.benchmarks.store import ResultsStore
    from evalgym.envs.registry import CATALOG, resolve_id
    from evalgym.trainers.checkpoint import step_dirs

    out, summaries = recipe_runs
    summary = summaries[name]
    recipe = load_recipe(name)
    stages = plan(load_recipe(name, [f"model={tiny_path}", *SMOKE, *EXTRA.get(name, [])]), out)
    assert summary["trained"] == [s.name for s in stages] and summary["skipped"] == []
    with ResultsStore(out / "results.sqlite", create=False) as db:
        rows = [r for r in db.rows() if r.manifest.get("recipe") == name]
    tasks = set(recipe.eval.tasks)
    scored = {(r.run, r.checkpoint, r.task) for r in rows}
    base = {r.task for r in rows if r.run == f"{name}/base"}
    assert base == tasks and all(r.manifest["stage_index"] == 0 and r.checkpoint == tiny_path
                                 for r in rows if r.run == f"{name}/base")
    for s in stages:
        assert (s.final / "meta.json").is_file(), s.name
        if not s.is_policy:      # a reward model is not evaluated as a policy
            assert not any(r.run == f"{name}/{s.name}" for r in rows)
            continue
        for ckpt in step_dirs(s.run_dir):
            for task in tasks:
                assert (f"{name}/{s.name}", f"{name}/{s.name}/{ckpt.name}", task) in scored, (s.name, ckpt, task)
        mine = [r for r in rows if r.run == f"{name}/{s.name}"]
        assert {(r.manifest["stage"], r.manifest["stage_index"]) for r in mine} == {(s.name, s.index)}
        # evaluated on held-out problems: the eval split, and no overlap with the lineage's training, measured
        assert all(r.manifest["split"] == CATALOG[resolve_id(r.task.removeprefix("evalgym_"))].eval_split
                   for r in mine)
        assert all(r.manifest["contamination"]["overlap"] == 0 and r.manifest["contamination"]["trained_problems"] > 0
                   for r in mine), {r.manifest["contamination"]["overlap"] for r in mine}
    if name == "instructgpt":
        assert len(step_dirs(out / name / "sft")) == 2
    if name == "mopd-agentic":
        _check_agentic(out, rows, {s.name: s for s in stages})
    # the leaderboard compares the stages in order
    report = Path(summary["report"])
    assert report == out.resolve() / name / "report" / "leaderboard.md" and Path(summary["html"]).is_file()
    comparison = report.read_text().split("## Recipe comparison")[1]
    order = [line.split("|")[2].strip() for line in comparison.splitlines() if line.startswith(f"| {name} |")]
    assert order == ["base"] + [s.name for s in stages if s.is_policy]
    assert (out / name / "recipe.yaml").is_file() and all((s.run_dir / "stage.yaml").is_file() for s in stages)


def _check_agentic(out: Path, rows: list, stages: dict) -> None:
    """mopd-agentic: SFT learnt tool-calling transcripts, every RL stage and evaluation ran multi-turn episodes
    with real tool calls, the student was distilled from the two experts by domain."""
    def metrics(stage: str) -> list[dict]:
        return [json.loads(x) for x in (out / "mopd-agentic" / stage / "metrics.jsonl").read_text().splitlines()]

    # a reference transcript has ~200-500 assistant tokens (tool calls), a bare reference answer 3-40
    sft = metrics("sft")[-1]
    assert sft["tokens"] >= 150 * stages["sft"].config.batch_size, sft["tokens"]
    trained = json.loads((stages["sft"].final / "trained_problems.json").read_text())["by_env"]
    assert set(trained) == {"evalgym/python-math-v0", "evalgym/code-tools-v0"}, trained
    for stage in ("expert-math", "expert-code", "student"):
        m = metrics(stage)[-1]
        assert m["episode_tool_calls"] > 0 and m["episode_turns"] > 1, (stage, m)
    expert = {s: str(stages[s].final) for s in ("expert-math", "expert-code")}
    assert stages["student"].config.teachers == {"math": expert["expert-math"], "code": expert["expert-code"]}
    # evaluation scores whole episodes: every checkpoint's episodes called tools over several turns
    calls = [r for r in rows if r.metric == "episode_tool_calls"]
    turns = {(r.run, r.checkpoint, r.task): r.value for r in rows if r.metric == "episode_turns"}
    assert calls and all(r.value > 0 and turns[(r.run, r.checkpoint, r.task)] > 1 for r in calls)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_llama3_rejection_sampling_selects_by_the_reward_model(recipe_runs):
    out, runs = recipe_runs
    runs["llama3"]
    for rnd in ("round1", "round2"):
        # the rejection-sampling stage keeps its chosen samples in selected.jsonl (rs_data.jsonl before the one RL loop)
        kept = [json.loads(x) for x in (out / "llama3" / f"{rnd}-rs" / "selected.jsonl").read_text().splitlines()]
        assert kept and all(0.0 < r["reward"] < 1.0 for r in kept)   # σ(score), not a 0/1 verifier reward
        config = yaml.safe_load((out / "llama3" / f"{rnd}-rs" / "stage.yaml").read_text())
        assert config["reward_model"] == str(out.resolve() / "llama3" / f"{rnd}-rm" / "step_000001")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_rerun_skips_finished_stages_and_resumes_an_unfinished_one(recipe_runs, tiny_path, capsys):
    import shutil

    from evalgym.benchmarks.store import ResultsStore
    from evalgym.cli import main

    out, runs = recipe_runs
    runs["instructgpt"]
    args = ["run", "instructgpt", "--out", str(out), "--quiet", f"model={tiny_path}", *SMOKE, *EXTRA["instructgpt"]]
    stage_dirs = [out / "instructgpt" / s for s in ("sft", "rm", "rl")]
    events = [_events(d) for d in stage_dirs]
    mtimes = {p: p.stat().st_mtime_ns for d in stage_dirs for p in d.glob("step_*/model.safetensors")}
    with ResultsStore(out / "results.sqlite", create=False) as db:
        n_rows = len(db.rows())
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"leaderboard: {out.resolve() / 'instructgpt' / 'report' / 'leaderboard.md'}" in printed
    assert "0 stage(s) trained, 3 skipped" in printed
    # the stage table: each value with its 95 % interval, the change from the stage it started from
    rl_row = next(line for line in printed.splitlines() if line.startswith("rl "))
    assert re.search(r"\d\.\d{3} \[\d\.\d\d, \d\.\d\d\] \([+-]\d\.\d{3}( \*)?\)", rl_row), rl_row
    assert "*: beyond the stage's 95 % interval" in printed
    assert [_events(d) for d in stage_dirs] == events
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    with ResultsStore(out / "results.sqlite", create=False) as db:
        assert len(db.rows()) == n_rows
    # a stage killed after its first checkpoint resumes from it: one more step, one more event
    shutil.rmtree(out / "instructgpt" / "sft" / "step_000002")
    assert main(args) == 0
    assert "1 stage(s) trained, 2 skipped" in capsys.readouterr().out
    assert [_events(d) for d in stage_dirs] == [events[0] + 1, *events[1:]]
    meta = json.loads((out / "instructgpt" / "sft" / "step_000002" / "meta.json").read_text())
    # parent is the run's start model (what lineage walks for contamination), kept across a resume; that it
    # resumed rather than restarted is the single added event above
    assert meta["parent"] == tiny_path
