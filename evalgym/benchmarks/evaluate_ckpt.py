"""Evaluate a model or checkpoint on tasks and record every score (with its 95 % interval), its per-sample
records, its contamination check and the manifest that produced it in the results store.
``evalgym eval``, ``evalgym watch`` and the recipe runner run this.

    spec = EvalSpec(tasks=["evalgym_arithmetic", "gsm8k"], limit=64)
    rows = evaluate_model("runs/sft/step_000200", spec, store=ResultsStore("runs/results.sqlite"))

    # in a training script: evaluate every checkpoint right after it is saved (an explicit step of the loop)
    with CheckpointEvaluator(EvalSpec(tasks=["evalgym_arithmetic"], limit=64), store) as evaluator:
        train_sft(cfg, after_save=evaluator)

Env tasks (``evalgym_<env>``) go through the evaluation driver (``evalgym.evaluate``) on the env's
evaluation split; lm-eval's own tasks through lm-eval with its defaults (``evalgym.benchmarks.lmeval_run``).

The store key is (run id, checkpoint, task, settings hash): the run id is the resolved run folder (or the
model, with the run name it is evaluated under), never a basename, and the settings hash covers every
evaluation setting (task and verifier versions, split, limit, samples, sampling, max tokens, thinking tags,
env kwargs, seeds, few-shot, chat template, backend, lm-eval version), so a changed setting makes a new
evaluation. Resume: each task is recorded in one transaction, so a run killed at any point (SIGKILL too)
and started again skips every evaluation already stored. A task that fails is stored as an error (shown in
the leaderboard) and the others still run; :class:`EvaluationFailed` is raised at the end, naming them.

Contamination: for a checkpoint, the overlap of the evaluated problems with everything its lineage trained
on (``evalgym.benchmarks.contamination``) is stored with the score (``manifest["contamination"]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalgym.benchmarks.contamination import contamination
from evalgym.benchmarks.lmeval import TaskRef, task_names
from evalgym.benchmarks.store import ResultRow, ResultsStore, eval_key, utc_now
from evalgym.errors import EvalgymError
from evalgym.evaluate import THINK_TAGS, EvalSampling, Score, eval_env, eval_indices, evaluate

log = logging.getLogger(__name__)


class EvaluationFailed(EvalgymError):
    """Some tasks failed (their errors are in the store); ``rows`` holds what the others scored."""

    def __init__(self, message: str, rows: list[ResultRow], failures: list[tuple[str, str]]):
        super().__init__(message)
        self.rows, self.failures = rows, failures


@dataclass
class EvalSpec:
    """What to evaluate and how (the flags of ``evalgym eval`` / ``watch``, a recipe's ``eval``)."""

    tasks: list[str]
    limit: int | None = None
    num_samples: int = 1                  # samples per problem (pass@k, mean@k)
    temperature: float | None = None      # None: greedy for 1 sample, 1.0 for several
    max_tokens: int = 256                 # generation budget of env tasks (and lm-eval tasks' default)
    seed: int = 0                         # sampling seed (lm-eval's own seeds stay at lm-eval's defaults)
    backend: str = "hf"
    device: str | None = None
    threads: int | None = None            # hf: torch threads (process-wide; default: torch's own)
    num_fewshot: int | None = None        # lm-eval tasks (None: the task's own)
    fewshot_seed: int = 1234              # lm-eval tasks: lm-eval's default
    chat_template: bool | None = None     # None: env tasks through the chat template, lm-eval tasks without
    think: tuple[str, str] | None = THINK_TAGS   # thinking section cut before answers are read
    split: str | None = None              # env tasks: None = each env's evaluation split
    include_path: list[str] = field(default_factory=list)
    data_dir: str | None = None
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # env name -> source knobs

    def sampling(self) -> EvalSampling:
        return EvalSampling(num_samples=self.num_samples, temperature=self.temperature, max_tokens=self.max_tokens,
                            seed=self.seed, think=self.think)

    def knobs(self, ref: TaskRef) -> dict[str, Any]:
        """The env kwargs given for this env task (by env name, id or task name)."""
        from evalgym.envs.registry import CATALOG

        info = CATALOG[ref.env_id] if ref.env_id else None
        for key in ((info.name, info.id, ref.name) if info else (ref.name,)):
            if key in self.env_kwargs:
                return dict(self.env_kwargs[key] or {})
        return {}


@dataclass(frozen=True)
class Target:
    """Who is evaluated: ``model`` (what the engine loads) and its store identity: ``run_id`` (unique:
    the resolved run folder, or the model), ``run`` (display name), ``checkpoint`` (display), ``step``."""

    model: str
    run: str
    checkpoint: str
    step: int | None
    run_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def describe(model: str, run: str | None = None, step: int | None = None) -> Target:
    """A checkpoint folder (``run_dir/step_000100`` with ``meta.json``) is keyed by its run folder and step;
    anything else (``tiny``, a model folder, a hub id) by its name or resolved folder, prefixed by ``run@``
    when it is evaluated under a run name of its own."""
    path = Path(model)
    meta_file = path / "meta.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError as exc:
            raise EvalgymError(f"{meta_file}: not JSON ({exc})") from None
        run_name = run or str(meta.get("run_id") or path.resolve().parent.name)
        return Target(str(path), run_name, f"{run_name}/{path.name}",
                      step if step is not None else int(meta.get("step", 0)), str(path.resolve().parent), meta)
    run_id = str(path.resolve()) if path.is_dir() else str(model)
    if run and run != str(model):
        # a plain model has no run folder: the name it is evaluated under is part of its identity, so one
        # model evaluated as two runs (each recipe's stage-0 base, ``--run a`` then ``--run b``) is two
        # evaluations, each found under its own name, never one skipped as "already stored" under the other
        run_id = f"{run}@{run_id}"
    return Target(str(model), run or str(model), str(model), step, run_id)


def settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    import importlib.metadata
    import subprocess

    try:
        lm_eval_version = importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        lm_eval_version = None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"lm_eval_version": lm_eval_version, "git_sha": sha}


