"""The async episode runner: many agentic episodes in flight over one policy (or rollout engine), token-exact.

    from evalgym.agentic.runner import run_episodes
    groups, stats = run_episodes(policy, [(env, 0), (env, 1)], n=4, sampling=SamplingParams(max_tokens=256))
    t = groups[0][0]                         # a Trajectory: one Step per assistant turn
    t.metrics                                # success, turns, tool_calls, tool_errors, ...
    stats.engine_tool_wait_share             # share of wall time the engine had nothing to do but wait on tools

``rollouts.collect`` / ``collect_many`` (and so the evaluation driver and the trainers) send the items of
agentic envs here; nothing else needs to call it.

How it runs. Each episode is a coroutine: render the prompt once (``TurnTokens.first``), then ask for a
completion, run its tool calls on a worker thread (``AgenticEnv.act``: the sandbox session does the
waiting), append the env's tokens (``TurnTokens.appended``) and ask again, until ``submit``, a final
answer, or a budget ends it; the answer is graded on a thread of its own. Generation requests of all
episodes queue up; whenever an engine slot is free, the queued requests go to the engine as one batch
(``policy.generate`` with token-id prompts; a ``RayEngine`` has one slot per engine actor). So while some
episodes wait on tools, the engine generates for the others.

Token-exact: every step's ``completion.prompt_token_ids`` is the previous step's prompt + its sampled ids +
the env's ids, checked as the episode goes; a backend that changes the prompt it was given is an error.
A policy without a local tokenizer (``openai`` in ``chat`` mode) gets the conversation as messages instead
(tools in the system message, Hermes style): such episodes are not token-exact, and trainers use their last
turn only. Seeds are per (seed, episode, turn), as in ``rollouts.collect``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from evalgym.agentic.env import AgenticEnv
from evalgym.agentic.tokens import TurnTokens
from evalgym.agentic.tools import parser_for
from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams, sample_seed
from evalgym.types import Completion, Step, Trajectory, Verdict


@dataclass
class RunnerStats:
    episodes: int = 0
    turns: int = 0
    tool_calls: int = 0
    completion_tokens: int = 0
    generate_calls: int = 0
    wall_s: float = 0.0
    generate_s: float = 0.0         # engine slot-seconds busy generating
    tool_s: float = 0.0             # episode-seconds in tool calls (overlapped with generation)
    verify_s: float = 0.0
    engine_idle_s: float = 0.0      # time with no generation running while episodes were unfinished
    engine_tool_wait_s: float = 0.0  # ... of which every unfinished episode was in a tool call
    max_in_flight: int = 0

    @property
    def engine_tool_wait_share(self) -> float:
        return self.engine_tool_wait_s / self.wall_s if self.wall_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "engine_tool_wait_share": self.engine_tool_wait_share}


@dataclass
class _Request:
    prompt: Any
    max_tokens: int
    key: int
    future: asyncio.Future


@dataclass
class _Episode:
    env: AgenticEnv
    index: int
    key: int
    sample_index: int
    steps: list[Step] = field(default_factory=list)
    truncated: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


def _tool_verdict(env: AgenticEnv, n_messages: int) -> Verdict:
    """A tool turn's Step verdict: no reward; what happened, for the record."""
    return Verdict(0.0, False, details={"turn": "tools", "replies": n_messages, "isolation": list(env.isolation)},
                   verifier="agentic-tools", verifier_version="1")


