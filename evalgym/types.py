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
import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

if TYPE_CHECKING:   # TrainBatch holds tensors; importing evalgym.types does not import torch
    import torch

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


def content_hash(problem: Problem) -> str:
    """16 hex characters identifying what a problem *is*, whatever seed, index or split produced it.

    The content is ``problem.extra["canonical"]`` when the source sets it (a string independent of the
    prompt's wording, e.g. ``"3+4"``), else the whitespace-normalized text of every message followed by the
    gold answer. Two problems with the same hash are the same problem: splits, contamination checks and
    training manifests compare these.
    """
    canonical = problem.extra.get("canonical") if isinstance(problem.extra, Mapping) else None
    if not isinstance(canonical, str):
        text = "\x1e".join(f"{m.role}\x1f{' '.join(m.content.split())}" for m in problem.messages)
        canonical = f"{text}\x1d{' '.join(problem.answer.split())}"
    return canonical_hash(canonical)


def canonical_hash(canonical: str) -> str:
    """The hash :func:`content_hash` gives a problem whose canonical content is ``canonical``: for code that
    counts or partitions a problem space from its canonical strings without building every Problem."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


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
    metrics:    numeric episode metrics the env reports (agentic envs: ``success``, ``turns``,
                ``tool_calls``, ``tool_errors``, ``code_errors``, ``tool_time_s``, ``submitted``,
                ``truncated``); the evaluation driver averages each as ``episode_<name>``. Empty for
                single-turn envs.

    Token-exact episodes (agentic envs through ``evalgym.agentic.runner``): each step's
    ``completion.prompt_token_ids`` is the previous step's ``prompt_token_ids`` + its ``token_ids`` + the
    ids the env appended (tool replies and the next generation prompt), so the whole episode is one token
    sequence in which the sampled turns are known (``evalgym.trainers.batch.episode_tokens``).
    """

    problem: Problem
    steps: tuple[Step, ...]
    reward: float
    truncated: bool = False
    sample_index: int = 0
    policy: str = ""
    policy_step: int = 0
    teacher_logprobs: tuple[float, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)

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


@dataclass(frozen=True)
class TrainBatch:
    """One rollout batch as the RL loss sees it: B sequences (prompt + every sampled turn, right-padded to
    L tokens). Per-position tensors are ``[B, L-1]``: position t scores token t+1, as next-token log-probs
    line up. Every RL trainer (GRPO, on-policy distillation / MOPD, RL on a reward model, rejection sampling,
    off-policy distillation) is a way of filling ``advantages_BT``; one loop consumes it.

    tokens_BL:        token ids (long); padding is any id, masked out.
    attention_BL:     1 on real tokens, 0 on padding.
    loss_mask_BT:     1.0 where token t+1 was sampled by the policy and is trained on (assistant turns);
                      0 on prompt, env/tool tokens, padding and masked samples (grader errors).
    behavior_logp_BT: the sampler's own log-prob of each sampled token, recorded at sampling time (the
                      engine's numerics: vLLM, a stale copy of the weights, a teacher for off-policy data).
    has_behavior_B:   False for rows whose sampler gave no log-probs (nothing to correct against).
    advantages_BT:    per-token advantage (a sequence-level advantage is broadcast over its tokens).
    group_B:          the group (prompt) of each row; rows of a group are consecutive.
    teacher_logp_BT:  distillation: the routed teacher's log-prob of each sampled token; the per-token
                      advantage adds ``teacher − student`` with the student's log-prob at sampling time.
    teacher_top_ids_BTK / teacher_top_logp_BTK: distillation with ``kl_topk``: the teacher's k likeliest
                      tokens and their log-probs at each position (the exact top-k reverse KL).
    labels:           per-row strings for per-env / per-domain metrics (``env``, ``domain``).
    stats:            rollout-level metrics of the batch (reward mean, grader errors, ...).
    """

    tokens_BL: "torch.Tensor"
    attention_BL: "torch.Tensor"
    loss_mask_BT: "torch.Tensor"
    behavior_logp_BT: "torch.Tensor"
    has_behavior_B: "torch.Tensor"
    advantages_BT: "torch.Tensor"
    group_B: "torch.Tensor"
    teacher_logp_BT: "torch.Tensor | None" = None
    teacher_top_ids_BTK: "torch.Tensor | None" = None
    teacher_top_logp_BTK: "torch.Tensor | None" = None
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stats: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        B, L = self.tokens_BL.shape
        for name in ("attention_BL",):
            if tuple(getattr(self, name).shape) != (B, L):
                raise ValueError(f"TrainBatch.{name}: shape {tuple(getattr(self, name).shape)}, expected {(B, L)}")
        for name in ("loss_mask_BT", "behavior_logp_BT", "advantages_BT", "teacher_logp_BT"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (B, L - 1):
                raise ValueError(f"TrainBatch.{name}: shape {tuple(t.shape)}, expected {(B, L - 1)}")
        for name in ("has_behavior_B", "group_B"):
            if tuple(getattr(self, name).shape) != (B,):
                raise ValueError(f"TrainBatch.{name}: shape {tuple(getattr(self, name).shape)}, expected {(B,)}")
        for name, col in self.labels.items():
            if len(col) != B:
                raise ValueError(f"TrainBatch.labels[{name!r}]: {len(col)} entries for {B} rows")

    @property
    def size(self) -> int:
        return int(self.tokens_BL.shape[0])

    def select(self, rows: "torch.Tensor") -> TrainBatch:
        """The batch restricted to ``rows`` (a 1-D index tensor), trimmed to its longest row."""
        keep = int(self.attention_BL[rows].sum(dim=1).max()) if len(rows) else 1
        keep = max(keep, 2)

        def cut(t: Any, width: int) -> Any:
            return None if t is None else t[rows][:, :width]
        return dataclasses.replace(
            self, tokens_BL=cut(self.tokens_BL, keep), attention_BL=cut(self.attention_BL, keep),
            loss_mask_BT=cut(self.loss_mask_BT, keep - 1), behavior_logp_BT=cut(self.behavior_logp_BT, keep - 1),
            has_behavior_B=self.has_behavior_B[rows], advantages_BT=cut(self.advantages_BT, keep - 1),
            group_B=self.group_B[rows], teacher_logp_BT=cut(self.teacher_logp_BT, keep - 1),
            teacher_top_ids_BTK=cut(self.teacher_top_ids_BTK, keep - 1),
            teacher_top_logp_BTK=cut(self.teacher_top_logp_BTK, keep - 1),
            labels={k: tuple(v[i] for i in rows.tolist()) for k, v in self.labels.items()})


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
