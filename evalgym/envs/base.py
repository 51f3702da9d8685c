"""The text-environment contract: a real ``gymnasium.Env`` whose observation is a prompt and whose action
is the policy's completion text.

    env = gymnasium.make("evalgym/gsm8k-v0")            # after `import evalgym`
    obs, info = env.reset(seed=0, options={"index": 17})  # obs: prompt text; info["messages"]: chat
    obs, reward, terminated, truncated, info = env.step(completion_text)
    info["verdict"]                                      # the evalgym.types.Verdict of that answer

Single-turn envs terminate after one step. A multi-turn env (``max_turns > 1``) answers a wrong attempt
with feedback as the next observation (also appended to ``info["messages"]``) and continues until the
answer is correct (terminated) or the turns run out (truncated).

An env is a ``ProblemSource`` (dataset rows or a seeded generator) plus a ``Verifier``. It knows
nothing about policies or trainers.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import gymnasium as gym
from gymnasium import spaces

from evalgym.types import ChatMessage, Problem, Verdict

MAX_TEXT = 1 << 20  # one MiB of characters: longer prompts or completions are not text we handle


class UnicodeText(spaces.Text):
    """``gymnasium.spaces.Text`` for natural language: any string up to ``max_length`` characters.

    Gymnasium's ``Text`` checks every character against a finite charset (alphanumeric by default);
    prompts and completions are arbitrary Unicode, so membership only checks type and length.
    ``sample()`` still draws from the printable-ASCII charset.
    """

    def __init__(self, max_length: int = MAX_TEXT, *, min_length: int = 0, seed: Any = None):
        charset = "".join(chr(c) for c in range(32, 127)) + "\n"
        super().__init__(max_length, min_length=min_length, charset=charset, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"


def _no_shared_memory(space: UnicodeText, n: int = 1, ctx: Any = None) -> Any:
    raise gym.error.CustomSpaceError(
        "text observations cannot live in shared memory (Gymnasium reads them back only once); "
        "use gymnasium.make_vec(..., vectorization_mode='async', vector_kwargs={'shared_memory': False})")


try:  # make AsyncVectorEnv's default shared memory fail loudly instead of returning blank prompts
    from gymnasium.vector.utils import create_shared_memory

    create_shared_memory.register(UnicodeText)(_no_shared_memory)
except (ImportError, AttributeError):  # pragma: no cover - older Gymnasium
    pass


@runtime_checkable
class ProblemSource(Protocol):
    """Where an env's problems come from. ``size`` is the number of distinct problems (procedural
    sources report a nominal ``2**31 - 1``); ``problem(i)`` is deterministic in ``i``."""

    size: int

    def problem(self, index: int) -> Problem: ...


@runtime_checkable
class Verifier(Protocol):
    """A grader: a pure function of (problem, response text) to a Verdict. Never raises to its caller."""

    name: str
    version: str

    def verify(self, problem: Problem, response: str) -> Verdict: ...

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]: ...


Feedback = Callable[[Problem, Verdict], str]


def default_feedback(problem: Problem, verdict: Verdict) -> str:
    return "That answer is not correct. Check your work and try again; put your final answer in \\boxed{}."


class TextEnv(gym.Env[str, str]):
    """Prompt in, completion out, graded by the env's verifier."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        source: ProblemSource,
        verifier: Verifier,
        *,
        max_turns: int = 1,
        feedback: Feedback = default_feedback,
        render_mode: str | None = None,
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.source = source
        self.verifier = verifier
        self.max_turns = max_turns
        self.feedback = feedback
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText()
        self.problem: Problem | None = None
        self.messages: list[ChatMessage] = []
        self.turn = 0
        self.done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"index"}
        if unknown:
            raise ValueError(f"reset(options=...): unknown option(s) {sorted(unknown)}; known: ['index']")
        if "index" in options:
            index = int(options["index"])
            if not 0 <= index < self.source.size:
                raise IndexError(f"options['index']={index} is outside this env's {self.source.size} problems")
        else:
            index = int(self.np_random.integers(self.source.size))
        self.problem = self.source.problem(index)
        self.messages = list(self.problem.messages)
        self.turn = 0
        self.done = False
        return self.problem.prompt_text, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.problem is None or self.done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        if not isinstance(action, str):
            raise TypeError(f"action must be the completion text (str), got {type(action).__name__}")
        return self.apply(action, self.verifier.verify(self.problem, action))

    def apply(self, action: str, verdict: Verdict) -> tuple[str, float, bool, bool, dict]:
        """``step`` with the verdict already computed: for collectors that grade many episodes'
        actions in one ``verifier.verify_batch`` call (in worker processes) and then advance each
        episode. ``verdict`` must be this env's verifier's judgement of ``action``."""
        if self.problem is None or self.done:
            raise RuntimeError("apply() called before reset() or after the episode ended")
        self.turn += 1
        self.messages.append(ChatMessage("assistant", action))
        terminated = verdict.correct or self.max_turns == 1
        truncated = not terminated and self.turn >= self.max_turns
        observation = ""
        if not (terminated or truncated):
            observation = self.feedback(self.problem, verdict)
            self.messages.append(ChatMessage("user", observation))
        self.done = terminated or truncated
        info = self._info()
        info["verdict"] = verdict
        return observation, float(verdict.reward), terminated, truncated, info

    def _info(self) -> dict[str, Any]:
        assert self.problem is not None
        return {
            "problem": self.problem,
            "messages": [m.as_dict() for m in self.messages],
            "turn": self.turn,
        }

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.problem is None:
            return None
        return "\n".join(f"[{m.role}] {m.content}" for m in self.messages)
