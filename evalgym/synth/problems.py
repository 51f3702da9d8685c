"""New problems: a difficulty curriculum over procedural envs, and problems a teacher proposes from seeds.

    items, report = curriculum_items(cfg, verifier_for)        # prompts the current model sometimes solves
    items, report = propose_items(cfg, router, seeds)          # new problems, answered later by the teacher
    records, report = pseudo_verify(records, cfg)              # kept when the teacher's answers agree

**Curriculum.** For each env and each difficulty level (``curriculum.levels``: env knobs, e.g.
``[{digits: 1}, {digits: 2}, {digits: 3}]``; none: the env's own knobs) the current model (the run's
``model``, or ``curriculum.model``) samples ``n`` answers to ``candidates`` problems; a problem is kept when
its passes fall in ``band`` (default ``1..n-1``: dropped when always or never solved). The report gives
each level's solve rate and how many were always / never solved, so the ladder shows where the model's
frontier is. Kept problems (at most ``num_prompts`` per env, easier levels first) replace the env's plain
selection.

**Proposals.** The teacher (or ``propose.model``) writes a new problem from a seed problem of the envs'
training split: ``rephrase`` (same problem, other words), ``numbers`` (other numbers), ``compose`` (two
seeds into one). Each is then answered ``n`` times by its teacher like any prompt, and
:func:`pseudo_verify` keeps it only when at least ``propose.agreement`` of the answers agree (equivalence
by the env's math grader), sets the majority answer as its gold and marks it ``pseudo`` with its agreement.
Proposals need an env graded by the math verifier (answers are compared). A proposal whose text parses
back into a procedural env's own form (``Compute 3 + 4.`` for arithmetic) gets that env's canonical
content, so decontamination's eval-split check is exact for it.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

from evalgym.envs.base import TextEnv
from evalgym.errors import EvalgymError
from evalgym.synth.config import SynthConfig
from evalgym.synth.sources import Item, ListSource, Unverified, env_indices, make_split_env, question_of
from evalgym.types import ChatMessage, Problem, from_dict, to_dict

PROPOSE_PROMPTS = {
    "rephrase": "Rewrite the problem below in different words. Keep every number and the question the same.",
    "numbers": "Write a new problem like the one below with different numbers, so that its answer changes.",
    "compose": "Write one new problem that combines the two problems below, so that solving it needs both.",
}
_PROBLEM_LINE = re.compile(r"\b(?:new\s+)?problem\s*:\s*", re.I)
_CUT = re.compile(r"^\s*(?:answer|solution|final answer)\s*:", re.I | re.M)


# -- canonical forms of procedural envs -----------------------------------------------------------------

def _arithmetic(q: str) -> str | None:
    """``arithmetic:7 + 3 * 2`` from "Compute 7 + 3*2." in any spacing, case or number format."""
    from evalgym.synth.text import tokens

    toks = tokens(q)
    if len(toks) < 4 or toks[0] != "compute" or len(toks) % 2:
        return None
    body = toks[1:]
    nums, ops = body[0::2], body[1::2]
    if not all(t.isdigit() for t in nums) or not all(o in "+-*" for o in ops):
        return None
    return "arithmetic:" + " ".join(body)


def _linear(q: str) -> str | None:
    """``linear:a,b,c`` from "Solve for x: a x + b = c." in any spacing, case or number format."""
    from evalgym.synth.text import tokens

    toks = tokens(q)
    if toks[:3] != ["solve", "for", "x"] or "=" not in toks:
        return None
    k = toks.index("=")
    lhs, rhs = toks[3:k], toks[k + 1:]

    def signed(ts: list[str]) -> int | None:
        if ts[:1] == ["-"] and len(ts) == 2 and ts[1].isdigit():
            return -int(ts[1])
        return int(ts[0]) if len(ts) == 1 and ts[0].isdigit() else None

    if "x" not in lhs:
        return None
    i = lhs.index("x")
    a = {(): 1, ("-",): -1}.get(tuple(lhs[:i]))
    a = signed(lhs[:i]) if a is None else a
    rest = lhs[i + 1:]
    b = 0 if not rest else (int(rest[1]) * (1 if rest[0] == "+" else -1)
                            if len(rest) == 2 and rest[0] in "+-" and rest[1].isdigit() else None)
    c = signed(rhs)
    if a in (None, 0) or b is None or c is None:
        return None
    return f"linear:{a},{b},{c}"


CANONICALIZERS: dict[str, Callable[[str], str | None]] = {
    "arithmetic": _arithmetic, "retry-arithmetic": _arithmetic, "linear-equations": _linear,
}


def canonical_for(env_id: str | None, question: str, answer: str) -> tuple[str, bool]:
    """(canonical content, whether it is in the env's own form) for a problem that did not come from the env
    itself: a procedural env's form when the question parses into it, else question + answer (the form of
    dataset and reasoning-gym envs: their own when the env is one of those)."""
    from evalgym.envs.registry import CATALOG
    from evalgym.envs.sources import canonical_text

    info = CATALOG.get(env_id or "")
    if info is not None:
        parse = CANONICALIZERS.get(info.name)
        if parse is not None:
            c = parse(question)
            return (c, True) if c is not None else (canonical_text(question, answer), False)
        text_form = info.eval_split != "eval" or info.verifier == "reasoning-gym"
        return canonical_text(question, answer), text_form
    return canonical_text(question, answer), False


# -- curriculum -------------------------------------------------------------------------------------------

def curriculum_items(cfg: SynthConfig, verifier_for: Any, progress: bool = False) -> tuple[list[Item], dict[str, Any]]:
    from evalgym.policies.base import SamplingParams, make_policy
    from evalgym.rollouts import collect_many

    cc = cfg.curriculum
    assert cc is not None
    model = cc.model or cfg.model
    if not model:
        raise EvalgymError("curriculum.model: the current model to probe (in a recipe: the stage's `from`)")
    lo, hi = cc.band or (1, cc.n - 1)
    policy = make_policy(cc.backend, model)
    sampling = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cc.max_tokens or cfg.max_tokens)
    items: list[Item] = []
    levels_report = []
    try:
        for name in cfg.envs:
            taken = 0
            for li, knobs in enumerate(cc.levels or [{}]):
                env = make_split_env(cfg, name, knobs)
                env.verifier = verifier_for(env.verifier)
                idx = env_indices(env, cc.candidates or cfg.num_prompts, cfg.seed + li)
                res = collect_many(policy, [(env, i) for i in idx], n=cc.n, sampling=sampling,
                                   seed=cfg.seed + 104_729 * (li + 1), batch_prompts=cfg.batch_prompts, progress=progress)
                passes = [sum(t.correct for t in g.trajectories) for g in res.groups]
                keep = [i for i, c in zip(idx, passes) if lo <= c <= hi]
                room = max((cfg.num_prompts or len(keep)) - taken, 0)
                instr = getattr(env.source, "instruction", "") or ""
                items += [Item(env, i, question_of(env.source.problem(i), instr),
                               f"env:{env.source.info.id}/{env.source.split}") for i in keep[:room]]
                taken += min(len(keep), room)
                levels_report.append({"env": name, "level": li, "knobs": knobs, "probed": len(idx),
                                      "solve_rate": round(res.mean_reward(), 4), "always": passes.count(cc.n),
                                      "never": passes.count(0), "in_band": len(keep), "taken": min(len(keep), room)})
    finally:
        close = getattr(policy, "close", None)
        if close:
            close()
    return items, {"model": model, "band": [lo, hi], "n": cc.n, "levels": levels_report}


# -- proposals --------------------------------------------------------------------------------------------

def _proposer_messages(mode: str, seeds: list[str]) -> list[dict[str, str]]:
    body = "\n\n".join(f"Problem {k + 1}:\n{s}" for k, s in enumerate(seeds)) if len(seeds) > 1 else f"Problem:\n{seeds[0]}"
    return [{"role": "user", "content": f"{PROPOSE_PROMPTS[mode]}\n\n{body}\n\nReply with the new problem only, "
                                         "after 'Problem:'. Do not solve it."}]


def parse_proposal(text: str) -> str | None:
    """The new problem in a proposer's reply: the text after the last 'Problem:' line (or all of it), cut
    before any 'Answer:'/'Solution:'; None when nothing usable is left."""
    marks = list(_PROBLEM_LINE.finditer(text))
    body = text[marks[-1].end():] if marks else text
    cut = _CUT.search(body)
    body = (body[: cut.start()] if cut else body).strip().strip("\"'").strip()
    return body if 8 <= len(body) <= 2000 else None


def propose_items(cfg: SynthConfig, router: Any, seeds: list[Item], *, progress: bool = False) -> tuple[list[Item], dict[str, Any]]:
    """``propose.num`` new problems from ``seeds``, each served by an unverified env (graded by agreement)."""
    from evalgym.policies.base import SamplingParams
    from evalgym.synth.text import normalized
    from evalgym.teachers import Teacher

    pc = cfg.propose
    if not seeds:
        raise EvalgymError("propose: no seed problems (envs gave none)")
    for it in seeds:
        if getattr(it.env.verifier, "name", "") != "math":
            raise EvalgymError(f"propose: {it.problem.env_id} is graded by {it.env.verifier.name!r}; proposals need "
                               "an env graded by the math verifier (answers are compared for agreement)")
    fixed = Teacher.load(pc.model, cfg.teacher_backend, **cfg.teacher_kwargs) if pc.model else None
    rng = random.Random(cfg.seed * 31 + 7)
    plan = []
    for j in range(pc.num):
        mode = pc.modes[j % len(pc.modes)]
        picked = [seeds[rng.randrange(len(seeds))] for _ in range(2 if mode == "compose" else 1)]
        plan.append((mode, picked))
    by_teacher: dict[int, tuple[Any, list[int]]] = {}
    for j, (_, picked) in enumerate(plan):
        t = fixed or router.route(picked[0].problem)
        if t is not None:
            by_teacher.setdefault(id(t), (t, []))[1].append(j)
    texts: dict[int, str] = {}
    sampling = SamplingParams(temperature=pc.temperature, max_tokens=pc.max_tokens, seed=cfg.seed + 55_555)
    report: dict[str, Any] = {"asked": pc.num, "unusable": 0, "failed": 0, "examples": []}
    for t, js in by_teacher.values():
        try:
            outs = t.policy.generate([_proposer_messages(plan[j][0], [s.question for s in plan[j][1]]) for j in js],
                                     sampling, keys=js)
            texts.update({j: o[0].text for j, o in zip(js, outs)})
        except Exception as exc:  # noqa: BLE001 - a failing proposer is counted; the run goes on
            report["failed"] += len(js)
            report["examples"].append({"error": f"proposer {t.name}: {type(exc).__name__}: {str(exc)[:200]}"})
    problems: list[Problem] = []
    for j, (mode, picked) in enumerate(plan):
        q = parse_proposal(texts.get(j, ""))
        if q is None or (mode != "rephrase" and normalized(q) in {normalized(s.question) for s in picked}):
            report["unusable"] += 1 if j in texts else 0
            if j in texts and len(report["examples"]) < 5:
                report["examples"].append({"mode": mode, "reply": texts[j][:300]})
            continue
        seed_p = picked[0].problem
        instr = getattr(picked[0].env.source, "instruction", "") or ""
        prompt = f"{q}\n\n{instr}" if instr else q
        messages = tuple(m for m in seed_p.messages if m.role == "system") + (ChatMessage("user", prompt),)
        problems.append(Problem(id=f"proposed/{j}", env_id=seed_p.env_id, env_version=seed_p.env_version,
                                domain=seed_p.domain, messages=messages, answer="", index=j,
                                extra={"proposed_from": [s.problem.id for s in picked], "mode": mode, "question": q,
                                       "instruction": instr}))
    env = TextEnv(ListSource(problems), Unverified())
    report["proposed"] = len(problems)
    return [Item(env, i, p.extra["question"], "proposed") for i, p in enumerate(problems)], report


def pseudo_verify(cfg: SynthConfig, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Grade the answers of proposed problems by agreement; records of other prompts pass unchanged."""
    from evalgym.verifiers.math import MathVerifier
    from evalgym.verifiers.math_extract import extract_answer

    verifier = None
    out: list[dict[str, Any]] = []
    report = {"answered": 0, "kept": 0, "low_agreement": 0, "agreements": []}
    for rec in records:
        if rec["source"] != "proposed" or rec["error"]:
            out.append(rec)
            continue
        verifier = verifier or MathVerifier()
        report["answered"] += 1
        texts = [s["text"] for s in rec["samples"]]
        cands = list(dict.fromkeys(a for a in (extract_answer(t).answer for t in texts) if a))[:8]
        best: tuple[int, str, list[Any]] = (0, "", [])
        for cand in cands:
            verdicts = verifier.check_batch([(cand, t) for t in texts])
            votes = sum(v.correct for v in verdicts)
            if votes > best[0]:
                best = (votes, cand, verdicts)
        agreement = best[0] / len(texts) if texts else 0.0
        report["agreements"].append(round(agreement, 3))
        if agreement < cfg.propose.agreement:
            report["low_agreement"] += 1
            continue
        p = from_dict(Problem, rec["problem"])
        canonical, own = canonical_for(p.env_id, p.extra["question"], best[1])
        p = Problem(p.id, p.env_id, p.env_version, p.domain, p.messages, best[1], p.reference, p.index,
                    {**p.extra, "canonical": canonical, "env_scheme": own, "agreement": agreement})
        rec = {**rec, "problem": to_dict(p), "pseudo": {"answer": best[1], "agreement": round(agreement, 4),
                                                         "votes": best[0]}}
        rec["samples"] = [{**s, "correct": v.correct, "reward": v.reward, "error": None, "verifier": "agreement",
                           "verifier_version": f"math-{verifier.version}"} for s, v in zip(rec["samples"], best[2])]
        report["kept"] += 1
        out.append(rec)
    return out, report
