"""The evaluation driver: ONE function evaluates a policy on (env, split, indices, sampling) and returns the
per-sample records and the scores with their 95 % intervals. ``evalgym eval``, the recipe runner, the
checkpoint watcher, the lm-eval env tasks (their grading), the MOPD experiment, ``evalgym demo`` and the
tests all go through it.

    from evalgym.evaluate import EvalSampling, evaluate
    result = evaluate(policy, "arithmetic", split="eval", limit=128, env_kwargs={"digits": 2, "ops": "+"},
                      sampling=EvalSampling(num_samples=8, temperature=1.0, max_tokens=32))
    result.score("mean@8")            # Score(metric, value, ci_low, ci_high, n, stderr)
    result.records[0]                 # SampleRecord: prompt, completion, what was graded, verdict, ...
    result.hashes                     # content hash of each evaluated problem (for contamination checks)

Problems. ``split`` defaults to the env's evaluation split (``test`` for datasets, ``eval`` for procedural
envs, whose splits are disjoint from training's by construction); ``indices`` picks problems explicitly,
else ``limit`` takes the first ``limit`` distinct problems of the split (all of a dataset split; 500 of a
procedural one), and asking for more than the split holds is an error saying how many it holds.

Generation and grading go through ``evalgym.rollouts.collect``: the env's own verifier (the training
reward), multi-turn envs played to the end, per-sample seeds. A thinking section (``<think>…</think>`` by
default, ``think=None`` to keep it) is cut from each response before grading, by the verifier's own
``think`` setting (or a wrapper for verifiers without one): the answer is what follows the last closing
tag; a section opened and never closed leaves no answer.

Scores per problem of k samples: k = 1: ``acc`` (correct) and ``reward``; k > 1: ``pass@1`` (unbiased
c/k), ``pass@k`` and ``mean@k`` (mean reward); always ``grader_errors`` (share of verdicts whose grading
failed: they score 0 and are counted, never hidden), the verifier's own metrics (IFEval's four) and the
mean of every numeric episode metric a trajectory carries (``turns``; ``Trajectory.metrics`` such as tool
calls, as ``episode_<name>``). Intervals: Wilson for 0/1 values, else a seeded percentile bootstrap over
problems.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from math import comb
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.types import Completion, Problem, Trajectory, Verdict, content_hash, to_dict

PROCEDURAL_DOCS = 500            # problems of a procedural split when no limit is given
BOOTSTRAP_ITERS = 2000
THINK_TAGS = ("<think>", "</think>")


# -- intervals ---------------------------------------------------------------------------------------

def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (sensible at 0 and 1, unlike the normal interval)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(values: Sequence[float], seed: int = 0, iters: int = BOOTSTRAP_ITERS) -> tuple[float, float]:
    """Percentile 95% interval of the mean by resampling ``values`` (seeded: reproducible)."""
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(iters))
    return (means[int(0.025 * iters)], means[min(iters - 1, int(0.975 * iters))])


def interval(values: Sequence[Any], seed: int = 0) -> tuple[float, float, float, int, float]:
    """(mean, ci_low, ci_high, n, stderr) of per-problem values; lists (per-instruction) are flattened."""
    flat = [float(x) for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    n = len(flat)
    if n == 0:
        return (math.nan, 0.0, 1.0, 0, math.nan)
    mean = sum(flat) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in flat) / (n - 1)) if n > 1 else 0.0
    lo, hi = wilson(sum(flat), n) if all(x in (0.0, 1.0) for x in flat) else bootstrap_ci(flat, seed)
    return mean, lo, hi, n, sd / math.sqrt(n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


# -- thinking ----------------------------------------------------------------------------------------

def strip_thinking(text: str, tags: tuple[str, str] | None = THINK_TAGS) -> str:
    """The answer part of a response, as the verifiers cut it (``evalgym.verifiers.math_extract.strip_think``):
    the text after the last closing tag; nothing when a section is opened and never closed; the whole
    response without tags or with ``tags=None``."""
    from evalgym.verifiers.math_extract import strip_think

    cut = strip_think(text, tuple(tags) if tags else None)
    return "" if cut is None else cut


class ThinkStripped:
    """A verifier that grades responses with their thinking section cut (same name, version, pool), for
    verifiers that have no ``think`` setting of their own."""

    def __init__(self, inner: Any, tags: tuple[str, str]):
        self.inner, self.tags = inner, tuple(tags)
        self.name, self.version = inner.name, inner.version
        self.pool = getattr(inner, "pool", None)
        self.metrics = getattr(inner, "metrics", None)

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.inner.verify(problem, strip_thinking(response, self.tags))

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        return self.inner.verify_batch(problems, [strip_thinking(r, self.tags) for r in responses])


# -- what is evaluated -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalSampling:
    """How responses are sampled and read. ``temperature`` None: greedy for one sample, 1.0 for several."""

    num_samples: int = 1
    temperature: float | None = None
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    think: tuple[str, str] | None = THINK_TAGS

    def __post_init__(self) -> None:
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise EvalgymError(f"num_samples must be an integer >= 1, got {self.num_samples!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise EvalgymError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.think is not None:
            object.__setattr__(self, "think", tuple(self.think))
            if len(self.think) != 2 or not all(isinstance(t, str) and t for t in self.think):
                raise EvalgymError(f"think: expected two non-empty tags (start, end), got {self.think!r}")

    @property
    def effective_temperature(self) -> float:
        return (0.0 if self.num_samples == 1 else 1.0) if self.temperature is None else float(self.temperature)

    def params(self) -> Any:
        from evalgym.policies.base import SamplingParams

        return SamplingParams(temperature=self.effective_temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=self.seed)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "temperature": self.effective_temperature,
                "think": list(self.think) if self.think else None}


def eval_env(env: str, *, split: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
             data_dir: str | None = None, think: tuple[str, str] | None = THINK_TAGS) -> tuple[Any, str]:
    """(the env, as a ``TextEnv`` whose verifier strips thinking, and the split it serves). ``split``
    None: the env's evaluation split."""
    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import CATALOG, resolve_id
    from evalgym.rollouts import make_env

    env_id = resolve_id(env)
    info = CATALOG[env_id]
    kwargs = dict(env_kwargs or {})
    given = kwargs.pop("split", None)
    if split is None:
        split = given if given is not None else info.eval_split
    if split is not None:
        kwargs["split"] = split
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    text_env = make_env(env_id, **kwargs)
    if hasattr(text_env.verifier, "think"):          # the verifier's own setting: one rule everywhere
        from evalgym.verifiers.math_extract import check_think

        text_env.verifier.think = check_think(think)
    elif think:
        text_env.verifier = ThinkStripped(text_env.verifier, think)
    return text_env, str(split if split is not None else getattr(text_env.source, "split", "default"))


