"""The values that flow through evalgym. This file is the architecture.

Every arrow in the design (env → policy → verifier → trainer → checkpoint → evaluation → report) carries
one of these frozen dataclasses, never a callback. They are plain data: JSON round-trips through
``to_dict`` / ``from_dict`` so trajectories, verdicts and eval rows can be written as JSONL and read back.

Naming: sequences are tuples (frozen all the way down); per-token arrays are aligned with ``token_ids``.

    problem = Problem(id="gsm8k-v0/17", env_id="evalgym/gsm8k-v0", env_version=0, domain="math",
                      messages=(ChatMessage("user", "What is 2+2?"),), answer="4")
    verdict = Verdict(reward=1.0, correct=True, verifier="math", verifier_version="1")
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "abort", "error"]


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn, as chat templates expect it."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def messages_from(value: Sequence[ChatMessage | Mapping[str, str]] | str) -> tuple[ChatMessage, ...]:
    """Accept a prompt string, OpenAI-style dicts or ChatMessages; return a tuple of ChatMessages."""
    if isinstance(value, str):
        return (ChatMessage("user", value),)
    out = []
    for i, m in enumerate(value):
        if isinstance(m, ChatMessage):
            out.append(m)
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            out.append(ChatMessage(m["role"], m["content"]))  # type: ignore[arg-type]
        else:
            raise ValueError(f"messages[{i}]: expected {{'role', 'content'}}, got {m!r}")
    return tuple(out)


@dataclass(frozen=True)
class Problem:
    """One prompt of one environment, with what is needed to grade an answer to it.

    id:           stable identifier within the env, e.g. ``"gsm8k-v0/test/17"``.
    env_id:       the registered Gymnasium id that produced it, e.g. ``"evalgym/gsm8k-v0"``.
    env_version:  the version number in ``env_id``; bumped when prompt, extraction or reward changes.
    domain:       routing key for teachers and per-domain reports: ``"math"``, ``"code"``, ``"if"``...
    messages:     the chat prompt given to the policy.
    answer:       the gold final answer as text (what a verifier compares against).
    reference:    a complete response that the env's verifier scores 1.0 (a worked solution, or the
                  answer in the format the prompt asks for). Every env's QA test checks it.
    index:        position in the env's source (dataset row, or procedural seed offset).
    extra:        verifier-specific data (countdown numbers, code tests, instruction kwargs...).
    """

    id: str
    env_id: str
    env_version: int
    domain: str
    messages: tuple[ChatMessage, ...]
    answer: str
    reference: str = ""
    index: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt_text(self) -> str:
        """The last user message: the question itself."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


@dataclass(frozen=True)
class Completion:
    """What a policy produced for one prompt.

    token_ids and logprobs are aligned (one sampled-token logprob per generated token); both are empty
    for policies that do not expose tokens (scripted baselines, some API servers).
    """

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    finish_reason: FinishReason = "stop"
    prompt_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.logprobs and len(self.logprobs) != len(self.token_ids):
            raise ValueError(
                f"Completion.logprobs has {len(self.logprobs)} entries for {len(self.token_ids)} token_ids"
            )

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one response.

    reward:   in [0, 1]; binary graders give 0.0 or 1.0.
    correct:  whether the response counts as solved (pass@k, accuracy).
    error:    None when grading ran to a decision; otherwise why it could not (``"timeout"``,
              ``"worker_crashed"``, ``"internal: ..."``). An error is never a silent 0: reports count it.
    details:  what the grader saw and decided: extracted answer, parsed forms, reason.
    elapsed_s: wall-clock seconds spent grading.
    verifier / verifier_version: which grader, which revision (bump on any change of outcome).
    """

    reward: float
    correct: bool
    error: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    elapsed_s: float = field(default=0.0, compare=False)
    verifier: str = ""
    verifier_version: str = ""

    def __post_init__(self) -> None:
        r = self.reward
        if not isinstance(r, (int, float)) or isinstance(r, bool) or math.isnan(r) or not 0.0 <= r <= 1.0:
            raise ValueError(f"Verdict.reward must be a number in [0, 1], got {r!r}")


@dataclass(frozen=True)
class Step:
    """One policy turn inside an episode: what it saw, what it said, how it was graded."""

    messages: tuple[ChatMessage, ...]
    completion: Completion
    verdict: Verdict
    reward: float


@dataclass(frozen=True)
class Trajectory:
    """One episode of one problem by one policy sample.

    reward:     the episode's return (the last step's reward for the built-in envs).
    sample_index: which of the G samples of its group this is.
    policy:     model name or checkpoint path that sampled it; ``policy_step`` its training step.
    teacher_logprobs: per-token logprobs of the final completion under a teacher (on-policy
                distillation), aligned with ``final.completion.token_ids``; empty if unscored.
    """

    problem: Problem
    steps: tuple[Step, ...]
    reward: float
    truncated: bool = False
    sample_index: int = 0
    policy: str = ""
    policy_step: int = 0
    teacher_logprobs: tuple[float, ...] = ()

    @property
    def final(self) -> Step:
        return self.steps[-1]

    @property
    def correct(self) -> bool:
        return bool(self.steps) and self.steps[-1].verdict.correct


@dataclass(frozen=True)
class TrajectoryGroup:
    """G samples of the same problem: the unit of GRPO advantages and of pass@k."""

    problem: Problem
    trajectories: tuple[Trajectory, ...]

    def __post_init__(self) -> None:
        for t in self.trajectories:
            if t.problem.id != self.problem.id:
                raise ValueError(f"TrajectoryGroup of {self.problem.id!r} holds a trajectory of {t.problem.id!r}")

    @property
    def rewards(self) -> tuple[float, ...]:
        return tuple(t.reward for t in self.trajectories)

    @property
    def zero_variance(self) -> bool:
        """All samples got the same reward: no learning signal for group-normalized advantages."""
        r = self.rewards
        return len(r) == 0 or max(r) - min(r) == 0.0


@dataclass(frozen=True)
class CheckpointRef:
    """A saved checkpoint: ``path`` is ``run_dir/step_000100``; ``parent`` the checkpoint it started from."""

    path: str
    step: int
    run_id: str
    parent: str | None = None


@dataclass(frozen=True)
class EvalRow:
    """One (run, checkpoint, task, metric) result, with what produced it."""

    run_id: str
    step: int
    model: str
    task: str
    task_version: str
    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


# -- JSON round-trip -----------------------------------------------------------------------------

def to_dict(value: Any) -> Any:
    """Plain-JSON form of any value in this module (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Inverse of :func:`to_dict` for the dataclasses of this module."""
    hints = {
        ChatMessage: {},
        Problem: {"messages": (ChatMessage,)},
        Completion: {},
        Verdict: {},
        Step: {"messages": (ChatMessage,), "completion": Completion, "verdict": Verdict},
        Trajectory: {"problem": Problem, "steps": (Step,)},
        TrajectoryGroup: {"problem": Problem, "trajectories": (Trajectory,)},
        CheckpointRef: {},
        EvalRow: {},
    }
    if cls not in hints:
        raise TypeError(f"from_dict does not know {cls!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        hint = hints[cls].get(k)
        if isinstance(hint, tuple):
            kwargs[k] = tuple(from_dict(hint[0], x) for x in v)
        elif hint is not None:
            kwargs[k] = from_dict(hint, v)
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)