class _Run:
    def __init__(self, engine: Any, tokenizer: Any, sampling: SamplingParams, seed: int, slots: int,
                 max_batch: int, threads: int):
        self.engine, self.tokenizer, self.sampling, self.seed = engine, tokenizer, sampling, seed
        self.slots, self.max_batch = slots, max_batch
        self.tools_pool = ThreadPoolExecutor(threads, thread_name_prefix="evalgym-tools")
        self.engine_pool = ThreadPoolExecutor(slots, thread_name_prefix="evalgym-generate")
        self.verify_pool = ThreadPoolExecutor(4, thread_name_prefix="evalgym-grade")
        self.stats = RunnerStats()
        self.queue: list[_Request] = []
        self.running = 0
        self.unfinished = 0
        self.in_tools = 0
        self.wake: asyncio.Event | None = None
        self.idle_since: float | None = None
        self.idle_in_tools = False

    # -- the engine side -----------------------------------------------------------------------------
    def _mark_idle(self) -> None:
        now = time.perf_counter()
        if self.idle_since is not None:
            self.stats.engine_idle_s += now - self.idle_since
            if self.idle_in_tools:
                self.stats.engine_tool_wait_s += now - self.idle_since
            self.idle_since = None
        if self.running == 0 and not self.queue and self.unfinished:
            self.idle_since, self.idle_in_tools = now, self.in_tools == self.unfinished

    async def generate(self, prompt: Any, max_tokens: int, key: int) -> Completion:
        fut = asyncio.get_running_loop().create_future()
        self.queue.append(_Request(prompt, max_tokens, key, fut))
        self._mark_idle()
        self.wake.set()
        return await fut

    async def engine_loop(self) -> None:
        loop = asyncio.get_running_loop()
        busy: set[asyncio.Task] = set()
        while self.unfinished or self.queue or busy:
            while self.queue and len(busy) < self.slots:
                batch = self._take()
                busy.add(asyncio.ensure_future(self._dispatch(loop, batch)))
            self._mark_idle()
            self.wake.clear()
            waiters = [*busy, asyncio.ensure_future(self.wake.wait())]
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t in busy:
                    busy.discard(t)
                    t.result()
            for t in waiters[-1:]:
                if t not in done:
                    t.cancel()

    def _take(self) -> list[_Request]:
        """The longest-waiting request and every queued one with its max_tokens (one generate call)."""
        want = self.queue[0].max_tokens
        batch = [r for r in self.queue if r.max_tokens == want][: self.max_batch]
        taken = {id(r) for r in batch}
        self.queue = [r for r in self.queue if id(r) not in taken]
        return batch

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        sp = replace(self.sampling, n=1, max_tokens=batch[0].max_tokens)
        prompts, keys = [r.prompt for r in batch], [r.key for r in batch]
        self.running += 1
        self._mark_idle()
        t0 = time.perf_counter()
        try:
            outs = await loop.run_in_executor(
                self.engine_pool, lambda: self.engine.result(self.engine.submit_generate(prompts, sp, keys)))
        except BaseException as exc:  # noqa: BLE001  (every waiting episode sees the engine's error)
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        finally:
            self.running -= 1
            self.stats.generate_s += time.perf_counter() - t0
            self.stats.generate_calls += 1
            self._mark_idle()
        for r, o in zip(batch, outs):
            r.future.set_result(o[0])

    # -- one episode -----------------------------------------------------------------------------
    async def episode(self, ep: _Episode) -> None:
        loop = asyncio.get_running_loop()
        env = ep.env
        try:
            turns = TurnTokens(self.tokenizer, env.tool_specs) if self.tokenizer is not None else None
            prompt: Any = turns.first([m.as_dict() for m in env.messages]) if turns else None
            turn = 0
            while True:
                seen = tuple(env.messages)
                if turns is None:
                    from evalgym.policies.tool_template import hermes_messages

                    prompt = hermes_messages([m.as_dict() for m in seen], env.tool_specs)
                    left = env.budgets.max_tokens - sum(len(s.completion.token_ids) for s in ep.steps)
                else:
                    left = env.budgets.max_tokens - len(prompt)
                if left <= 0:
                    empty = Completion("", finish_reason="length",
                                       prompt_token_ids=tuple(prompt) if turns is not None else ())
                    self._end(ep, env.truncate("tokens"), None, Step(seen, empty, env.no_answer("tokens"), 0.0))
                    return
                key = sample_seed(turn, ep.key, 0) if turn else ep.key
                c = await self.generate(prompt, min(self.sampling.max_tokens, left), key)
                self.stats.completion_tokens += len(c.token_ids)
                if turns is not None and list(c.prompt_token_ids) != list(prompt):
                    raise EvalgymError("the engine returned prompt_token_ids other than the prompt it was given: "
                                       "the episode would not be token-exact")
                t0 = time.perf_counter()
                self.in_tools += 1
                self._mark_idle()
                try:
                    act = await loop.run_in_executor(self.tools_pool, env.act, c.text)
                finally:
                    self.in_tools -= 1
                    self._mark_idle()
                    self.stats.tool_s += time.perf_counter() - t0
                self.stats.turns += 1
                if act.final is not None:
                    t0 = time.perf_counter()
                    verdicts = await loop.run_in_executor(self.verify_pool, env.verifier.verify_batch,
                                                          [env.problem], [act.final])
                    self.stats.verify_s += time.perf_counter() - t0
                    self._end(ep, env.conclude(verdicts[0]), Step(seen, c, verdicts[0], float(verdicts[0].reward)))
                    return
                if act.truncated or (c.truncated and len(c.token_ids) >= left):
                    reason = act.reason or "tokens"
                    result = env.truncate(reason)
                    self._end(ep, result, Step(seen, c, result[4]["verdict"], 0.0))
                    return
                ep.steps.append(Step(seen, c, _tool_verdict(env, len(act.messages)), 0.0))
                if turns is not None:
                    new = [m.as_dict() for m in act.messages]
                    prompt = [*c.prompt_token_ids, *c.token_ids, *turns.appended([m.as_dict() for m in seen], c, new)]
                turn += 1
        finally:
            env.close()
            self.unfinished -= 1
            self._mark_idle()
            self.wake.set()

    def _end(self, ep: _Episode, result: tuple, step: Step | None, empty: Step | None = None) -> None:
        _obs, _reward, _terminated, truncated, info = result
        if step is not None:
            ep.steps.append(step)
        elif ep.steps:  # ended before another turn (token budget): the last step carries the verdict
            last = ep.steps[-1]
            ep.steps[-1] = Step(last.messages, last.completion, info["verdict"], float(info["verdict"].reward))
        elif empty is not None:  # the prompt alone was over the budget: a step with no tokens sampled
            ep.steps.append(empty)
        ep.truncated = bool(truncated)
        ep.metrics = dict(info["metrics"])
        self.stats.tool_calls += int(ep.metrics.get("tool_calls", 0))

    async def main(self, episodes: list[_Episode], max_in_flight: int) -> None:
        self.wake = asyncio.Event()
        self.unfinished = len(episodes)
        gate = asyncio.Semaphore(max_in_flight)
        in_flight = [0]

        async def guarded(ep: _Episode) -> None:
            async with gate:
                in_flight[0] += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, in_flight[0])
                try:
                    await self.episode(ep)
                finally:
                    in_flight[0] -= 1

        engine = asyncio.ensure_future(self.engine_loop())
        tasks = [asyncio.ensure_future(guarded(ep)) for ep in episodes]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in [*tasks, engine]:  # one episode's error (an engine failure...) ends the run
                t.cancel()
            await asyncio.gather(*tasks, engine, return_exceptions=True)
            raise
        self.wake.set()
        await engine

    def close(self) -> None:
        for pool in (self.tools_pool, self.engine_pool, self.verify_pool):
            pool.shutdown(wait=False, cancel_futures=True)