def eval_indices(text_env: Any, limit: int | None = None) -> list[int]:
    """The first ``limit`` distinct problems of the env's split (see the module docstring)."""
    from evalgym.envs.sources import distinct_indices

    if limit is not None and limit < 1:
        raise EvalgymError(f"limit must be >= 1, got {limit}")
    return distinct_indices(text_env.source, limit, max_docs=PROCEDURAL_DOCS, where=text_env.source.info.id)


# -- results -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    stderr: float | None = None


@dataclass(frozen=True)
class SampleRecord:
    """One sample of one problem: what was asked, answered, graded and decided."""

    doc: int                      # position among the evaluated problems
    sample: int                   # which of the k samples
    index: int                    # the problem's index in its split
    problem_id: str
    content_hash: str
    prompt: list[dict[str, str]]  # the chat the policy saw first
    completion: str               # the final response, as generated
    graded: str                   # what the grader read (thinking cut)
    answer: str                   # the gold answer
    reward: float
    correct: bool
    error: str | None
    verdict: dict[str, Any]       # the verdict's details (extracted answer, reason, ...)
    turns: int = 1
    transcript: list[dict[str, str]] = field(default_factory=list)   # multi-turn: every message after the prompt
    finish_reason: str = "stop"
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalResult:
    env_id: str
    env_version: int
    verifier: str
    verifier_version: str
    split: str
    indices: list[int]
    hashes: list[str]
    sampling: EvalSampling
    records: list[SampleRecord]
    per_doc: list[dict[str, Any]]
    scores: list[Score]
    wall_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def score(self, metric: str) -> Score:
        for s in self.scores:
            if s.metric == metric:
                return s
        raise KeyError(f"{metric!r}: this evaluation has {[s.metric for s in self.scores]}")

    @property
    def grader_errors(self) -> int:
        return sum(r.error is not None for r in self.records)