# -- one task ----------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    ref: TaskRef
    settings: dict[str, Any]
    run: Callable[[Any], tuple[list[Score], list[dict[str, Any]], list[str] | None, dict[str, Any]]]


def _prepare_env(ref: TaskRef, spec: EvalSpec) -> _Prepared:
    knobs = spec.knobs(ref)
    text_env, split = eval_env(ref.env_id or ref.name, split=spec.split, env_kwargs=knobs, data_dir=spec.data_dir,
                               think=spec.think)
    indices = eval_indices(text_env, spec.limit)    # too many asked -> an error now, before anything runs
    sampling = spec.sampling()
    info = text_env.source.info
    settings = {"kind": "env", "task": ref.name, "env_id": info.id, "task_version": info.version,
                "verifier": text_env.verifier.name, "verifier_version": str(text_env.verifier.version),
                "split": split, "limit": spec.limit, "docs": len(indices), "env_kwargs": knobs,
                "sampling": sampling.as_dict(), "backend": spec.backend}

    def run(policy: Any) -> tuple[list[Score], list[dict[str, Any]], list[str] | None, dict[str, Any]]:
        result = evaluate(policy, text_env, indices=indices, sampling=sampling)
        extra = {"eval_s": round(result.wall_s, 3), "grader_errors": result.grader_errors,
                 "tokens_per_s": round(result.stats.get("tokens_per_s", 0.0), 1)}
        return result.scores, [r.as_dict() for r in result.records], result.hashes, extra
    return _Prepared(ref, settings, run)


def _prepare_lmeval(ref: TaskRef, spec: EvalSpec) -> _Prepared:
    from evalgym.benchmarks.lmeval import build_standard_task
    from evalgym.benchmarks.lmeval_run import run_lmeval_task, task_version

    tasks = build_standard_task(ref.name, data_dir=spec.data_dir, include_path=spec.include_path)
    chat = bool(spec.chat_template)
    settings = {"kind": "lmeval", "task": ref.name, "task_version": task_version(tasks), "limit": spec.limit,
                "num_fewshot": spec.num_fewshot, "fewshot_seed": spec.fewshot_seed, "chat_template": chat,
                "num_samples": spec.num_samples, "temperature": spec.temperature, "max_tokens": spec.max_tokens,
                "seed": spec.seed, "think": list(spec.think) if spec.think else None, "backend": spec.backend,
                "lm_eval_version": _versions()["lm_eval_version"]}

    def run(policy: Any) -> tuple[list[Score], list[dict[str, Any]], list[str] | None, dict[str, Any]]:
        t0 = time.perf_counter()
        out = run_lmeval_task(policy, ref.name, limit=spec.limit, num_samples=spec.num_samples,
                              temperature=spec.temperature, max_tokens=spec.max_tokens, seed=spec.seed,
                              num_fewshot=spec.num_fewshot, fewshot_seed=spec.fewshot_seed, chat_template=chat,
                              think=spec.think, data_dir=spec.data_dir, include_path=spec.include_path, tasks=tasks)
        config = out.configs.get(out.task, {})
        return out.scores, out.records, out.hashes, {
            "eval_s": round(time.perf_counter() - t0, 3), "docs": out.n_docs,
            "num_fewshot_used": config.get("num_fewshot"), "generation_kwargs": config.get("generation_kwargs")}
    return _Prepared(ref, settings, run)


