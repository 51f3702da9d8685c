"""Evaluate a model or checkpoint on tasks with lm-eval and record every score, with its 95% interval and
the manifest that produced it, in the results store. ``evalgym eval`` and ``evalgym watch`` run this.

    spec = EvalSpec(tasks=["evalgym_arithmetic", "gsm8k"], limit=64)
    rows = evaluate_model("runs/sft/step_000200", spec, store=ResultsStore("runs/results.sqlite"))

    # in a training script: every checkpoint the trainer saves is evaluated right after the save
    with evaluate_on_save(EvalSpec(tasks=["evalgym_arithmetic"], limit=64), ResultsStore(...)):
        train_sft(cfg)

Resume: each task is evaluated on its own and recorded in one transaction, so a run killed at any
point (SIGKILL too) and started again skips every (run, checkpoint, task) already in the store.

Intervals: a score whose per-doc values are all 0/1 gets a Wilson 95% interval (instruction-level
IFEval scores: over all instructions); any other mean (pass@1 from k samples, mean@k, a mean reward)
a seeded percentile bootstrap over docs. ``stderr`` is lm-eval's where it reports one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalgym.benchmarks.store import ResultRow, ResultsStore, utc_now
from evalgym.errors import EvalgymError
from evalgym.evaluate import wilson

log = logging.getLogger(__name__)
BOOTSTRAP_ITERS = 2000


@dataclass
class EvalSpec:
    """What to evaluate and how (CLI flags of ``evalgym eval`` / ``watch``)."""

    tasks: list[str]
    limit: int | None = None
    num_samples: int = 1                  # samples per doc of env tasks (pass@k, mean@k)
    temperature: float | None = None      # env tasks: None = greedy for 1 sample, 1.0 for several
    max_tokens: int = 256                 # env tasks' generation budget
    seed: int = 0
    backend: str = "hf"
    device: str | None = None
    threads: int | None = None            # hf: torch threads (process-wide; default: torch's own)
    num_fewshot: int | None = None        # standard tasks (None: the task's own)
    chat_template: bool | None = None     # None: when the model has one
    include_path: list[str] = field(default_factory=list)
    data_dir: str | None = None
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # env name -> source knobs

    def manifest(self) -> dict[str, Any]:
        return {"sampling": {"num_samples": self.num_samples, "temperature": self.temperature,
                             "max_tokens": self.max_tokens, "seed": self.seed},
                "limit": self.limit, "num_fewshot": self.num_fewshot, "backend": self.backend, "seed": self.seed,
                "env_kwargs": self.env_kwargs or None}


@dataclass(frozen=True)
class Target:
    """Who is evaluated: ``model`` (what the engine loads), and the store key (run, checkpoint, step)."""

    model: str
    run: str
    checkpoint: str
    step: int | None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def describe(model: str, run: str | None = None, step: int | None = None) -> Target:
    """A checkpoint folder (``run_dir/step_000100`` with ``meta.json``) is keyed by its run and step;
    anything else (``tiny``, a model folder, a hub id) by its name, with run defaulting to it."""
    path = Path(model)
    meta_file = path / "meta.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError as exc:
            raise EvalgymError(f"{meta_file}: not JSON ({exc})") from None
        run_name = run or str(meta.get("run_id") or path.resolve().parent.name)
        return Target(str(path), run_name, f"{run_name}/{path.name}",
                      step if step is not None else int(meta.get("step", 0)), meta)
    return Target(str(model), run or str(model), str(model), step)


# -- scores ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    stderr: float | None
    ci_low: float
    ci_high: float
    n: int


def bootstrap_ci(values: Sequence[float], seed: int = 0, iters: int = BOOTSTRAP_ITERS) -> tuple[float, float]:
    """Percentile 95% interval of the mean by resampling ``values`` (seeded: reproducible)."""
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(iters))
    return (means[int(0.025 * iters)], means[min(iters - 1, int(0.975 * iters))])


def interval(values: Sequence[Any], seed: int = 0) -> tuple[float, float, float, int, float]:
    """(mean, ci_low, ci_high, n, stderr) of per-doc values; lists (per-instruction) are flattened."""
    flat = [float(x) for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    n = len(flat)
    if n == 0:
        return (math.nan, 0.0, 1.0, 0, math.nan)
    mean = sum(flat) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in flat) / (n - 1)) if n > 1 else 0.0
    if all(x in (0.0, 1.0) for x in flat):
        lo, hi = wilson(sum(flat), n)
    else:
        lo, hi = bootstrap_ci(flat, seed)
    return mean, lo, hi, n, sd / math.sqrt(n)


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
        stderr = agg.get(f"{metric}_stderr,{flt}")
        stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else sd
        if per_doc and abs(mean - float(value)) > 1e-6:
            raise EvalgymError(f"{task}: lm-eval's {key}={value} disagrees with its samples' mean {mean}")
        name = metric if flt == "none" else f"{metric},{flt}"
        scores.append(Score(name, float(value), stderr if math.isfinite(stderr) else None, lo, hi, n))
    return scores


# -- evaluation ------------------------------------------------------------------------------------


class PolicyCache:
    """One engine for a sequence of checkpoints of the same model: later ones are loaded with
    ``load_weights`` (no engine restart, which costs a vLLM engine most of its start-up)."""

    def __init__(self, backend: str, device: str | None = None, threads: int | None = None):
        self.backend, self.device, self.threads, self.policy, self.loaded = backend, device, threads, None, None

    def get(self, model: str) -> Any:
        from evalgym.policies.base import make_policy

        if self.policy is None:
            kwargs: dict[str, Any] = {"device": self.device} if self.device else {}
            if self.threads and self.backend == "hf":
                kwargs["threads"] = self.threads
            self.policy = make_policy(self.backend, model, **kwargs)
        elif self.loaded != model:
            if not (Path(model) / "config.json").is_file():
                raise EvalgymError(f"{model}: only checkpoint folders can be swapped into a running engine")
            self.policy.load_weights(model)
        self.loaded = model
        return self.policy

    def close(self) -> None:
        if self.policy is not None:
            self.policy.close()
        self.policy = self.loaded = None


def _versions() -> dict[str, Any]:
    import lm_eval

    from evalgym.trainers.checkpoint import git_sha

    return {"lm_eval_version": getattr(lm_eval, "__version__", None) or _dist_version("lm_eval"),
            "git_sha": git_sha()}


def _dist_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def evaluate_model(model: str | Target, spec: EvalSpec, *, store: ResultsStore | None = None,
                   run: str | None = None, policies: PolicyCache | None = None,
                   on_task: Callable[[str, str, list[ResultRow]], None] | None = None,
                   manifest: dict[str, Any] | None = None) -> list[ResultRow]:
    """Evaluate ``model`` on ``spec.tasks``; record each task's rows as soon as it finishes. Tasks the
    store already has for this (run, checkpoint) are skipped (their stored rows are returned).
    ``on_task(task, "done" | "skipped", rows)`` reports progress."""
    import lm_eval

    from evalgym.benchmarks.lmeval import ENV_PREFIX, PolicyLM, build_task, task_manager, task_names

    target = model if isinstance(model, Target) else describe(model, run)
    names = task_names(",".join(spec.tasks))
    own_policies = policies is None
    policies = policies or PolicyCache(spec.backend, spec.device, spec.threads)
    versions = {**_versions(), **(manifest or {})}
    out: list[ResultRow] = []
    try:
        for name in names:
            if store is not None and store.done(target.run, target.checkpoint, name):
                rows = [r for r in store.rows(runs=[target.run], tasks=[name]) if r.checkpoint == target.checkpoint]
                out.extend(rows)
                if on_task:
                    on_task(name, "skipped", rows)
                continue
            t0 = time.perf_counter()
            env_options = ({"num_samples": spec.num_samples, "temperature": spec.temperature,
                            "max_tokens": spec.max_tokens, "env_kwargs": spec.env_kwargs.get(name.removeprefix(ENV_PREFIX))}
                           if name.startswith(ENV_PREFIX) else {})
            tasks = build_task(name, data_dir=spec.data_dir, include_path=spec.include_path, **env_options)
            lm = PolicyLM(policies.get(target.model), seed=spec.seed, max_gen_toks=spec.max_tokens)
            chat = lm.chat if spec.chat_template is None else spec.chat_template
            results = lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=spec.limit, num_fewshot=spec.num_fewshot,
                                              apply_chat_template=chat, log_samples=True, bootstrap_iters=1000,
                                              task_manager=task_manager((), False),  # tasks are built: no index
                                              random_seed=spec.seed, numpy_random_seed=spec.seed,
                                              torch_random_seed=spec.seed, fewshot_random_seed=spec.seed)
            wall = time.perf_counter() - t0
            rows = rows_from_results(results, name, target, spec, {**versions, "chat_template": bool(chat),
                                                                   "eval_s": round(wall, 3)})
            if store is not None:
                store.record(rows)
            out.extend(rows)
            if on_task:
                on_task(name, "done", rows)
    finally:
        if own_policies:
            policies.close()
    return out


def rows_from_results(results: dict[str, Any], name: str, target: Target, spec: EvalSpec,
                      extra: dict[str, Any]) -> list[ResultRow]:
    """Store rows of one ``--tasks`` entry (a group gives rows for each of its tasks)."""
    rows = []
    for task in results["results"]:
        if task not in results.get("configs", {}):
            continue  # a group's aggregate line; its tasks have their own rows
        config = results["configs"][task]
        meta = config.get("metadata") or {}
        manifest = {
            "model": target.model, "step": target.step, "task_version": results.get("versions", {}).get(task),
            "verifier": meta.get("verifier"), "verifier_version": meta.get("verifier_version"),
            "env_id": meta.get("env_id"), "data": meta.get("data"),
            "docs": results.get("n-samples", {}).get(task, {}).get("effective"),
            "num_fewshot": results.get("n-shot", {}).get(task, config.get("num_fewshot")),
            "generation_kwargs": config.get("generation_kwargs"),
            "recipe": target.meta.get("recipe"), "stage": target.meta.get("stage"),
            "run_id": target.meta.get("run_id"), "parent": target.meta.get("parent"),
            "time": utc_now(), **spec.manifest(), **extra,
        }
        task_key = name if task == name or len(results["configs"]) == 1 else task
        for s in task_scores(results, task, spec.seed):
            rows.append(ResultRow(target.run, target.checkpoint, target.step, task_key, s.metric, s.value,
                                  stderr=s.stderr, ci_low=s.ci_low, ci_high=s.ci_high, n=s.n,
                                  manifest=json.loads(json.dumps(manifest, default=str))))
    return rows


def format_rows(rows: Sequence[ResultRow]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the ``evalgym eval`` table."""
    header = ["task", "metric", "value", "95% CI", "n", "checkpoint"]
    cells = [[r.task, r.metric, f"{r.value:.4f}",
              f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if r.ci_low is not None and r.ci_high is not None else "-",
              str(r.n if r.n is not None else "-"), r.checkpoint] for r in rows]
    return header, cells


