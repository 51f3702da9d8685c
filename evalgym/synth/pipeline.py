"""The synthetic-data pipeline: prompts → (curriculum, proposals) → generation → verification → keep →
dedup → decontamination → shapes → publish, with the count after every stage on the dataset card.

    from evalgym.synth import SynthConfig, synthesize
    summary = synthesize(SynthConfig(teacher="runs/expert/step_000040", envs=["arithmetic"], num_prompts=256,
                                     n=8, keep="correct", shapes=["sft", "dpo"], out="data/arith"))
    summary["card"]["counts"]       # prompts, samples, kept, after dedup, after decontamination, rows per shape

    evalgym synth --teacher runs/expert/step_000040 --env arithmetic --num-prompts 256 --n 8 --out data/arith

Resume: rerun the same command; finished generation shards (and a finished curriculum probe or proposal
round) are read back, so a killed run loses at most the shard in flight. A recipe stage (``trainer: synth``)
is this function through :func:`train_synth`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.synth.config import SynthConfig
from evalgym.synth.publish import WORK, claim, model_provenance, publish, read_card
from evalgym.synth.sources import Item, ListSource, Unverified, env_items, file_items, make_split_env, question_of


def make_judge(cfg: SynthConfig) -> Any:
    if not cfg.judge or cfg.verify in ("none", "env"):
        return None
    from evalgym.policies.base import make_policy
    from evalgym.verifiers.judge import JudgeVerifier

    return JudgeVerifier(make_policy(cfg.judge_backend, cfg.judge, **cfg.judge_kwargs), rubric=cfg.rubric,
                         threshold=cfg.judge_threshold, seed=cfg.seed)


def _verifier_for(cfg: SynthConfig, judge: Any) -> Any:
    def wrap(checker: Any) -> Any:
        if cfg.verify == "none":
            return Unverified()
        if cfg.verify == "judge":
            return judge
        return checker
    return wrap


@lru_cache(maxsize=4)
def _index(n: int, envs: tuple[str, ...] | None, tasks: tuple[str, ...] | None, knobs: str, procedural_docs: int,
           coverage: float) -> Any:
    from evalgym.synth.decontam import EvalIndex

    return EvalIndex.build(n=n, envs=envs, lmeval_tasks=tasks, env_kwargs=json.loads(knobs), procedural_docs=procedural_docs,
                           min_coverage=coverage)


def eval_index(cfg: SynthConfig) -> Any:
    """The decontamination index of the run (built once per process for the same settings): every env's eval
    split with its default knobs, and with the knobs this run uses."""
    from evalgym.envs.registry import resolve_id

    knobs: dict[str, list[dict[str, Any]]] = {}
    for name, kw in cfg.env_kwargs.items():
        knobs.setdefault(resolve_id(name), []).append({k: v for k, v in kw.items() if k not in ("split", "seed")})
    for level in (cfg.curriculum.levels if cfg.curriculum else []):
        for name in cfg.envs:
            base = cfg.env_kwargs.get(name, {})
            knobs.setdefault(resolve_id(name), []).append({**{k: v for k, v in base.items() if k not in ("split", "seed")}, **level})
    return _index(cfg.ngram, tuple(cfg.decontam_envs) if cfg.decontam_envs is not None else None,
                  tuple(cfg.lmeval_tasks) if cfg.lmeval_tasks is not None else None,
                  json.dumps(knobs, sort_keys=True), cfg.procedural_docs, cfg.decontam_coverage)


def _cached(path: Path, make: Any) -> Any:
    from evalgym.synth.publish import _write_atomic

    if path.is_file():
        return json.loads(path.read_text())
    value = make()
    _write_atomic(path, json.dumps(value, default=str))
    return value


def _curriculum(cfg: SynthConfig, work: Path, verifier_for: Any, progress: bool) -> tuple[list[Item], dict[str, Any]]:
    """Curriculum items, probed once (the choice is cached in work/curriculum.json for resumes)."""
    from evalgym.synth.problems import curriculum_items

    def make() -> dict[str, Any]:
        items, report = curriculum_items(cfg, verifier_for, progress)
        levels = cfg.curriculum.levels or [{}] if cfg.curriculum else [{}]
        chosen = []
        for it in items:
            li = next(k for k, lv in enumerate(levels) if lv == _knobs_of(it, lv))
            chosen.append([it.source, _env_name(it), li, it.index])
        return {"chosen": chosen, "report": report}

    saved = _cached(work / "curriculum.json", make)
    levels = (cfg.curriculum.levels if cfg.curriculum else None) or [{}]
    envs: dict[tuple[str, int], Any] = {}
    items = []
    for source, name, li, index in saved["chosen"]:
        if (name, li) not in envs:
            env = make_split_env(cfg, name, levels[li])
            env.verifier = verifier_for(env.verifier)
            envs[(name, li)] = env
        env = envs[(name, li)]
        items.append(Item(env, index, question_of(env.source.problem(index), getattr(env.source, "instruction", "") or ""), source))
    return items, saved["report"]


def _env_name(it: Item) -> str:
    return it.env.source.info.name


def _knobs_of(it: Item, level: dict[str, Any]) -> dict[str, Any]:
    knobs = getattr(it.env.source, "knobs", {}) or {}
    return {k: knobs.get(k) for k in level}


def _proposals(cfg: SynthConfig, work: Path, router: Any, seeds: list[Item], progress: bool) -> tuple[list[Item], dict[str, Any]]:
    from evalgym.envs.base import TextEnv
    from evalgym.synth.problems import propose_items
    from evalgym.types import Problem, from_dict, to_dict

    def make() -> dict[str, Any]:
        items, report = propose_items(cfg, router, seeds, progress=progress)
        return {"problems": [to_dict(it.problem) for it in items], "report": report}

    saved = _cached(work / "proposals.json", make)
    problems = [from_dict(Problem, p) for p in saved["problems"]]
    env = TextEnv(ListSource(problems), Unverified())
    return [Item(env, i, p.extra["question"], "proposed") for i, p in enumerate(problems)], saved["report"]


def synthesize(cfg: SynthConfig, *, progress: bool = True, teachers: Any = None) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns {"out", "state", "card"} (the card also in OUT/synth.json).
    ``teachers``: an ``evalgym.teachers.Router`` of engines already loaded (reused, not closed); default: the
    config's teachers, loaded here and closed at the end."""
    from evalgym.synth.dedup import dedup
    from evalgym.synth.filters import select, shape_dpo, shape_rl, shape_sft
    from evalgym.synth.generate import generate, load_teachers
    from evalgym.synth.problems import pseudo_verify

    out = cfg.out_dir
    state = claim(out, cfg)
    if state == "done":
        return {"out": str(out), "state": "done", "card": read_card(out)}
    work = out / WORK
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    counts: dict[str, Any] = {}
    failures: dict[str, Any] = {}
    judge = make_judge(cfg)
    verifier_for = _verifier_for(cfg, judge)

    t0 = time.perf_counter()
    items: list[Item] = []
    card: dict[str, Any] = {"name": cfg.name, "config": cfg.card_config()}
    if cfg.envs:
        if cfg.curriculum is not None:
            env_part, card["curriculum"] = _curriculum(cfg, work, verifier_for, progress)
        else:
            env_part = env_items(cfg, verifier_for)
        items += env_part
        counts["prompts from envs"] = len(env_part)
    if cfg.prompts:
        file_part, failures["bad_prompt_rows"] = file_items(cfg, verifier_for, judge)
        items += file_part
        counts["prompts from file"] = len(file_part)
        counts["bad prompt rows"] = failures["bad_prompt_rows"]["count"]
    router = teachers if teachers is not None else load_teachers(cfg)
    weak = None
    try:
        if cfg.propose.num:
            proposed, card["proposals"] = _proposals(cfg, work, router, [it for it in items if it.source.startswith("env:")], progress)
            items += proposed
            counts["problems proposed"] = len(proposed)
        timing["setup_s"] = time.perf_counter() - t0
        if not items:
            why = ""
            if card.get("curriculum"):
                lv = card["curriculum"]["levels"]
                why = (f": the curriculum kept 0 of {sum(x['probed'] for x in lv)} probed problems (band "
                       f"{card['curriculum']['band']}; never solved {sum(x['never'] for x in lv)}, always "
                       f"{sum(x['always'] for x in lv)})")
            raise EvalgymError("synth: no prompts to answer" + (why or " (every prompt row was bad, or the envs gave none)"))
        if cfg.pairs == "delta" and "dpo" in cfg.shapes:
            from evalgym.teachers import Teacher

            weak = Teacher.load(cfg.weak_teacher, cfg.teacher_backend, **cfg.teacher_kwargs)
        records, gstats = generate(cfg, items, router, work, weak=weak, progress=progress)
        teacher_cards = [{"route": route, **model_provenance(t.name)} for route, t in router.routes.items()]
        if router.default is not None:
            teacher_cards.append({"route": "default", **model_provenance(router.default.name)})
    finally:
        if teachers is None:          # loaded here: closed here (engines hold processes and memory)
            router.close()
        if weak is not None:
            weak.close()
        close_judge = getattr(getattr(judge, "policy", None), "close", None)
        if close_judge is not None:
            close_judge()
    timing["generate_s"] = gstats.wall_s
    counts["prompts answered"] = len(records) - gstats.failed_prompts
    counts["samples generated"] = gstats.samples
    counts["samples correct"] = gstats.correct
    records, card_pseudo = pseudo_verify(cfg, records)
    if card_pseudo["answered"]:
        card.setdefault("proposals", {})["agreement"] = card_pseudo
        counts["proposals kept (agreement)"] = card_pseudo["kept"]
    kept, selection = select(cfg, records)
    counts["prompts kept"] = selection["prompts_kept"]
    counts["samples kept"] = selection["samples_kept"]

    t0 = time.perf_counter()
    report: dict[str, Any] = {"dedup": [], "contamination": []}
    if cfg.dedup and kept:
        keep_idx, dropped = dedup([rec["question"] for rec, _ in kept], threshold=cfg.near_dup or 1.0, near=cfg.near_dup > 0)
        report["dedup"] = [{**d, "problem": kept[d["index"]][0]["problem"]["id"], "question": kept[d["index"]][0]["question"][:200],
                            "of_problem": kept[d["of"]][0]["problem"]["id"]} for d in dropped]
        kept = [kept[i] for i in keep_idx]
    counts["prompts after dedup"] = len(kept)
    timing["dedup_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    contamination: dict[str, Any] = {"checked": False}
    if cfg.decontam:
        kept, contamination, report["contamination"] = decontaminate(cfg, kept)
    counts["prompts after decontamination"] = len(kept)
    timing["decontam_s"] = time.perf_counter() - t0

    shapes: dict[str, list[dict[str, Any]]] = {}
    if "sft" in cfg.shapes:
        shapes["sft"] = shape_sft(kept)
    if "dpo" in cfg.shapes:
        shapes["dpo"], card["dpo_skipped"] = shape_dpo(cfg, kept)
    if "rl" in cfg.shapes:
        shapes["rl"] = shape_rl(kept)
    for k, rows in shapes.items():
        counts[f"{k} rows"] = len(rows)

    verifiers: Counter[tuple[str, str]] = Counter()
    for rec, _ in kept:
        for s in rec["samples"]:
            verifiers[(s["verifier"], s["verifier_version"])] += 1
    failures.update({"teacher_failed_prompts": gstats.failed_prompts, "empty_samples": gstats.empty,
                     "grader_errors": gstats.grader_errors, "unverified_samples": gstats.unverified,
                     "examples": gstats.examples, "selection": selection})
    if judge is not None:
        failures["judge"] = {k: v for k, v in judge.stats.items()}
        card["judge"] = judge.describe()
    from evalgym.trainers.checkpoint import git_sha

    card.update({"evalgym": {"git_sha": git_sha()}, "teachers": teacher_cards,
                 "weak_teacher": model_provenance(cfg.weak_teacher) if weak is not None else None,
                 "verifiers": [{"verifier": v, "version": ver, "samples": c} for (v, ver), c in sorted(verifiers.items())],
                 "counts": counts, "generation": gstats.as_dict(), "contamination": contamination,
                 "dedup": {"dropped": len(report["dedup"]), "near_dup": cfg.near_dup, "examples": report["dedup"][:10]},
                 "failures": failures})
    timing["total_s"] = time.perf_counter() - t_start
    card["timing"] = {k: round(v, 2) for k, v in timing.items()}
    report["bad_prompt_rows"] = failures.get("bad_prompt_rows")
    card = publish(out, cfg, shapes, card, report)
    return {"out": str(out), "state": state, "card": card}


def decontaminate(cfg: SynthConfig, kept: list[tuple[dict[str, Any], list[int]]]) -> tuple[list[Any], dict[str, Any], list[dict[str, Any]]]:
    """Drop kept prompts whose problem, question or any sample text overlaps an eval doc."""
    from evalgym.synth.decontam import ContamRow

    index = eval_index(cfg)
    rows = []
    for k, (rec, _) in enumerate(kept):
        p = rec["problem"]
        from evalgym.types import Problem, content_hash, from_dict

        texts = tuple(s["text"] for s in rec["samples"] if s["text"].strip()) + tuple(
            s["text"] for s in (rec.get("weak") or []) if s["text"].strip())
        own = (p.get("extra") or {}).get("env_scheme", rec["source"].startswith("env:"))
        rows.append(ContamRow(str(k), rec["question"], texts, content_hash(from_dict(Problem, p)), p["env_id"], bool(own)))
    hits = index.check(rows)
    bad = {int(h["row"]) for h in hits}
    for h in hits:
        h["problem"] = kept[int(h["row"])][0]["problem"]["id"]
    by_reason = Counter(h["reason"] for h in hits)
    by_source = Counter(h["source"] for h in hits)
    summary = {"checked": True, "index": index.summary(), "rows_checked": len(rows), "dropped": len(hits),
               "by_reason": dict(by_reason), "by_source": dict(by_source), "examples": hits[:10]}
    return [kv for k, kv in enumerate(kept) if k not in bad], summary, hits


def train_synth(cfg: SynthConfig, *, progress: bool = True, after_save: Any = None) -> dict[str, Any]:
    """A recipe's ``trainer: synth`` stage: the pipeline, its dataset folder as the stage's result
    (``${stage}`` in later stages). ``after_save`` is unused: a dataset is not evaluated."""
    summary = synthesize(cfg, progress=progress)
    return {"checkpoint": summary["out"], "metrics": {"rows": summary["card"].get("rows", {})}, "card": summary["card"]}