def prepare(ref: TaskRef, spec: EvalSpec) -> _Prepared:
    """A task's settings (what its store key hashes) and how to run it; bad settings raise here."""
    if ref.kind == "env":
        if spec.chat_template is False:
            raise EvalgymError(f"{ref.name}: env tasks are chat prompts (the rollout's); --chat-template off "
                               "applies to lm-eval tasks only")
        return _prepare_env(ref, spec)
    return _prepare_lmeval(ref, spec)


# -- evaluation ----------------------------------------------------------------------------------------


def evaluate_model(model: str | Target, spec: EvalSpec, *, store: ResultsStore | None = None,
                   run: str | None = None, policies: PolicyCache | None = None,
                   on_task: Callable[[str, str, list[ResultRow]], None] | None = None,
                   manifest: dict[str, Any] | None = None) -> list[ResultRow]:
    """Evaluate ``model`` on ``spec.tasks``; record each task as soon as it finishes. Evaluations the store
    already has (same key) are skipped and their rows returned. ``on_task(task, "done" | "skipped" |
    "error", rows)`` reports progress. Raises :class:`EvaluationFailed` after the other tasks if any failed."""
    target = model if isinstance(model, Target) else describe(model, run)
    refs = task_names(spec.tasks, spec.include_path)
    prepared = [prepare(ref, spec) for ref in refs]          # every bad name or setting before anything runs
    own_policies = policies is None
    policies = policies or PolicyCache(spec.backend, spec.device, spec.threads)
    versions = {**_versions(), **(manifest or {})}
    out: list[ResultRow] = []
    failures: list[tuple[str, str]] = []
    try:
        for p in prepared:
            name, key = p.ref.name, settings_hash(p.settings)
            if store is not None and store.done(target.run_id, target.checkpoint, name, key):
                rows = store.rows(eval_id=eval_key(target.run_id, target.checkpoint, name, key))
                out.extend(rows)
                if on_task:
                    on_task(name, "skipped", rows)
                continue
            base = {"model": target.model, "step": target.step, "run_id": target.run_id, "settings": p.settings,
                    "task_version": p.settings.get("task_version"), "verifier": p.settings.get("verifier"),
                    "verifier_version": p.settings.get("verifier_version"), "split": p.settings.get("split"),
                    "sampling": p.settings.get("sampling") or {k: p.settings.get(k) for k in
                                                               ("num_samples", "temperature", "max_tokens", "seed")},
                    "limit": spec.limit, "seed": spec.seed, "backend": spec.backend,
                    "env_kwargs": p.settings.get("env_kwargs"), "recipe": target.meta.get("recipe"),
                    "stage": target.meta.get("stage"), "parent": target.meta.get("parent"), **versions}
            try:
                scores, samples, hashes, extra = p.run(policies.get(target.model))
                checked = (contamination(target.model, hashes) if hashes is not None else
                           {"overlap": None, "reason": f"{name}: its problems are not ones evalgym can hash"})
                m = json.loads(json.dumps({**base, **extra, "contamination": checked, "time": utc_now()}, default=str))
                rows = [ResultRow(target.run, target.checkpoint, target.step, name, s.metric, s.value, stderr=s.stderr,
                                  ci_low=s.ci_low, ci_high=s.ci_high, n=s.n, manifest=m, run_id=target.run_id,
                                  settings_hash=key) for s in scores]
                if store is not None:
                    store.record(rows, samples=samples)
                out.extend(rows)
                if on_task:
                    on_task(name, "done", rows)
            except Exception as exc:  # noqa: BLE001 - stored and shown; the other tasks still run
                message = f"{type(exc).__name__}: {exc}"
                log.exception("evaluating %s on %s failed", target.model, name)
                failures.append((name, message))
                if store is not None:
                    store.record_error(target.run, target.checkpoint, target.step, name, message,
                                       run_id=target.run_id, settings_hash=key, manifest=base)
                if on_task:
                    on_task(name, "error", [])
    finally:
        if own_policies:
            policies.close()
    if failures:
        raise EvaluationFailed(f"{target.checkpoint}: {len(failures)} task(s) failed (stored with their error): "
                               + "; ".join(f"{n}: {m[:300]}" for n, m in failures), out, failures)
    return out


