"""Rollouts: drive evalgym envs with a policy and return ``TrajectoryGroup``s.

    policy = make_policy("hf", "tiny")
    result = collect(policy, "evalgym/arithmetic-v0", num_prompts=32, n=8,
                     sampling=SamplingParams(temperature=1.0, max_tokens=64), seed=0)
    result.groups[0].rewards      # G rewards of the first problem
    result.stats.tokens_per_s

How it runs. Problems are picked by ``seed`` (or given as ``indices``), split into chunks of
``batch_prompts``; the engine generates chunk k+1 while chunk k is graded by the env's verifier
(``verify_batch`` in its worker processes, on a background thread) and then applied to each episode
(``TextEnv.apply``: the env decides termination and feedback, exactly as ``env.step`` would). Multi-
turn envs get as many rounds as their ``max_turns``.

Agentic envs (``evalgym.agentic``: tools in a sandbox session) go to the async episode runner
(``evalgym.agentic.runner``) instead: many episodes in flight, tool calls on threads while the engine
generates for the others, every turn token-exact, episode metrics on each ``Trajectory``. A mixture of both
kinds is split and merged back in item order.

Seeds are per sample and derived from (seed, problem position, sample, turn), so a seeded run
reproduces whatever the chunking or the backend's batching, and the Ray backend
(``evalgym.rollouts_ray``) gives the same trajectories as the local one.
"""

from __future__ import annotations

import copy
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evalgym.envs.base import TextEnv
from evalgym.errors import EvalgymError
from evalgym.policies.base import Policy, SamplingParams, sample_seed
from evalgym.types import Completion, Problem, Step, Trajectory, TrajectoryGroup, Verdict, to_dict


def make_env(env_id: str, **env_kwargs: Any) -> TextEnv:
    """The unwrapped ``TextEnv`` of a registered env (``gsm8k``, ``gsm8k-v0`` or the full id)."""
    import gymnasium

    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import resolve_id

    env = gymnasium.make(resolve_id(env_id), **env_kwargs).unwrapped
    if not isinstance(env, TextEnv):
        raise EvalgymError(f"env {env_id}: not an evalgym TextEnv ({type(env).__name__})")
    return env


def pick_indices(size: int, k: int, seed: int) -> list[int]:
    """``k`` distinct problem indices out of ``size``, chosen by ``seed`` (all of them if k >= size)."""
    if k >= size:
        return list(range(size))
    return random.Random(seed).sample(range(size), k)


@dataclass
class RolloutStats:
    prompts: int = 0
    trajectories: int = 0
    turns: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    generate_s: float = 0.0        # driver time inside the engine (or waiting on remote engines)
    verify_s: float = 0.0          # verifier time, mostly overlapped with generation
    verify_wait_s: float = 0.0     # driver time blocked on verification (not overlapped)
    tool_s: float = 0.0            # agentic episodes: episode-seconds in tool calls (overlapped with generation)
    engine_tool_wait_s: float = 0.0  # agentic episodes: wall time the engine idled while all waited on tools
    per_env: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0

    @property
    def verify_wait_share(self) -> float:
        return self.verify_wait_s / self.wall_s if self.wall_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()}, "tokens_per_s": self.tokens_per_s,
                "verify_wait_share": self.verify_wait_share,
                "engine_tool_wait_share": self.engine_tool_wait_s / self.wall_s if self.wall_s else 0.0}


@dataclass
class Rollout:
    groups: list[TrajectoryGroup]
    stats: RolloutStats

    @property
    def trajectories(self) -> list[Trajectory]:
        return [t for g in self.groups for t in g.trajectories]

    def mean_reward(self) -> float:
        ts = self.trajectories
        return sum(t.reward for t in ts) / len(ts) if ts else 0.0


# -- engines: where generation and verification run ------------------------------------------------


