"""Teachers for on-policy distillation: per-token logprobs of the student's samples, routed by domain.

    teachers = Router({"math": Teacher.load("runs/expert-math/step_000040"),
                       "countdown": Teacher.load("runs/expert-countdown/step_000040")},
                      unrouted="error")
    check_compatible(student_tokenizer, teachers.teachers())     # raises, saying exactly what differs
    teacher = teachers.route(trajectory.problem)                 # by env id first, then by domain
    logps = teacher.logprobs([(prompt_token_ids, completion_token_ids), ...])

A teacher is any policy backend (``hf``, ``vllm`` with prompt logprobs, an OpenAI-compatible server):
it scores the exact token ids the student sampled, so student and teacher must share the tokenizer
and chat template. ``check_compatible`` makes a silent mismatch impossible: it compares the
vocabularies, special tokens and chat templates, and renders probe conversations through both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from evalgym.errors import EvalgymError
from evalgym.types import Problem

Unrouted = Literal["error", "skip", "default"]

# Conversations rendered through both chat templates; any difference in the token ids is a mismatch.
PROBES: tuple[list[dict[str, str]], ...] = (
    [{"role": "user", "content": "Compute 12 + 30.\n\nPut the final answer in \\boxed{}."},
     {"role": "assistant", "content": "12 + 30 = 42. \\boxed{42}"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Write `f(x)` in ```python```: return x*2 <answer>(1 + 2) * 3</answer>"}],
)


@dataclass
class Teacher:
    """A model that scores token ids: ``name`` (its model), ``policy`` (the engine serving it)."""

    name: str
    policy: Any
    calls: int = field(default=0, repr=False)
    tokens: int = field(default=0, repr=False)

    @classmethod
    def load(cls, model: str, backend: str = "hf", **kwargs: Any) -> Teacher:
        from evalgym.policies.base import make_policy

        return cls(model, make_policy(backend, model, **kwargs))

    @property
    def tokenizer(self) -> Any:
        return self.policy.tokenizer

    def logprobs(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        """Per-token logprobs of each ``completion_ids`` after ``prompt_ids`` (token ids, the
        student's rendering), one list per request, aligned with ``completion_ids``."""
        if not requests:
            return []
        out = self.policy.score_batch([(list(p), list(c)) for p, c in requests])
        for (_, c), lp in zip(requests, out):
            if len(lp) != len(c):
                raise EvalgymError(f"teacher {self.name}: scored {len(lp)} tokens of a {len(c)}-token completion")
        self.calls += 1
        self.tokens += sum(len(c) for _, c in requests)
        return [list(x) for x in out]

    @property
    def gives_topk(self) -> bool:
        """Whether its backend returns top-k logprobs (``score_topk_batch``: hf, vllm)."""
        return hasattr(self.policy, "score_topk_batch")

    def topk(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
             k: int) -> list[tuple[list[list[int]], list[list[float]], list[float]]]:
        """The teacher's ``k`` likeliest tokens and their logprobs at every position of each
        completion (the student's token ids), per request ``(ids, logprobs, token_logprobs)``: the
        first two ``[len(completion)][k]`` (the distribution the student's is compared with in
        top-k distillation), the last the logprob of each completion token (as ``logprobs``).
        Needs a backend with ``score_topk_batch`` (hf, vllm)."""
        if not requests:
            return []
        if not self.gives_topk:
            raise EvalgymError(f"teacher {self.name}: its backend {type(self.policy).__name__} gives no top-k "
                               "logprobs; use kl_topk: 0 (sampled per-token KL) or an hf/vllm teacher")
        out = self.policy.score_topk_batch([(list(p), list(c)) for p, c in requests], k)
        for (_, c), (ids, _, own) in zip(requests, out):
            if len(ids) != len(c) or len(own) != len(c):
                raise EvalgymError(f"teacher {self.name}: gave top-k for {len(ids)} positions of a {len(c)}-token "
                                   "completion")
        self.calls += 1
        self.tokens += sum(len(c) for _, c in requests)
        return out

    def close(self) -> None:
        close = getattr(self.policy, "close", None)
        if close is not None:
            close()


class Router:
    """Maps each trajectory's problem to its teacher: an entry for its env id (``evalgym/gsm8k-v0``
    or its short name ``gsm8k``) wins over one for its domain (``math``). A problem matching no
    entry is handled by ``unrouted``: ``error`` (raise), ``skip`` (``route`` returns None and the
    trainer drops the trajectory) or ``default`` (the ``default`` teacher)."""

    def __init__(self, routes: Mapping[str, Teacher], *, unrouted: Unrouted = "error",
                 default: Teacher | None = None):
        if unrouted not in ("error", "skip", "default"):
            raise EvalgymError(f"teachers: unrouted must be 'error', 'skip' or 'default', got {unrouted!r}")
        if unrouted == "default" and default is None:
            raise EvalgymError("teachers: unrouted='default' needs a default teacher (default_teacher)")
        if not routes and default is None:
            raise EvalgymError("teachers: no teacher given (teachers: {domain: model})")
        self.routes = dict(routes)
        self.unrouted: Unrouted = unrouted
        self.default = default

    def key(self, problem: Problem) -> str | None:
        """The routing key that matches ``problem`` (env id, short env name or domain), or None."""
        short = problem.env_id.split("/")[-1].rsplit("-v", 1)[0]
        for k in (problem.env_id, short, problem.domain):
            if k in self.routes:
                return k
        return None

    def route(self, problem: Problem) -> Teacher | None:
        k = self.key(problem)
        if k is not None:
            return self.routes[k]
        if self.unrouted == "default":
            return self.default
        if self.unrouted == "skip":
            return None
        raise EvalgymError(f"teachers: no teacher for domain {problem.domain!r} (env {problem.env_id}); "
                           f"routes: {sorted(self.routes)}; set unrouted: skip or default to allow this")

    def teachers(self) -> list[Teacher]:
        """Each distinct teacher once (several domains may share one)."""
        seen: dict[int, Teacher] = {}
        for t in [*self.routes.values(), *([self.default] if self.default else [])]:
            seen.setdefault(id(t), t)
        return list(seen.values())

    def close(self) -> None:
        for t in self.teachers():
            t.close()


def tokenizer_differences(student: Any, teacher: Any) -> list[str]:
    """Everything that makes token ids mean different things to the two tokenizers ([] if none)."""
    diffs: list[str] = []
    sv, tv = student.get_vocab(), teacher.get_vocab()
    if sv != tv:
        only_s = sorted(set(sv) - set(tv))
        only_t = sorted(set(tv) - set(sv))
        moved = sorted(k for k in set(sv) & set(tv) if sv[k] != tv[k])
        parts = [f"vocabulary differs (student {len(sv)} tokens, teacher {len(tv)})"]
        if only_s:
            parts.append(f"{len(only_s)} only in the student, e.g. {only_s[:3]}")
        if only_t:
            parts.append(f"{len(only_t)} only in the teacher, e.g. {only_t[:3]}")
        if moved:
            k = moved[0]
            parts.append(f"{len(moved)} with other ids, e.g. {k!r}: {sv[k]} vs {tv[k]}")
        diffs.append("; ".join(parts))
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
        a, b = getattr(student, attr, None), getattr(teacher, attr, None)
        if a != b:
            diffs.append(f"{attr} differs: student {a!r}, teacher {b!r}")
    st, tt = getattr(student, "chat_template", None), getattr(teacher, "chat_template", None)
    if st != tt:
        if st is None or tt is None:
            diffs.append(f"chat template: student has {'none' if st is None else 'one'}, "
                         f"teacher has {'none' if tt is None else 'one'}")
        else:
            i = next((i for i, (a, b) in enumerate(zip(st, tt)) if a != b), min(len(st), len(tt)))
            diffs.append(f"chat template differs at character {i}: student {st[max(0, i - 20):i + 30]!r}, "
                         f"teacher {tt[max(0, i - 20):i + 30]!r}")
    if not diffs:  # same vocab and template: the renderings must agree too (normalizers, pre-tokenizers)
        for probe in PROBES:
            try:
                a = student.apply_chat_template(probe, tokenize=False)
                b = teacher.apply_chat_template(probe, tokenize=False)
            except Exception as e:  # noqa: BLE001 - a template that cannot render a probe is reported
                diffs.append(f"chat template cannot render a probe conversation: {e}")
                break
            ia = list(student(a, add_special_tokens=False)["input_ids"])
            ib = list(teacher(b, add_special_tokens=False)["input_ids"])
            if ia != ib:
                j = next((j for j, (x, y) in enumerate(zip(ia, ib)) if x != y), min(len(ia), len(ib)))
                diffs.append(f"the same conversation tokenizes differently from token {j}: "
                             f"student {ia[j:j + 5]}, teacher {ib[j:j + 5]}")
                break
    return diffs


def check_compatible(student_tokenizer: Any, teachers: Sequence[Teacher], student_name: str = "student") -> None:
    """Raise unless every teacher shares the student's tokenizer and chat template."""
    problems = []
    for t in teachers:
        for d in tokenizer_differences(student_tokenizer, t.tokenizer):
            problems.append(f"teacher {t.name} vs {student_name}: {d}")
    if problems:
        raise EvalgymError("teachers must share the student's tokenizer and chat template (the teacher scores "
                           "the student's token ids):\n  " + "\n  ".join(problems))


def build_router(teachers: Mapping[str, str], *, unrouted: Unrouted = "error", default_teacher: str | None = None,
                 backend: str = "hf", backend_kwargs: Mapping[str, Any] | None = None) -> Router:
    """A router from ``{domain or env: model}``; a model named by several keys is loaded once."""
    loaded: dict[str, Teacher] = {}

    def get(model: str) -> Teacher:
        if model not in loaded:
            try:
                loaded[model] = Teacher.load(model, backend, **dict(backend_kwargs or {}))
            except EvalgymError:
                raise
            except (OSError, ValueError) as e:
                raise EvalgymError(f"teachers: cannot load teacher model {model!r}: {e}") from None
        return loaded[model]

    routes = {k: get(v) for k, v in teachers.items()}
    default = get(default_teacher) if default_teacher else None
    return Router(routes, unrouted=unrouted, default=default)


def divergence(student: Any, teacher: Any, items: Sequence[tuple[Any, int]], *, n: int = 2,
               max_tokens: int = 32, temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Sampled estimates of KL(π_s ‖ π_t) and KL(π_t ‖ π_s) per token on ``items`` ((env, index)
    pairs, e.g. held-out problems): each side samples ``n`` completions (at ``temperature``; 1 gives
    the textbook estimate) and both models score the same token ids with their raw logprobs.

    ``reverse_kl`` is what on-policy distillation minimises; ``forward_kl`` (the student's excess
    negative log-likelihood of the teacher's own samples) is what SFT on teacher samples minimises.
    Completions are cut at ``max_tokens``, so both are per-token means over those prefixes."""
    from evalgym.policies.base import SamplingParams
    from evalgym.rollouts import collect_many

    sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    out: dict[str, float] = {}
    for key, sampler, sign in (("reverse_kl", student, 1.0), ("forward_kl", teacher, -1.0)):
        res = collect_many(sampler, list(items), n=n, sampling=sampling, seed=seed)
        reqs = [(list(t.final.completion.prompt_token_ids), list(t.final.completion.token_ids))
                for g in res.groups for t in g.trajectories if t.final.completion.token_ids]
        if not reqs:
            raise EvalgymError(f"divergence: the {key.split('_')[0]} side sampled no tokens")
        s_lp, t_lp = student.score_batch(reqs), teacher.score_batch(reqs)
        total = sum(sign * (a - b) for ss, tt in zip(s_lp, t_lp) for a, b in zip(ss, tt))
        out[key] = total / sum(len(c) for _, c in reqs)
        out[f"{key}_tokens"] = float(sum(len(c) for _, c in reqs))
    return out