def format_rows(rows: Sequence[ResultRow]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the ``evalgym eval`` table."""
    header = ["task", "metric", "value", "95% CI", "n", "overlap", "checkpoint"]
    cells = []
    for r in rows:
        c = r.manifest.get("contamination") or {}
        overlap = "-" if not c else ("?" if c.get("overlap") is None else f"{c['overlap']}/{c.get('eval_problems')}")
        cells.append([r.task, r.metric, f"{r.value:.4f}",
                      f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if r.ci_low is not None and r.ci_high is not None else "-",
                      str(r.n if r.n is not None else "-"), overlap, r.checkpoint])
    return header, cells


def row_dict(row: ResultRow) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(row)


# -- after a save: an explicit step of the training loop ------------------------------------------------


class CheckpointEvaluator:
    """An ``after_save`` hook for the trainers (``train_sft(cfg, after_save=evaluator)``): evaluates each
    checkpoint right after it is saved (training waits; ``evalgym watch`` is the non-blocking alternative).
    A failed evaluation is stored with its error (reports show it) and logged; training goes on.
    ``manifest(ref)`` adds entries (recipe, stage, ...) to every row."""

    def __init__(self, spec: EvalSpec, store: ResultsStore, *, run: str | None = None,
                 manifest: Callable[[Any], dict[str, Any]] | None = None):
        self.spec, self.store, self.run, self.manifest = spec, store, run, manifest
        self.policies = PolicyCache(spec.backend, spec.device, spec.threads)
        self.evaluated: list[Any] = []
        self.failed: list[tuple[Any, str]] = []

    def __call__(self, ref: Any) -> None:
        target = describe(ref.path, self.run or ref.run_id)
        try:
            evaluate_model(target, self.spec, store=self.store, policies=self.policies,
                           manifest=self.manifest(ref) if self.manifest else None)
            self.evaluated.append(ref)
        except Exception as exc:  # noqa: BLE001 - stored (task errors) or logged; training goes on
            log.error("evaluating checkpoint %s failed: %s", ref.path, exc)
            self.failed.append((ref, str(exc)))

    def close(self) -> None:
        self.policies.close()

    def __enter__(self) -> CheckpointEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def evaluate_checkpoint(model: str, tasks: Sequence[str], *, store: str | ResultsStore, run: str | None = None,
                        step: int | None = None, manifest: dict[str, Any] | None = None, limit: int | None = None,
                        num_samples: int = 1, max_tokens: int = 256, env_kwargs: dict[str, dict[str, Any]] | None = None,
                        seed: int = 0, backend: str = "hf", temperature: float | None = None,
                        progress: bool = False, policies: PolicyCache | None = None) -> int:
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
            what = {"skipped": "already stored", "error": "FAILED (stored with its error)"}.get(status, f"{len(rows)} rows")
            print(f"  eval {model} {task}: {what}", file=sys.stderr, flush=True)

    own = not isinstance(store, ResultsStore)
    db = ResultsStore(store) if own else store
    try:
        evaluate_model(describe(model, run, step), spec, store=db, on_task=note, manifest=manifest, policies=policies)
    finally:
        if own:
            db.close()
    return sum(written)


__all__ = ["CheckpointEvaluator", "EvalSpec", "EvaluationFailed", "PolicyCache", "Target", "describe",
           "evaluate_checkpoint", "evaluate_model", "format_rows", "prepare", "settings_hash"]