def doc_metrics(verdicts: Sequence[Verdict], extra: Mapping[str, str] | None = None,
                episodes: Sequence[Mapping[str, float]] = ()) -> dict[str, Any]:
    """One problem's metrics from the verdicts of its k samples (names in the module docstring)."""
    k = len(verdicts)
    correct = sum(bool(v.correct) for v in verdicts)
    mean_reward = sum(float(v.reward) for v in verdicts) / k
    out: dict[str, Any] = ({"acc": float(correct), "reward": mean_reward} if k == 1 else
                           {"pass@1": pass_at_k(k, correct, 1), f"pass@{k}": pass_at_k(k, correct, k),
                            f"mean@{k}": mean_reward})
    out["grader_errors"] = sum(v.error is not None for v in verdicts) / k
    for name, how in (extra or {}).items():
        values = [v.details.get(name) for v in verdicts]
        if how == "flatten":
            out[name] = [bool(x) for vs in values for x in (vs or [])]
        else:
            out[name] = sum(float(x or 0) for x in values) / k
    for name in sorted({n for ep in episodes for n in ep}):
        vals = [float(ep[name]) for ep in episodes if name in ep]
        out[name] = sum(vals) / len(vals)
    return out


def metric_names(k: int, extra: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(metric, aggregation) of an env task with k samples per problem."""
    base = ["acc", "reward"] if k == 1 else ["pass@1", f"pass@{k}", f"mean@{k}"]
    return [(m, "mean") for m in base + ["grader_errors"]] + list((extra or {}).items())


def summarize(per_doc: Sequence[Mapping[str, Any]], seed: int = 0) -> list[Score]:
    """Each metric's mean over problems with its interval, in first-seen order."""
    names = list(dict.fromkeys(k for d in per_doc for k in d))
    scores = []
    for name in names:
        mean, lo, hi, n, sd = interval([d[name] for d in per_doc if name in d], seed)
        scores.append(Score(name, mean, lo, hi, n, sd if math.isfinite(sd) else None))
    return scores


def episode_metrics(t: Trajectory, multi_turn: bool = False) -> dict[str, float]:
    """Numeric per-episode metrics: ``turns`` for an episode of a multi-turn env, and every number (or
    bool) in the trajectory's own ``metrics`` (agentic envs: success, tool calls, tool errors) as
    ``episode_<name>``."""
    out: dict[str, float] = {"turns": float(len(t.steps))} if multi_turn else {}
    for name, value in (getattr(t, "metrics", None) or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[f"episode_{name}"] = float(value)
    return out


def _record(doc: int, index: int, t: Trajectory, tags: tuple[str, str] | None, multi_turn: bool) -> SampleRecord:
    first, final = t.steps[0], t.final
    transcript = [m.as_dict() for m in final.messages[len(first.messages):]] + \
        ([{"role": "assistant", "content": final.completion.text}] if len(t.steps) > 1 else [])
    v = final.verdict
    return SampleRecord(doc=doc, sample=t.sample_index, index=index, problem_id=t.problem.id,
                        content_hash=content_hash(t.problem), prompt=[m.as_dict() for m in first.messages],
                        completion=final.completion.text, graded=strip_thinking(final.completion.text, tags),
                        answer=t.problem.answer, reward=float(v.reward), correct=bool(v.correct), error=v.error,
                        verdict=to_dict(dict(v.details)), turns=len(t.steps), transcript=transcript,
                        finish_reason=final.completion.finish_reason, metrics=episode_metrics(t, multi_turn))


# -- the driver --------------------------------------------------------------------------------------

def evaluate(policy: Any, env: str | Any, *, split: str | None = None, indices: Sequence[int] | None = None,
             limit: int | None = None, sampling: EvalSampling = EvalSampling(),
             env_kwargs: Mapping[str, Any] | None = None, data_dir: str | None = None, batch_prompts: int = 16,
             progress: bool = False, on_record: Callable[[SampleRecord], None] | None = None) -> EvalResult:
    """Evaluate ``policy`` (an ``evalgym.policies`` policy, or a scripted one: see :func:`scripted`) on
    ``env`` (a name or id; or a ``TextEnv`` from :func:`eval_env`) over the given problems. Returns the
    records and scores; ``on_record`` sees each record as the result is assembled."""
    from evalgym.rollouts import collect

    t0 = time.perf_counter()
    if isinstance(env, str):
        text_env, split_name = eval_env(env, split=split, env_kwargs=env_kwargs, data_dir=data_dir,
                                        think=sampling.think)
    else:
        text_env, split_name = env, str(split or getattr(env.source, "split", "default"))
    chosen = list(indices) if indices is not None else eval_indices(text_env, limit)
    if not chosen:
        raise EvalgymError(f"{text_env.source.info.id}: no problems to evaluate")
    bad = [i for i in chosen if not 0 <= int(i) < text_env.source.size]
    if bad:
        raise EvalgymError(f"{text_env.source.info.id}: indices {bad[:5]} outside its {text_env.source.size} problems")
    rollout = collect(_as_policy(policy, text_env, chosen), text_env, indices=chosen, n=sampling.num_samples,
                      sampling=sampling.params(), seed=sampling.seed, batch_prompts=batch_prompts, progress=progress)
    verifier = text_env.verifier
    extra = dict(getattr(verifier, "metrics", None) or {})
    multi = text_env.max_turns > 1
    records: list[SampleRecord] = []
    per_doc: list[dict[str, Any]] = []
    for doc, (index, group) in enumerate(zip(chosen, rollout.groups)):
        trajs = list(group.trajectories)
        per_doc.append(doc_metrics([t.final.verdict for t in trajs], extra, [episode_metrics(t, multi) for t in trajs]))
        for t in trajs:
            rec = _record(doc, int(index), t, sampling.think, multi)
            records.append(rec)
            if on_record is not None:
                on_record(rec)
    problem = rollout.groups[0].problem
    return EvalResult(env_id=problem.env_id, env_version=problem.env_version, verifier=verifier.name,
                      verifier_version=str(verifier.version), split=split_name, indices=[int(i) for i in chosen],
                      hashes=[content_hash(g.problem) for g in rollout.groups], sampling=sampling, records=records,
                      per_doc=per_doc, scores=summarize(per_doc, sampling.seed), wall_s=time.perf_counter() - t0,
                      stats=rollout.stats.as_dict())


# -- scripted policies -------------------------------------------------------------------------------

class _Scripted:
    """A scripted policy (``evalgym.policies.scripted``: problem, rng -> text) behind the policy protocol,
    for the problems of one evaluation: each prompt is matched to its problem by its opening messages."""

    def __init__(self, fn: Callable[[Problem, random.Random], str], name: str, problems: list[Problem]):
        self.fn, self.name = fn, f"scripted:{name}"
        self.by_prompt = {tuple((m.role, m.content) for m in p.messages): p for p in problems}
        self.tokenizer = None

    def generate(self, prompts: Sequence[Any], sampling: Any, keys: Sequence[int] | None = None) -> list[list[Completion]]:
        out = []
        for k, prompt in enumerate(prompts):
            msgs = [(m["role"], m["content"]) if isinstance(m, Mapping) else (m.role, m.content) for m in prompt]
            problem = next((p for n in range(len(msgs), 0, -1)
                            if (p := self.by_prompt.get(tuple(msgs[:n]))) is not None), None)
            if problem is None:
                raise EvalgymError("scripted policy: a prompt that matches no problem of this evaluation")
            key = keys[k] if keys is not None else k
            out.append([Completion(self.fn(problem, random.Random(f"{sampling.seed}/{key}")))])
        return out

    def close(self) -> None:
        pass


def scripted(name: str) -> tuple[str, Callable[[Problem, random.Random], str]]:
    """A scripted policy by name, for :func:`evaluate` (``evaluate(scripted("noisy"), ...)``)."""
    from evalgym.policies.scripted import POLICIES

    if name not in POLICIES:
        raise EvalgymError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}")
    return name, POLICIES[name]


def _as_policy(policy: Any, text_env: Any, indices: Sequence[int]) -> Any:
    if isinstance(policy, tuple) and len(policy) == 2 and callable(policy[1]):
        problems = [text_env.source.problem(int(i)) for i in indices]
        return _Scripted(policy[1], policy[0], problems)
    return policy


@dataclass(frozen=True)
class EvalSummary:
    env_id: str
    policy: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_reward: float
    errors: int
    grade_ms: float
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_scripted(env_id: str, policy: str, *, num: int = 50, seed: int = 0,
                      data_dir: str | None = None, **env_kwargs: Any) -> EvalSummary:
    """``evalgym demo``: a scripted policy on ``num`` problems of the env's evaluation split (a seeded
    sample of a dataset split; the first ``num`` distinct problems of a procedural one)."""
    text_env, _ = eval_env(env_id, env_kwargs=env_kwargs, data_dir=data_dir)
    size = text_env.source.size
    if size >= 2**31 - 1:
        indices = eval_indices(text_env, num)
    else:
        indices = list(range(size)) if size <= num else sorted(random.Random(seed).sample(range(size), num))
    result = evaluate(scripted(policy), text_env, indices=indices, sampling=EvalSampling(seed=seed))
    acc = result.score("acc")
    grade_ms = 1000 * result.stats.get("verify_s", 0.0) / max(len(result.records), 1)
    return EvalSummary(result.env_id, policy, acc.n, acc.value, acc.ci_low, acc.ci_high, result.score("reward").value,
                       result.grader_errors, grade_ms, result.wall_s)
