"""Generation: every prompt answered ``n`` times by its teacher and graded, written in shards that a rerun
skips, so a killed run resumes where it stopped.

    router = load_teachers(cfg)
    records, stats = generate(cfg, items, router, work_dir, progress=True)

Shard ``k`` holds prompts ``[k * shard_prompts, (k + 1) * shard_prompts)`` of the run's item list (a pure
function of the config) and is written atomically (temp file, fsync, rename) to
``work_dir/gen-00000.jsonl``: a shard file either holds all its prompts or does not exist. Inside a shard
the prompts are grouped by teacher (``Router``: env id, short env name or domain; the default teacher
otherwise) and each group goes through ``evalgym.rollouts.collect_many`` — the engine generates a chunk
while the previous one is graded in the verifier's worker processes; sample seeds derive from (seed,
shard), so a resumed run writes what an uninterrupted one would.

Failures are data: a teacher that raises fails its prompts of that shard (``error`` on each record, counted,
the first examples kept) and the run goes on; an empty response is counted (``empty``) and never kept; a
grader error stays on its sample (``error``) and counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.synth.config import SynthConfig
from evalgym.synth.sources import Item
from evalgym.types import Trajectory, to_dict

MAX_EXAMPLES = 5


@dataclass
class GenStats:
    prompts: int = 0
    samples: int = 0
    correct: int = 0
    empty: int = 0
    grader_errors: int = 0
    unverified: int = 0
    failed_prompts: int = 0          # prompts whose teacher call raised (or that had no teacher)
    completion_tokens: int = 0
    shards: int = 0
    shards_resumed: int = 0
    wall_s: float = 0.0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def example(self, kind: str, value: dict[str, Any]) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(value)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["verified_samples_per_s"] = round((self.samples - self.unverified) / self.wall_s, 3) if self.wall_s else 0.0
        return d


def load_teachers(cfg: SynthConfig) -> Any:
    """The teacher router of the run (models loaded once each; unrouted problems fail as data)."""
    from evalgym.teachers import build_router

    routes, default = cfg.teacher_map()
    if not routes and default is None:
        raise EvalgymError("teacher: no teacher given (--teacher MODEL, or teachers: {domain or env: model})")
    return build_router(routes, unrouted="default" if default else "skip", default_teacher=default,
                        backend=cfg.teacher_backend, backend_kwargs=cfg.teacher_kwargs)


def sampling_of(cfg: SynthConfig) -> Any:
    from evalgym.policies.base import SamplingParams

    return SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                          stop=tuple(cfg.stop))


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def sample_record(t: Trajectory) -> dict[str, Any]:
    """One sample as a shard stores it: the final response, its grade, and the conversation before it
    when the env is multi-turn."""
    final = t.final
    v = final.verdict
    rec = {"text": final.completion.text, "finish_reason": final.completion.finish_reason,
           "tokens": len(final.completion.token_ids), "reward": float(t.reward), "correct": bool(t.correct),
           "error": v.error, "verifier": v.verifier, "verifier_version": v.verifier_version,
           "details": _json_safe(dict(v.details))}
    if len(t.steps) > 1:
        rec["conversation"] = [m.as_dict() for m in final.messages]
    return rec


def _record(pos: int, item: Item, teacher: str | None, error: str | None) -> dict[str, Any]:
    return {"pos": pos, "problem": to_dict(item.problem), "question": item.question, "source": item.source,
            "teacher": teacher, "error": error, "samples": [], "weak": None, "weak_model": None}


def generate(cfg: SynthConfig, items: Sequence[Item], router: Any, work_dir: Path, *, weak: Any = None,
             progress: bool = True, prefix: str = "gen") -> tuple[list[dict[str, Any]], GenStats]:
    """Records of every prompt (one per item, in order), generating the shards not on disk yet."""
    from evalgym.data import read_rows
    from evalgym.rollouts import write_jsonl

    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(f".{prefix}-*"):      # the temp file of a shard in flight when a run was killed
        stale.unlink(missing_ok=True)
    stats = GenStats(prompts=len(items))
    t0 = time.perf_counter()
    size = cfg.shard_prompts
    shards = [list(range(s, min(s + size, len(items)))) for s in range(0, len(items), size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(items), desc=f"synth {prefix}", unit="prompt", dynamic_ncols=True)
    records: list[dict[str, Any]] = []
    try:
        for k, positions in enumerate(shards):
            path = work_dir / f"{prefix}-{k:05d}.jsonl"
            if path.exists():
                recs = [r for _, r in read_rows(path, "shard")]
                if [r["pos"] for r in recs] != positions:
                    raise EvalgymError(f"{path}: holds prompts {[r['pos'] for r in recs][:5]}..., expected "
                                       f"{positions[:5]}...: the shard is from another run; use --overwrite")
                stats.shards_resumed += 1
            else:
                recs = _generate_shard(cfg, items, positions, router, weak, k, stats)
                write_jsonl(path, recs)
            stats.shards += 1
            records += recs
            if bar is not None:
                bar.update(len(positions))
                bar.set_postfix(failed=stats.failed_prompts, empty=stats.empty)
    finally:
        if bar is not None:
            bar.close()
    _count(records, stats)
    stats.wall_s = time.perf_counter() - t0
    return records, stats


def _generate_shard(cfg: SynthConfig, items: Sequence[Item], positions: list[int], router: Any, weak: Any,
                    shard: int, stats: GenStats) -> list[dict[str, Any]]:
    from evalgym.rollouts import collect_many

    sampling = sampling_of(cfg)
    seed = cfg.seed * 1_000_003 + shard
    recs = {p: None for p in positions}
    groups: dict[int, tuple[Any, list[int]]] = {}
    for p in positions:
        teacher = router.route(items[p].problem)
        if teacher is None:
            recs[p] = _record(p, items[p], None, "no teacher routed for this problem")
            stats.example("failed", {"problem": items[p].problem.id, "error": recs[p]["error"]})
            continue
        groups.setdefault(id(teacher), (teacher, []))[1].append(p)
    for teacher, ps in groups.values():
        try:
            res = collect_many(teacher.policy, [(items[p].env, items[p].index) for p in ps], n=cfg.n,
                               sampling=sampling, seed=seed, batch_prompts=cfg.batch_prompts)
        except Exception as exc:  # noqa: BLE001 - a failing teacher fails its prompts, the run goes on
            error = f"teacher {teacher.name} failed: {type(exc).__name__}: {str(exc)[:300]}"
            for p in ps:
                recs[p] = _record(p, items[p], teacher.name, error)
            stats.example("failed", {"teacher": teacher.name, "prompts": len(ps), "error": error})
            continue
        for p, g in zip(ps, res.groups):
            rec = _record(p, items[p], teacher.name, None)
            rec["samples"] = [sample_record(t) for t in g.trajectories]
            recs[p] = rec
    if weak is not None:
        _weak_samples(cfg, items, [p for p in positions if not recs[p]["error"]], recs, weak, seed, stats)
    return [recs[p] for p in positions]


def _weak_samples(cfg: SynthConfig, items: Sequence[Item], ps: list[int], recs: dict[int, Any], weak: Any,
                  seed: int, stats: GenStats) -> None:
    """Delta pairs: the weaker model's samples of the same prompts (``weak_n`` each)."""
    from evalgym.rollouts import collect_many

    if not ps:
        return
    try:
        res = collect_many(weak.policy, [(items[p].env, items[p].index) for p in ps], n=cfg.weak_n,
                           sampling=sampling_of(cfg), seed=seed + 7_777_777, batch_prompts=cfg.batch_prompts)
    except Exception as exc:  # noqa: BLE001
        stats.example("weak_failed", {"model": weak.name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        return
    for p, g in zip(ps, res.groups):
        recs[p]["weak"] = [sample_record(t) for t in g.trajectories]
        recs[p]["weak_model"] = weak.name


def _count(records: list[dict[str, Any]], stats: GenStats) -> None:
    for r in records:
        if r["error"]:
            stats.failed_prompts += 1
            continue
        for s in r["samples"]:
            stats.samples += 1
            stats.completion_tokens += s["tokens"]
            if not s["text"].strip():
                stats.empty += 1
                stats.example("empty", {"problem": r["problem"]["id"], "teacher": r["teacher"],
                                        "finish_reason": s["finish_reason"]})
            if s["error"] == "unverified":
                stats.unverified += 1
            elif s["error"]:
                stats.grader_errors += 1
                stats.example("grader_error", {"problem": r["problem"]["id"], "error": s["error"]})
            stats.correct += int(s["correct"])