def row_dict(row: ResultRow) -> dict[str, Any]:
    return asdict(row)


# -- the in-process checkpoint loop ---------------------------------------------------------------


class OnSaveEvaluator:
    """Subscribed to ``evalgym.trainers.checkpoint``: evaluates each checkpoint right after it is saved
    (training waits meanwhile; ``evalgym watch`` is the non-blocking alternative). An evaluation that
    fails is logged and kept in ``errors``; it does not stop training."""

    def __init__(self, spec: EvalSpec, store: ResultsStore):
        from evalgym.trainers.checkpoint import subscribe

        self.spec, self.store = spec, store
        self.policies = PolicyCache(spec.backend, spec.device, spec.threads)
        self.evaluated: list[Any] = []
        self.errors: list[tuple[Any, str]] = []
        self._unsubscribe = subscribe(self)

    def __call__(self, ref: Any) -> None:
        from evalgym.trainers.checkpoint import rng_state, set_rng_state

        state = rng_state()  # lm-eval seeds the global RNGs: training must go on as if nothing ran
        try:
            evaluate_model(describe(ref.path, ref.run_id), self.spec, store=self.store, policies=self.policies)
            self.evaluated.append(ref)
        except Exception as exc:  # noqa: BLE001 - training goes on; the error is kept and logged
            log.exception("evaluating checkpoint %s failed", ref.path)
            self.errors.append((ref, f"{type(exc).__name__}: {exc}"))
        finally:
            set_rng_state(state)

    def close(self) -> None:
        self._unsubscribe()
        self.policies.close()

    def __enter__(self) -> OnSaveEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def evaluate_on_save(spec: EvalSpec, store: ResultsStore) -> OnSaveEvaluator:
    """Evaluate every checkpoint saved in this process from now on; ``.close()`` (or a ``with`` block) stops."""
    return OnSaveEvaluator(spec, store)