def run_episodes(policy: Any, items: Sequence[tuple[AgenticEnv, int]], *, n: int = 1,
                 sampling: SamplingParams = SamplingParams(), seed: int = 0, engine: Any = None,
                 max_in_flight: int = 32, max_batch: int = 64, policy_name: str | None = None,
                 policy_step: int = 0, keys: Sequence[int] | None = None) -> tuple[list[list[Trajectory]], RunnerStats]:
    """``n`` episodes of each (env, problem index) item; trajectories grouped per item, in order.
    ``engine``: a ``rollouts.LocalEngine``-like object (``submit_generate``/``result``), e.g. a ``RayEngine``;
    default: the policy in this process. ``keys[i]``: item i's position in the per-sample seeds."""
    import copy

    from evalgym.rollouts import LocalEngine

    if n < 1:
        raise EvalgymError(f"run_episodes: n must be >= 1, got {n}")
    own = engine is None
    engine = engine or LocalEngine(policy)
    name = policy_name or getattr(policy, "name", "") or getattr(engine, "policy_name", "")
    tokenizer = getattr(policy, "tokenizer", None) if policy is not None else getattr(engine, "tokenizer", None)
    parser = parser_for(name)
    seeded = replace(sampling, n=1, seed=seed if sampling.seed is None else sampling.seed)
    keys = list(keys) if keys is not None else list(range(len(items)))
    episodes: list[_Episode] = []
    for pos, (base, index) in enumerate(items):
        if not isinstance(base, AgenticEnv):
            raise EvalgymError(f"run_episodes: {type(base).__name__} is not an AgenticEnv")
        for j in range(n):
            env = copy.copy(base)
            env.reset(options={"index": int(index)})
            env.use_parser(parser)
            episodes.append(_Episode(env, int(index), keys[pos] * 1_000_003 + j, j))
    run = _Run(engine, tokenizer, seeded, seeded.seed or 0, slots=max(1, len(getattr(engine, "engines", [0]))),
               max_batch=max_batch, threads=max(4, min(max_in_flight, 64)))
    t0 = time.perf_counter()
    try:
        asyncio.run(run.main(episodes, max(1, max_in_flight)))
    finally:
        run.close()
        if own:
            engine.close()
    run.stats.wall_s = time.perf_counter() - t0
    run.stats.episodes = len(episodes)
    groups = []
    for pos in range(len(items)):
        eps = episodes[pos * n:(pos + 1) * n]
        groups.append([Trajectory(problem=e.env.problem, steps=tuple(e.steps), reward=e.steps[-1].reward if e.steps
                                  else 0.0, truncated=e.truncated, sample_index=e.sample_index, policy=name,
                                  policy_step=policy_step, metrics=e.metrics) for e in eps])
    return groups, run.stats
