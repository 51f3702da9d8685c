"""AgenticEnv: a text env whose turns are tool calls run in the episode's sandbox session.

    env = gymnasium.make("evalgym/python-math-v0", sandbox="local")      # after `import evalgym`
    obs, info = env.reset(seed=0, options={"index": 3})
    info["tools"]                       # the tool specs (OpenAI style) the chat template renders
    obs, r, terminated, truncated, info = env.step('<tool_call>{"name": "python", "arguments": '
                                                   '{"code": "print(6*7)"}}</tool_call>')
    obs                                 # '42\\n' (the tool's reply; also the last of info["messages"])
    env.step('<tool_call>{"name": "submit", "arguments": {"answer": "42"}}</tool_call>')
    # -> terminated=True, info["verdict"] (the env's verifier on the submitted answer), info["metrics"]

The Gymnasium contract holds: a completion with tool calls gets their replies as the next observation
(each reply a ``tool`` message in ``info["messages"]``) and ``terminated=False``; ``submit``, or a final answer
without a tool call, ends the episode with the verdict in ``info``. Calls are read with the env's parser
(Hermes ``<tool_call>`` by default; a runner sets the model family's). A malformed call, an unknown tool or
bad arguments is replied to with an error message (counted in ``tool_errors``), never raised.

Budgets (``Budgets``), per episode: ``max_turns`` assistant turns (then ``truncated=True``, no answer),
``max_tokens`` of prompt and turns together (enforced by the runner, which counts tokens), ``tool_time_s``
of tool wall time (later calls are refused with a message: submit), ``call_timeout_s`` per call,
``calls_per_turn`` and ``reply_chars`` (a longer reply is cut and marked).

Runners split ``step`` in two: ``act(text)`` runs the calls (blocking I/O, on a thread) and says whether
the episode ended with an answer to grade (``Act.final``); ``conclude(verdict)`` or ``truncate(reason)``
then ends it, so grading can be batched in the verifier's worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from evalgym.agentic.tools import ToolCallParser, check_arguments, get_parser
from evalgym.agentic.toolset import TOOLS, ToolReply, session_pool
from evalgym.envs.base import TextEnv
from evalgym.errors import EvalgymError
from evalgym.sandbox.session import Session, SessionLimits
from evalgym.types import ChatMessage, Problem, Verdict


@dataclass(frozen=True)
class Budgets:
    max_turns: int = 8
    max_tokens: int = 4096
    tool_time_s: float = 60.0
    call_timeout_s: float = 10.0
    calls_per_turn: int = 4
    reply_chars: int = 4000


def _no_files(problem: Problem) -> dict[str, str]:
    return {}


def _answer_as_is(env: AgenticEnv, answer: str, submitted: bool) -> str:
    return answer


@dataclass(frozen=True)
class AgenticOptions:
    """What makes a source agentic: its tools, sandbox, budgets and how an answer becomes the graded
    response. ``files(problem)``: the session's initial working tree; ``final(env, text, submitted)``: the
    response the verifier grades (``text``: the submitted answer, or the final completion without a call)."""

    tools: tuple[str, ...] = ("python", "submit")
    sandbox: str = "local"
    isolation: str | None = None
    limits: SessionLimits = field(default_factory=SessionLimits)
    budgets: Budgets = field(default_factory=Budgets)
    parser: str = "auto"
    files: Callable[[Problem], dict[str, str]] = _no_files
    final: Callable[[AgenticEnv, str, bool], str] = _answer_as_is

    def __post_init__(self) -> None:
        unknown = [t for t in self.tools if t not in TOOLS]
        if unknown:
            raise EvalgymError(f"tools: unknown tool(s) {unknown}; known: {sorted(TOOLS)}")
        if self.sandbox not in ("local", "docker"):
            raise EvalgymError(f"sandbox: must be 'local' or 'docker', got {self.sandbox!r}")


@dataclass(frozen=True)
class Act:
    """One assistant turn, acted on: the tool replies appended, and whether the episode ended."""

    messages: tuple[ChatMessage, ...] = ()
    final: str | None = None       # the response to grade: the episode ended with an answer
    truncated: bool = False        # a budget ended it without an answer
    reason: str | None = None


@dataclass
class EpisodeStats:
    tool_calls: int = 0
    tool_errors: int = 0
    code_errors: int = 0
    tool_time_s: float = 0.0
    submitted: bool = False
    by_tool: dict[str, int] = field(default_factory=dict)


class AgenticEnv(TextEnv):
    def __init__(self, source: Any, verifier: Any, *, max_turns: int | None = None, render_mode: str | None = None,
                 options: AgenticOptions | None = None):
        opts = options or getattr(source, "agentic", None)
        if not isinstance(opts, AgenticOptions):
            raise EvalgymError("AgenticEnv: the source has no AgenticOptions (source.agentic)")
        if max_turns:
            opts = replace(opts, budgets=replace(opts.budgets, max_turns=int(max_turns)))
        super().__init__(source, verifier, max_turns=opts.budgets.max_turns, render_mode=render_mode)
        self.options = opts
        self.budgets = opts.budgets
        self.tools = {name: TOOLS[name] for name in opts.tools}
        self.tool_specs = [t.spec.as_openai() for t in self.tools.values()]
        self.parser: ToolCallParser = get_parser("hermes" if opts.parser == "auto" else opts.parser)
        self._session: Session | None = None
        self.stats = EpisodeStats()
        self.isolation: tuple[str, ...] = ()
        self._last = ToolReply("")

    # -- episode -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        self._close_session()
        obs, info = super().reset(seed=seed, options=options)
        self.stats = EpisodeStats()
        self.isolation = ()
        info["tools"] = self.tool_specs
        return obs, info

    def use_parser(self, parser: ToolCallParser) -> None:
        """The model family's parser (runners set it when the env's ``parser`` is ``auto``)."""
        if self.options.parser == "auto":
            self.parser = parser

    def session(self) -> Session:
        if self._session is None:
            pool = session_pool(self.options.sandbox, self.options.limits, self.options.isolation)
            self._session = pool.session(files=self.options.files(self.problem))
            self.isolation = self._session.isolation
        return self._session

    def working_tree(self) -> dict[str, bytes] | None:
        """The session's files now (None when the episode never opened a session)."""
        return None if self._session is None else self._session.files()

    def call_timeout(self) -> float:
        return max(0.05, min(self.budgets.call_timeout_s, self.budgets.tool_time_s - self.stats.tool_time_s))

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def close(self) -> None:
        self._close_session()
        super().close()

    # -- a turn --------------------------------------------------------------------------------------
    def act(self, action: str) -> Act:
        """Append the assistant turn, run its tool calls; whether (and how) the episode ended."""
        if self.problem is None or self.done:
            raise RuntimeError("act() called before reset() or after the episode ended")
        self.turn += 1
        self.messages.append(ChatMessage("assistant", action))
        parsed = self.parser.parse(action)
        if parsed.is_final:
            return Act(final=self.options.final(self, action, False))
        replies: list[str] = []
        final = None
        for err in parsed.errors:
            replies.append(self._count(ToolReply(f"[error: {err}]", error="malformed"), "malformed"))
        for k, call in enumerate(parsed.calls):
            if final is not None:
                replies.append(self._count(ToolReply("[not run: the answer was already submitted]"), None))
                continue
            replies.append(self._count(self._run(call.name, call.arguments, k), call.name))
            if self._last.final is not None:
                final = self.options.final(self, self._last.final, True)
                self.stats.submitted = True
        messages = tuple(ChatMessage("tool", self._cap(r)) for r in replies)
        self.messages.extend(messages)
        if final is not None:
            return Act(messages, final=final)
        if self.turn >= self.budgets.max_turns:
            return Act(messages, truncated=True, reason="turns")
        return Act(messages)

    def _run(self, name: str, args: Any, k: int) -> ToolReply:
        if k >= self.budgets.calls_per_turn:
            return ToolReply(f"[error: not run: at most {self.budgets.calls_per_turn} calls a turn]", error="calls")
        tool = self.tools.get(name)
        if tool is None:
            return ToolReply(f"[error: unknown tool {name!r}; the tools are {sorted(self.tools)}]", error="unknown_tool")
        if (why := check_arguments(tool.spec, args)) is not None:
            return ToolReply(f"[error: {name}: {why}]", error="bad_arguments")
        if name in ("python", "shell") and self.stats.tool_time_s >= self.budgets.tool_time_s:
            return ToolReply(f"[error: the tool-time budget of {self.budgets.tool_time_s:g}s is spent; submit your "
                             "answer]", error="budget")
        if name in ("python", "shell", "write_file"):
            self.session()  # started (or taken warm from the pool) outside the call's tool time
        t0 = time.monotonic()
        reply = tool.run(self, args)
        if name != "submit":
            self.stats.tool_time_s += time.monotonic() - t0
        return reply

    def _count(self, reply: ToolReply, name: str | None) -> str:
        self._last = reply
        if name is not None:
            self.stats.tool_calls += 1
            self.stats.by_tool[name] = self.stats.by_tool.get(name, 0) + 1
        self.stats.tool_errors += reply.error is not None
        self.stats.code_errors += reply.code_error
        return reply.text

    def _cap(self, text: str) -> str:
        n = self.budgets.reply_chars
        if len(text) <= n:
            return text
        return text[:n] + f"\n[reply truncated: {len(text) - n} more characters]"

    # -- the end of an episode ----------------------------------------------------------------------
    def metrics(self, verdict: Verdict | None = None) -> dict[str, float]:
        s = self.stats
        return {"success": float(bool(verdict and verdict.correct)), "turns": float(self.turn),
                "tool_calls": float(s.tool_calls), "tool_errors": float(s.tool_errors),
                "code_errors": float(s.code_errors), "tool_time_s": round(s.tool_time_s, 4),
                "submitted": float(s.submitted)}

    def no_answer(self, reason: str) -> Verdict:
        """The verdict of an episode a budget ended before any answer: 0, said why (not a grader error)."""
        return Verdict(0.0, False, details={"reason": f"no answer: the {reason} budget ran out"},
                       verifier=getattr(self.verifier, "name", ""), verifier_version=str(getattr(self.verifier, "version", "")))

    def conclude(self, verdict: Verdict, *, truncated: bool = False) -> tuple[str, float, bool, bool, dict]:
        self._close_session()
        self.done = True
        info = self._info()
        info["verdict"] = verdict
        info["metrics"] = {**self.metrics(verdict), "truncated": float(truncated)}
        info["isolation"] = list(self.isolation)
        return "", float(verdict.reward), not truncated, truncated, info

    def truncate(self, reason: str) -> tuple[str, float, bool, bool, dict]:
        return self.conclude(self.no_answer(reason), truncated=True)

    def apply(self, action: str, verdict: Verdict) -> tuple[str, float, bool, bool, dict]:
        raise EvalgymError("agentic envs are stepped with step() or act()/conclude() (evalgym.agentic.runner), "
                           "not apply(): their turns run tools")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.problem is None or self.done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        if not isinstance(action, str):
            raise TypeError(f"action must be the completion text (str), got {type(action).__name__}")
        act = self.act(action)
        if act.final is not None:
            return self.conclude(self.verifier.verify(self.problem, act.final))
        if act.truncated:
            return self.truncate(act.reason or "turns")
        info = self._info()
        info["metrics"] = self.metrics()
        info["isolation"] = list(self.isolation)
        return "\n\n".join(m.content for m in act.messages), 0.0, False, False, info
