"""What is kept of the generated samples, and the shapes it is published in.

    kept, report = select(cfg, records)          # per prompt: the indices of its kept samples
    rows = shape_sft(kept); pairs = shape_dpo(cfg, kept); prompts = shape_rl(kept)

Keeping (``keep``): ``correct`` — samples the verifier (or judge, or the agreement of a proposed problem)
calls correct; ``best`` — the one highest-reward sample per prompt (best-of-n), if it has a reward at all;
``all`` — every non-empty sample that was not a grader error (unverified ones included). Then at most
``max_per_prompt`` per prompt (duplicate responses of one prompt count once), and ``pass_band: [lo, hi]``
keeps only prompts that ``lo``..``hi`` of the ``n`` samples solved (e.g. ``[1, 6]`` of 8 for RL prompt
curation: neither always nor never solved). Every dropped prompt and sample is counted by reason.

Shapes (rows carry ``env_id``, ``hash`` (the problem's content hash: trainers list it in
trained_problems.json), ``problem_id``, ``domain``, ``source``, ``teacher``, ``verified``):

- ``sft`` — ``{"messages": prompt + the kept response}`` per kept sample;
- ``dpo`` — ``{"prompt", "chosen", "rejected"}``: ``pairs: verified`` pairs a kept correct sample with a
  graded-incorrect sample of the same prompt; ``pairs: delta`` (Olmo 3's delta learning) pairs the teacher's
  best sample with the weak model's worst, when the teacher's is at least as good;
- ``rl`` — one prompt per kept prompt with its gold answer and verifier data (``extra``) and its pass rate:
  the format ``evalgym synth --prompts`` reads back.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from evalgym.synth.config import SynthConfig
from evalgym.synth.text import normalized


def _usable(s: dict[str, Any], allow_unverified: bool) -> bool:
    if not s["text"].strip():
        return False
    return s["error"] is None or (allow_unverified and s["error"] == "unverified")


def verified_kind(rec: dict[str, Any], s: dict[str, Any]) -> str:
    if rec.get("pseudo"):
        return "pseudo"
    if s["error"] == "unverified":
        return "none"
    return "judge" if s["verifier"] == "judge" else "verifier"


def select(cfg: SynthConfig, records: list[dict[str, Any]]) -> tuple[list[tuple[dict[str, Any], list[int]]], dict[str, Any]]:
    """(kept prompts with the indices of their kept samples, counts by reason)."""
    dropped: Counter[str] = Counter()
    samples_dropped: Counter[str] = Counter()
    kept: list[tuple[dict[str, Any], list[int]]] = []
    for rec in records:
        if rec["error"]:
            dropped["teacher failed"] += 1
            continue
        samples = rec["samples"]
        passes = sum(bool(s["correct"]) for s in samples)
        if cfg.pass_band is not None and not cfg.pass_band[0] <= passes <= cfg.pass_band[1]:
            dropped[f"pass band (solved by {passes} of {len(samples)})"] += 1
            continue
        usable = [i for i, s in enumerate(samples) if _usable(s, cfg.keep == "all")]
        for s in samples:
            if not s["text"].strip():
                samples_dropped["empty"] += 1
            elif s["error"] and not (cfg.keep == "all" and s["error"] == "unverified"):
                samples_dropped["unverified" if s["error"] == "unverified" else "grader error"] += 1
        if cfg.keep == "correct":
            chosen = [i for i in usable if samples[i]["correct"]]
            samples_dropped["incorrect"] += sum(1 for i in usable if not samples[i]["correct"])
        elif cfg.keep == "best":
            chosen = [max(usable, key=lambda i: (samples[i]["reward"], -i))] if usable else []
            samples_dropped["not the best"] += max(len(usable) - 1, 0)
        else:
            chosen = usable
        seen: set[str] = set()
        unique = []
        for i in chosen:
            key = normalized(samples[i]["text"])
            if key in seen:
                samples_dropped["duplicate response"] += 1
                continue
            seen.add(key)
            unique.append(i)
        if cfg.max_per_prompt is not None and len(unique) > cfg.max_per_prompt:
            samples_dropped["over max_per_prompt"] += len(unique) - cfg.max_per_prompt
            unique = unique[: cfg.max_per_prompt]
        if not unique and "rl" not in cfg.shapes:
            dropped["no sample kept"] += 1
            continue
        kept.append((rec, unique))
    return kept, {"prompts_kept": len(kept), "samples_kept": sum(len(k) for _, k in kept),
                  "prompts_dropped": {k: v for k, v in dropped.items() if v},
                  "samples_dropped": {k: v for k, v in samples_dropped.items() if v}}


def _meta(rec: dict[str, Any]) -> dict[str, Any]:
    from evalgym.types import Problem, content_hash, from_dict

    problem: Problem = from_dict(Problem, rec["problem"])
    pseudo = rec.get("pseudo") or {}
    return {"env_id": problem.env_id, "hash": content_hash(problem), "problem_id": problem.id,
            "domain": problem.domain, "source": rec["source"], "teacher": rec["teacher"] or "",
            "agreement": pseudo.get("agreement")}


def _prompt_messages(rec: dict[str, Any], s: dict[str, Any]) -> list[dict[str, str]]:
    return s.get("conversation") or [{"role": m["role"], "content": m["content"]} for m in rec["problem"]["messages"]]


def shape_sft(kept: list[tuple[dict[str, Any], list[int]]]) -> list[dict[str, Any]]:
    rows = []
    for rec, idx in kept:
        meta = _meta(rec)
        for i in idx:
            s = rec["samples"][i]
            rows.append({"messages": _prompt_messages(rec, s) + [{"role": "assistant", "content": s["text"]}],
                         **meta, "reward": float(s["reward"]), "verified": verified_kind(rec, s),
                         "verifier": s["verifier"], "verifier_version": s["verifier_version"]})
    return rows


def shape_dpo(cfg: SynthConfig, kept: list[tuple[dict[str, Any], list[int]]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for rec, idx in kept:
        samples = rec["samples"]
        meta = _meta(rec)
        prompt = [{"role": m["role"], "content": m["content"]} for m in rec["problem"]["messages"]]
        if cfg.pairs == "verified":
            chosen = [samples[i] for i in idx if samples[i]["correct"]]
            rejected = [s for s in samples if _usable(s, False) and not s["correct"]]
            model_c = model_r = rec["teacher"] or ""
        else:
            weak = [s for s in (rec.get("weak") or []) if s["text"].strip()]
            strong = [samples[i] for i in idx] or [s for s in samples if _usable(s, True)]
            chosen = sorted(strong, key=lambda s: -s["reward"])[:1]
            rejected = sorted(weak, key=lambda s: s["reward"])[:1]
            model_c, model_r = rec["teacher"] or "", rec.get("weak_model") or ""
        pairs = [(c, r) for c, r in zip(chosen, rejected) if normalized(c["text"]) != normalized(r["text"])
                 and c["reward"] >= r["reward"]][: cfg.max_pairs_per_prompt]
        if not pairs:
            skipped["no chosen/rejected pair" if chosen and rejected else
                    ("no rejected sample" if chosen else "no chosen sample")] += 1
        for c, r in pairs:
            rows.append({"prompt": prompt, "chosen": c["text"], "rejected": r["text"], **meta, "kind": cfg.pairs,
                         "chosen_reward": float(c["reward"]), "rejected_reward": float(r["reward"]),
                         "chosen_model": model_c, "rejected_model": model_r, "verified": verified_kind(rec, c)})
    return rows, dict(skipped)


def shape_rl(kept: list[tuple[dict[str, Any], list[int]]]) -> list[dict[str, Any]]:
    rows = []
    for rec, _ in kept:
        p = rec["problem"]
        n = len(rec["samples"])
        extra = {k: v for k, v in (p.get("extra") or {}).items()}
        rows.append({"prompt": [{"role": m["role"], "content": m["content"]} for m in p["messages"]],
                     "answer": p["answer"], "env": p["env_id"] if not p["env_id"].startswith("synth/") else None,
                     **_meta(rec), "id": p["id"], "extra": json.dumps(extra, default=str),
                     "pass_rate": sum(bool(s["correct"]) for s in rec["samples"]) / n if n else 0.0})
    return rows