class LocalEngine:
    """Generation in this process (blocking, in order); verification on one background thread that
    calls ``verify_batch`` (whose work runs in the verifiers' worker processes)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalgym-verify")

    def submit_generate(self, prompts: list[Any], sampling: SamplingParams, keys: list[int]) -> Callable[[], list[list[Completion]]]:
        return lambda: generate_keyed(self.policy, prompts, sampling, keys)

    def submit_verify(self, env: TextEnv, problems: list[Problem], responses: list[str]) -> Future:
        def run() -> tuple[list[Verdict], float]:
            t0 = time.perf_counter()
            verdicts = env.verifier.verify_batch(problems, responses)
            return verdicts, time.perf_counter() - t0
        return self._pool.submit(run)

    def warm(self, verifier: Any) -> None:
        """Start the verifier's worker processes before generating (once per process: pools are
        shared). Not overlapped on purpose: worker start-up (imports) competing with the engine's
        OpenMP threads made a collection 15x slower on 2 cores (15.2 s vs 1.0 s, measured)."""
        warm = getattr(getattr(verifier, "pool", None), "warm", None)
        if warm is not None:
            warm()

    @staticmethod
    def result(handle: Any) -> Any:
        return handle() if callable(handle) else handle.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def generate_keyed(policy: Policy, prompts: list[Any], sampling: SamplingParams, keys: list[int]) -> list[list[Completion]]:
    return policy.generate(prompts, sampling, keys=keys)


# -- the driver ------------------------------------------------------------------------------------


@dataclass
class _Episode:
    key: int                 # stable: (problem position, sample index)
    env: TextEnv
    position: int
    sample_index: int
    steps: list[Step] = field(default_factory=list)
    done: bool = False
    truncated: bool = False


def collect(
    policy: Policy | None,
    env: str | TextEnv,
    *,
    num_prompts: int | None = None,
    indices: Sequence[int] | None = None,
    n: int = 1,
    sampling: SamplingParams = SamplingParams(),
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    batch_prompts: int = 16,
    progress: bool = False,
    policy_step: int = 0,
    engine: Any = None,
) -> Rollout:
    """G=``n`` trajectories for each of ``num_prompts`` problems (or the given ``indices``) of ``env``."""
    base = make_env(env, **(env_kwargs or {})) if isinstance(env, str) else env
    if indices is None:
        if num_prompts is None:
            raise EvalgymError("collect: give num_prompts or indices")
        if num_prompts < 1:
            raise EvalgymError(f"collect: num_prompts must be >= 1, got {num_prompts}")
        indices = pick_indices(base.source.size, num_prompts, seed)
    return collect_many(policy, [(base, int(i)) for i in indices], n=n, sampling=sampling, seed=seed,
                        batch_prompts=batch_prompts, progress=progress, policy_step=policy_step, engine=engine)


def collect_many(
    policy: Policy | None,
    items: Sequence[tuple[TextEnv, int]],
    *,
    n: int = 1,
    sampling: SamplingParams = SamplingParams(),
    seed: int = 0,
    batch_prompts: int = 16,
    progress: bool = False,
    policy_step: int = 0,
    engine: Any = None,
) -> Rollout:
    """The general form: (env, problem index) items, possibly from several envs (a mixture)."""
    if n < 1:
        raise EvalgymError(f"collect: n must be >= 1, got {n}")
    if batch_prompts < 1:
        raise EvalgymError(f"collect: batch_prompts must be >= 1, got {batch_prompts}")
    from evalgym.agentic.env import AgenticEnv

    agentic = [k for k, (e, _) in enumerate(items) if isinstance(e, AgenticEnv)]
    if not agentic:
        return _collect_text(policy, items, n=n, sampling=sampling, seed=seed, batch_prompts=batch_prompts,
                             progress=progress, policy_step=policy_step, engine=engine)
    from evalgym.agentic.runner import run_episodes

    t_start = time.perf_counter()
    own_engine = engine is None
    engine = engine or LocalEngine(policy)
    try:
        text = [k for k in range(len(items)) if k not in set(agentic)]
        done = _collect_text(policy, [items[k] for k in text], n=n, sampling=sampling, seed=seed,
                             batch_prompts=batch_prompts, progress=progress, policy_step=policy_step,
                             engine=engine, keys=text) if text else Rollout([], RolloutStats())
        groups, rs = run_episodes(policy, [items[k] for k in agentic], n=n, sampling=sampling, seed=seed,
                                  engine=engine, policy_step=policy_step, keys=agentic,
                                  policy_name=getattr(policy, "name", None) if policy is not None else None)
    finally:
        if own_engine:
            engine.close()
    by_pos = dict(zip(text, done.groups))
    by_pos.update({k: TrajectoryGroup(problem=g[0].problem, trajectories=tuple(g)) for k, g in zip(agentic, groups)})
    stats = done.stats
    stats.prompts, stats.trajectories = len(items), len(items) * n
    stats.turns = max(stats.turns, max((len(t.steps) for g in groups for t in g), default=0))
    stats.completion_tokens += rs.completion_tokens
    stats.generate_s += rs.generate_s
    stats.verify_s += rs.verify_s
    stats.tool_s, stats.engine_tool_wait_s = rs.tool_s, rs.engine_tool_wait_s
    stats.per_env = {}
    result = Rollout([by_pos[k] for k in range(len(items))], stats)
    _per_env(result)
    stats.wall_s = time.perf_counter() - t_start
    return result


def _collect_text(policy: Policy | None, items: Sequence[tuple[TextEnv, int]], *, n: int, sampling: SamplingParams,
                  seed: int, batch_prompts: int, progress: bool, policy_step: int, engine: Any,
                  keys: Sequence[int] | None = None) -> Rollout:
    """Single- and multi-turn text envs: chunks of prompts, grading overlapped with generation."""
    own_engine = engine is None
    engine = engine or LocalEngine(policy)
    policy_name = getattr(policy, "name", "") if policy is not None else getattr(engine, "policy_name", "")
    stats = RolloutStats(prompts=len(items))
    t_start = time.perf_counter()
    positions = list(keys) if keys is not None else list(range(len(items)))
    seeded = replace(sampling, n=1, seed=seed if sampling.seed is None else sampling.seed)

    episodes: list[_Episode] = []
    for pos, (base, index) in enumerate(items):
        for j in range(n):
            e = copy.copy(base)
            e.reset(options={"index": index})
            episodes.append(_Episode(key=positions[pos] * 1_000_003 + j, env=e, position=pos, sample_index=j))

    if hasattr(engine, "warm"):
        t0 = time.perf_counter()
        for v in {id(b.verifier): b.verifier for b, _ in items}.values():
            engine.warm(v)
        stats.verify_wait_s += time.perf_counter() - t0  # starting graders is waiting on verification
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(episodes), desc="rollout", unit="traj", dynamic_ncols=True)
    reward_sum = 0.0
    finished = 0
    try:
        turn = 0
        while True:
            active = [e for e in episodes if not e.done]
            if not active:
                break
            chunk_size = batch_prompts * n
            chunks = [active[i:i + chunk_size] for i in range(0, len(active), chunk_size)]
            gen_handles = []
            for chunk in chunks:
                prompts = [list(e.env.messages) for e in chunk]
                keys = [sample_seed(turn, e.key, 0) if turn else e.key for e in chunk]
                gen_handles.append(engine.submit_generate(prompts, seeded, keys))
            verify_handles = []
            for chunk, gh in zip(chunks, gen_handles):
                t0 = time.perf_counter()
                outs = engine.result(gh)
                stats.generate_s += time.perf_counter() - t0
                comps = [o[0] for o in outs]
                stats.completion_tokens += sum(len(c.token_ids) for c in comps)
                # one verify_batch per env within the chunk (a mixture may hold several)
                by_env: dict[int, list[int]] = {}
                for k, e in enumerate(chunk):
                    by_env.setdefault(id(e.env.verifier), []).append(k)
                handles = [(ks, engine.submit_verify(chunk[ks[0]].env, [chunk[k].env.problem for k in ks],
                                                     [comps[k].text for k in ks]))
                           for ks in by_env.values()]
                verify_handles.append((chunk, comps, handles))
            for chunk, comps, handles in verify_handles:
                for ks, h in handles:
                    t0 = time.perf_counter()
                    verdicts, busy = engine.result(h)
                    stats.verify_wait_s += time.perf_counter() - t0
                    stats.verify_s += busy
                    for k, verdict in zip(ks, verdicts):
                        e = chunk[k]
                        messages = tuple(e.env.messages)
                        _obs, reward, terminated, truncated, _info = e.env.apply(comps[k].text, verdict)
                        e.steps.append(Step(messages=messages, completion=comps[k], verdict=verdict, reward=reward))
                        if terminated or truncated:
                            e.done = True
                            e.truncated = truncated or comps[k].truncated
                            finished += 1
                            reward_sum += reward
                            if bar is not None:
                                bar.update(1)
                                bar.set_postfix(reward=f"{reward_sum / finished:.3f}",
                                                tok_s=f"{stats.completion_tokens / (time.perf_counter() - t_start):.0f}")
            turn += 1
        stats.turns = turn
    finally:
        if bar is not None:
            bar.close()
        if own_engine:
            engine.close()

    groups: list[TrajectoryGroup] = []
    for pos in range(len(items)):
        eps = episodes[pos * n:(pos + 1) * n]
        trajs = tuple(Trajectory(problem=e.env.problem, steps=tuple(e.steps), reward=e.steps[-1].reward,
                                 truncated=e.truncated, sample_index=e.sample_index, policy=policy_name,
                                 policy_step=policy_step) for e in eps)
        groups.append(TrajectoryGroup(problem=eps[0].env.problem, trajectories=trajs))
    stats.trajectories = len(episodes)
    stats.wall_s = time.perf_counter() - t_start
    result = Rollout(groups=groups, stats=stats)
    _per_env(result)
    return result


def _per_env(result: Rollout) -> None:
    per_env = result.stats.per_env
    for g in result.groups:
        d = per_env.setdefault(g.problem.env_id, {"trajectories": 0, "reward_sum": 0.0, "correct": 0})
        for t in g.trajectories:
            d["trajectories"] += 1
            d["reward_sum"] += t.reward
            d["correct"] += int(t.correct)
    for d in per_env.values():
        d["mean_reward"] = d["reward_sum"] / d["trajectories"]


def trajectory_record(t: Trajectory, group_index: int) -> dict[str, Any]:
    """One JSONL line: the prompt, final completion, tokens, logprobs, reward and verdict up front,
    then the full trajectory (every step) for lossless reloading with ``types.from_dict``."""
    final = t.final
    return {
        "env_id": t.problem.env_id,
        "problem_id": t.problem.id,
        "group": group_index,
        "sample_index": t.sample_index,
        "prompt": [m.as_dict() for m in final.messages],
        "completion": final.completion.text,
        "prompt_token_ids": list(final.completion.prompt_token_ids),
        "token_ids": list(final.completion.token_ids),
        "logprobs": list(final.completion.logprobs),
        "finish_reason": final.completion.finish_reason,
        "reward": t.reward,
        "correct": t.correct,
        "verdict": to_dict(final.verdict),
        "trajectory": to_dict(t),
    }


def write_jsonl(path: str | Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write records atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
