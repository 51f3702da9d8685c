"""Running one of lm-eval's own tasks (``gsm8k``, ``ifeval``, a multiple-choice task, ...) through an evalgym
policy, and turning lm-eval's output into the store's scores (with intervals) and per-sample records.

    out = run_lmeval_task(policy, "gsm8k", limit=20, num_samples=1, seed=0)
    out.scores, out.records, out.version, out.hashes

lm-eval's defaults are kept, so a score can be put beside one published with lm-eval: no chat template
unless asked (``chat_template=True`` renders the context with the model's template, as lm-eval's
``--apply_chat_template``; few-shot examples then go as alternating turns, lm-eval's
``fewshot_as_multiturn``), few-shot examples drawn with lm-eval's seed 1234 (``fewshot_seed``), and
lm-eval's own global seeds (0 / 1234 / 1234). ``seed`` seeds only the samples the policy draws.

``num_samples=k > 1`` (generation tasks): the task runs k times with sampling on (temperature 1.0 unless
given), each run with its own sample seeds; per doc, ``pass@1`` is the mean of the task's first metric
over the k runs, ``pass@k`` whether any run scored, ``mean@k`` the mean (other metrics: ``<metric>_mean@k``),
each per lm-eval filter (``pass@1,strict-match``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalgym.benchmarks.lmeval import PolicyLM, build_standard_task, task_manager
from evalgym.errors import EvalgymError
from evalgym.evaluate import Score, interval, pass_at_k

LMEVAL_FEWSHOT_SEED = 1234     # lm-eval's own default


@dataclass
class LMEvalOutput:
    task: str
    version: Any
    scores: list[Score]
    records: list[dict[str, Any]]
    hashes: list[str] | None          # content hashes of the docs, where the dataset is one evalgym knows
    configs: dict[str, Any] = field(default_factory=dict)
    n_docs: int = 0


def task_version(tasks: Sequence[Any]) -> Any:
    versions = []
    for t in tasks:
        meta = getattr(getattr(t, "config", None), "metadata", None) or {}
        versions.append(meta.get("version", getattr(t, "VERSION", None)))
    return versions[0] if len(versions) == 1 else versions


def task_scores(results: dict[str, Any], task: str, seed: int = 0) -> list[Score]:
    """Every metric lm-eval reported for ``task``, with its interval from the logged samples."""
    agg = results["results"][task]
    samples = results.get("samples", {}).get(task, [])
    scores = []
    for key, value in agg.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric, flt = key.split(",", 1)
        per_doc = [s[metric] for s in samples if s.get("filter") == flt and metric in s]
        mean, lo, hi, n, sd = interval(per_doc, seed)
        if per_doc and abs(mean - float(value)) > 1e-6:
            raise EvalgymError(f"{task}: lm-eval's {key}={value} disagrees with its samples' mean {mean}")
        name = metric if flt == "none" else f"{metric},{flt}"
        scores.append(Score(name, float(value), lo, hi, n, sd if math.isfinite(sd) else None))
    return scores


def _sampled_scores(runs: list[dict[str, Any]], task: str, k: int, seed: int) -> list[Score]:
    """pass@1 / pass@k / mean@k per filter from k runs of one task (see the module docstring)."""
    per: dict[tuple[str, str], dict[int, list[float]]] = {}
    order: list[str] = []
    for results in runs:
        for s in results.get("samples", {}).get(task, []):
            for metric in s.get("metrics", []) or []:
                if metric not in s or isinstance(s[metric], (list, dict)):
                    continue
                if metric not in order:
                    order.append(metric)
                per.setdefault((metric, s.get("filter", "none")), {}).setdefault(int(s["doc_id"]), []).append(
                    float(s[metric]))
    if not per:
        raise EvalgymError(f"{task}: no per-sample metrics to compute pass@{k} from")
    scores = []
    for (metric, flt), docs in per.items():
        suffix = "" if flt == "none" else f",{flt}"
        values = [v for v in docs.values() if len(v) == k]
        if metric == order[0]:
            stats = {"pass@1": [sum(v) / k for v in values],
                     f"pass@{k}": [pass_at_k(k, sum(x >= 1.0 for x in v), k) for v in values],
                     f"mean@{k}": [sum(v) / k for v in values]}
        else:
            stats = {f"{metric}_mean@{k}": [sum(v) / k for v in values]}
        for name, vals in stats.items():
            mean, lo, hi, n, sd = interval(vals, seed)
            scores.append(Score(name + suffix, mean, lo, hi, n, sd if math.isfinite(sd) else None))
    return scores


def _doc_hash(config: dict[str, Any], doc: dict[str, Any]) -> str | None:
    """The content hash evalgym's own env gives the same problem (GSM8K, MATH), else None."""
    from evalgym.envs.math_data import gsm8k_fields, math_fields
    from evalgym.envs.sources import canonical_text
    from evalgym.types import canonical_hash

    if "question" in doc and isinstance(doc.get("answer"), str) and "####" in doc["answer"]:
        question, answer, _, _ = gsm8k_fields(doc)
    elif "problem" in doc and "solution" in doc:
        question, answer, _, _ = math_fields(doc)
    else:
        return None
    return canonical_hash(canonical_text(question, answer))