def evaluate_checkpoint(model: str, tasks: Sequence[str], *, store: str | ResultsStore, run: str | None = None,
                        step: int | None = None, manifest: dict[str, Any] | None = None, limit: int | None = None,
                        num_samples: int = 1, max_tokens: int = 256, env_kwargs: dict[str, dict[str, Any]] | None = None,
                        seed: int = 0, backend: str = "hf", temperature: float | None = None,
                        progress: bool = False) -> int:
    """One checkpoint (a folder) or model name into the store (a path or an open store), for callers
    such as the recipe runner; ``manifest`` entries (recipe, stage, ...) join every row's manifest.
    Returns the number of rows written (0 when every task was already stored)."""
    spec = EvalSpec(tasks=list(tasks), limit=limit, num_samples=num_samples, max_tokens=max_tokens, seed=seed,
                    backend=backend, temperature=temperature, env_kwargs=dict(env_kwargs or {}))
    written: list[int] = []

    def note(task: str, status: str, rows: list[ResultRow]) -> None:
        if status == "done":
            written.append(len(rows))
        if progress:
            print(f"  eval {model} {task}: " + ("already stored" if status == "skipped" else f"{len(rows)} rows"),
                  file=sys.stderr, flush=True)

    own = not isinstance(store, ResultsStore)
    db = ResultsStore(store) if own else store
    try:
        evaluate_model(describe(model, run, step), spec, store=db, on_task=note, manifest=manifest)
    finally:
        if own:
            db.close()
    return sum(written)