def _records(results: dict[str, Any], task: str, rep: int, raw: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One record per doc of one run: the context, the response (raw, before thinking is cut), what the
    filters kept, and every filter's metric values."""
    by_doc: dict[int, dict[str, Any]] = {}
    for s in results.get("samples", {}).get(task, []):
        doc_id = int(s["doc_id"])
        flt = s.get("filter", "none")
        metrics = {m: s[m] for m in (s.get("metrics") or []) if m in s}
        rec = by_doc.get(doc_id)
        if rec is None:
            args = s.get("arguments") or []
            context = args[0][0] if args and isinstance(args[0], (list, tuple)) else ""
            resps = s.get("resps") or []
            if args and len(args[0]) > 1 and isinstance(args[0][1], str) and not isinstance(args[0][1], dict):
                # loglikelihood: one (context, continuation) per choice; the answer is the likeliest
                lls = [r[0][0] if r and isinstance(r[0], (list, tuple)) else None for r in resps]
                best = max(range(len(lls)), key=lambda i: lls[i] if lls[i] is not None else -math.inf) if lls else 0
                completion, details = args[best][1] if args else "", {"loglikelihoods": lls}
            else:
                texts = resps[0] if resps and isinstance(resps[0], list) else resps
                completion = str(texts[0]) if texts else ""
                details = {}
            raw_texts = raw.get(context) or []
            rec = by_doc[doc_id] = {
                "doc": doc_id, "sample": rep, "problem_id": f"{task}/{doc_id}", "prompt": [{"role": "context",
                                                                                         "content": context}],
                "completion": raw_texts[rep] if rep < len(raw_texts) else completion, "graded": completion,
                "answer": str(s.get("target", "")), "filtered": {}, "verdict": details, "metrics": {}}
        rec["filtered"][flt] = s.get("filtered_resps")
        rec["metrics"][flt] = metrics
    out = []
    for rec in by_doc.values():
        first = next(iter(rec["metrics"].values()), {})
        value = next(iter(first.values()), 0.0) if first else 0.0
        value = float(value) if isinstance(value, (int, float)) else 0.0
        rec.update(reward=value, correct=value >= 1.0, error=None)
        out.append(json.loads(json.dumps(rec, default=str)))
    return sorted(out, key=lambda r: r["doc"])


def run_lmeval_task(policy: Any, name: str, *, limit: int | None = None, num_samples: int = 1,
                    temperature: float | None = None, max_tokens: int = 256, seed: int = 0,
                    num_fewshot: int | None = None, fewshot_seed: int = LMEVAL_FEWSHOT_SEED,
                    chat_template: bool = False, think: tuple[str, str] | None = None,
                    data_dir: str | None = None, include_path: Sequence[str] = (),
                    tasks: list[Any] | None = None) -> LMEvalOutput:
    """Run lm-eval's task ``name`` once (or k times, ``num_samples``) through ``policy``."""
    import lm_eval

    if num_samples < 1:
        raise EvalgymError(f"num_samples must be >= 1, got {num_samples}")
    runs = []
    raw: dict[str, list[str]] = {}
    records: list[dict[str, Any]] = []
    for rep in range(num_samples):
        built = tasks if tasks is not None and rep == 0 else build_standard_task(name, data_dir=data_dir,
                                                                                  include_path=include_path)
        lm = PolicyLM(policy, seed=seed if num_samples == 1 else seed * 1_000 + rep, max_gen_toks=max_tokens,
                      think=think)
        lm.raw_outputs = raw
        gen_kwargs = None
        if num_samples > 1:
            gen_kwargs = {"do_sample": True, "temperature": 1.0 if temperature is None else float(temperature)}
        elif temperature:
            gen_kwargs = {"do_sample": True, "temperature": float(temperature)}
        results = lm_eval.simple_evaluate(model=lm, tasks=built, limit=limit, num_fewshot=num_fewshot,
                                          apply_chat_template=chat_template, log_samples=True, bootstrap_iters=0,
                                          gen_kwargs=gen_kwargs, task_manager=task_manager((), False),
                                          fewshot_random_seed=fewshot_seed)
        if results is None:
            raise EvalgymError(f"{name}: lm-eval returned no results")
        runs.append(results)
        names = [t for t in results["results"] if t in results.get("configs", {})]
        for t in names:
            records += _records(results, t, rep, raw)
    first = runs[0]
    subtasks = [t for t in first["results"] if t in first.get("configs", {})]
    if len(subtasks) != 1:
        raise EvalgymError(f"{name}: a group of {len(subtasks)} tasks ({subtasks[:5]}...); evaluate its tasks by "
                           "name, one --tasks entry each")
    task = subtasks[0]
    scores = task_scores(first, task, seed) if num_samples == 1 else _sampled_scores(runs, task, num_samples, seed)
    config = first["configs"][task]
    docs = {int(s["doc_id"]): s["doc"] for s in first.get("samples", {}).get(task, [])}
    hashes = [_doc_hash(config, docs[i]) for i in sorted(docs)]
    return LMEvalOutput(task=task, version=first.get("versions", {}).get(task), scores=scores, records=records,
                        hashes=None if any(h is None for h in hashes) else [h for h in hashes if h],
                        configs={task: config}, n_docs=len(docs))
