"""An LLM judge as a verifier: any policy backend (hf, vllm, openai-compatible) scores responses against a
rubric, for domains without a checker. It is a Verifier-protocol object, so it filters synthetic data
(``evalgym synth --judge MODEL``) and is an RL reward source (``gymnasium.make(env_id, verifier=judge)``).

    from evalgym.policies.base import make_policy
    judge = JudgeVerifier(make_policy("hf", "smollm2-135m"), threshold=0.7)
    v = judge.verify(problem, "... so the answer is 12")
    v.reward      # score / 10 (scale (0, 10) by default); v.correct: reward >= threshold
    judge.stats   # {"judged": 1, "scored": 1, "unparseable": 0, "failed": 0, "examples": [...]}

The judge sees the rubric (system message), the question, the reference answer when the problem has one
(``use_reference``), and the response, and is asked to end with ``Score: N``. :func:`parse_score` reads the
score robustly (``Score: 8``, ``8/10``, ``[[8]]``, ``{"score": 8}``, ``8 out of 10``, ``\\boxed{8}``, a bare
number; the last labelled score wins, a fraction over another denominator is rescaled). A judge that fails
(the backend raises) or whose text holds no score in range is a Verdict with ``error`` set
(``judge_failed: ...`` / ``judge_unparseable``) and reward 0, counted in ``stats`` with examples: never a
silent 0. Judging is greedy by default, so a verdict is reproducible. ``examples`` (few-shot
``{question, answer?, response, score}``) are shown as earlier turns: small judges follow the format then.

The version is ``1+<hash of rubric, judge model, scale, threshold>``: a different judge is a different
verifier in every manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from typing import Any, Sequence

from evalgym.types import Problem, Verdict

NAME = "judge"
VERSION = "1"
MAX_EXAMPLES = 5

DEFAULT_RUBRIC = (
    "You are a strict grader. Judge whether the response answers the question correctly and completely. "
    "If a reference answer is given, the response must agree with it. Ignore style. Give a score from "
    "{lo} (wrong) to {hi} (fully correct). End your reply with a line 'Score: N'."
)

_NUM = r"(-?\d+(?:\.\d+)?)"
# labelled scores, e.g. "Score: 8", "**Rating:** 7/10", "score = 4"
_LABELLED = re.compile(r"(?:score|rating|grade)\s*(?:\*\*)?\s*(?:[:=\-]|is)\s*(?:\*\*)?\s*" + _NUM
                       + r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?", re.I)
_BRACKETS = re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]")
_BOXED = re.compile(r"\\boxed\{\s*" + _NUM + r"\s*\}")
_FRACTION = re.compile(_NUM + r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.I)
_JSON = re.compile(r"\{[^{}]*\"score\"\s*:\s*" + _NUM + r"[^{}]*\}", re.I)
_BARE = re.compile(r"^\s*" + _NUM + r"\s*\.?\s*$")


def parse_score(text: str, scale: tuple[float, float] = (0, 10)) -> float | None:
    """The score in ``text`` on ``scale`` (``(lo, hi)``), or None when there is none in range."""
    lo, hi = scale

    def rescaled(value: str, denom: str | None) -> float:
        v = float(value)
        if denom is not None and float(denom) > 0 and float(denom) != hi:
            v = lo + (v / float(denom)) * (hi - lo)
        return v

    candidates: list[tuple[int, float]] = []      # (position, value): the last one wins
    for pattern in (_LABELLED, _FRACTION):
        for m in pattern.finditer(text):
            candidates.append((m.start(), rescaled(m.group(1), m.group(2))))
        if candidates:
            break          # a labelled score beats a loose fraction elsewhere in the text
    for pattern in (_BRACKETS, _BOXED, _JSON):
        candidates += [(m.start(), float(m.group(1))) for m in pattern.finditer(text)]
    if not candidates:
        m = _BARE.match(text)
        if m:
            candidates.append((0, float(m.group(1))))
    if not candidates:
        return None
    value = max(candidates)[1]
    return value if lo <= value <= hi else None


class JudgeVerifier:
    """A Verifier whose grader is a language model (see the module docstring)."""

    name = NAME

    def __init__(self, policy: Any, *, rubric: str | None = None, scale: tuple[float, float] = (0, 10),
                 threshold: float = 0.7, max_tokens: int = 256, temperature: float = 0.0, use_reference: bool = True,
                 seed: int = 0, examples: Sequence[dict[str, Any]] = ()):
        from evalgym.errors import EvalgymError

        lo, hi = scale
        if not hi > lo:
            raise EvalgymError(f"judge.scale must be (lo, hi) with hi > lo, got {scale!r}")
        if not 0.0 <= threshold <= 1.0:
            raise EvalgymError(f"judge.threshold must be in [0, 1] (a share of the scale), got {threshold!r}")
        self.policy = policy
        self.rubric = (rubric or DEFAULT_RUBRIC).format(lo=_fmt(lo), hi=_fmt(hi))
        self.scale = (float(lo), float(hi))
        self.threshold = threshold
        self.max_tokens, self.temperature, self.use_reference, self.seed = max_tokens, temperature, use_reference, seed
        for k, ex in enumerate(examples):
            if not {"question", "response", "score"} <= set(ex):
                raise EvalgymError(f"judge.examples[{k}]: expected {{question, response, score}} (answer optional)")
        self.examples = [dict(ex) for ex in examples]
        model = getattr(policy, "name", type(policy).__name__)
        digest = hashlib.sha256(json.dumps([self.rubric, model, self.scale, threshold, max_tokens, temperature,
                                            use_reference, self.examples], default=str).encode()).hexdigest()[:8]
        self.version = f"{VERSION}+{digest}"
        self.model = model
        self._lock = threading.Lock()
        self.stats: dict[str, Any] = {"judged": 0, "scored": 0, "unparseable": 0, "failed": 0, "examples": []}

    def _ask(self, question: str, answer: str, response: str) -> str:
        parts = [f"Question:\n{question}"]
        if self.use_reference and answer:
            parts.append(f"Reference answer:\n{answer}")
        parts.append(f"Response:\n{response}")
        parts.append(f"Grade the response. End with 'Score: N' ({_fmt(self.scale[0])}-{_fmt(self.scale[1])}).")
        return "\n\n".join(parts)

    def messages(self, problem: Problem, response: str) -> list[dict[str, str]]:
        """The judge's chat: the rubric, few-shot ``examples`` as earlier turns (small judges copy the
        ``Score: N`` format from them), then this response."""
        out = [{"role": "system", "content": self.rubric}]
        for ex in self.examples:
            out.append({"role": "user", "content": self._ask(str(ex["question"]), str(ex.get("answer", "")),
                                                             str(ex["response"]))})
            out.append({"role": "assistant", "content": f"Score: {_fmt(float(ex['score']))}"})
        out.append({"role": "user", "content": self._ask(problem.prompt_text, problem.answer, response)})
        return out

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.verify_batch([problem], [response])[0]

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        from evalgym.policies.base import SamplingParams

        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        if not problems:
            return []
        t0 = time.perf_counter()
        sampling = SamplingParams(n=1, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed)
        try:
            outs = self.policy.generate([self.messages(p, r) for p, r in zip(problems, responses)], sampling)
            texts: list[str | None] = [o[0].text if o else "" for o in outs]
            failure = None
        except Exception as exc:  # noqa: BLE001 - a failing judge is an error verdict per response, never a raise
            texts, failure = [None] * len(problems), f"judge_failed: {type(exc).__name__}: {str(exc)[:200]}"
        elapsed = (time.perf_counter() - t0) / len(problems)
        verdicts = [self._verdict(p, text, failure, elapsed) for p, text in zip(problems, texts)]
        return verdicts

    def _verdict(self, problem: Problem, text: str | None, failure: str | None, elapsed: float) -> Verdict:
        lo, hi = self.scale
        score = parse_score(text, self.scale) if text is not None else None
        details = {"judge": self.model, "judge_output": (text or "")[:2000], "score": score}
        with self._lock:
            self.stats["judged"] += 1
            if score is None:
                self.stats["failed" if failure else "unparseable"] += 1
                if len(self.stats["examples"]) < MAX_EXAMPLES:
                    self.stats["examples"].append({"problem": problem.id, "error": failure or "judge_unparseable",
                                                   "judge_output": (text or "")[:300]})
            else:
                self.stats["scored"] += 1
        if score is None:
            return Verdict(reward=0.0, correct=False, error=failure or "judge_unparseable", details=details,
                           elapsed_s=elapsed, verifier=NAME, verifier_version=self.version)
        reward = (score - lo) / (hi - lo)
        return Verdict(reward=reward, correct=reward >= self.threshold, details=details, elapsed_s=elapsed,
                       verifier=NAME, verifier_version=self.version)

    def describe(self) -> dict[str, Any]:
        """What a dataset card records about this judge."""
        return {"verifier": NAME, "version": self.version, "model": self.model, "scale": list(self.scale),
                "threshold": self.threshold, "rubric": self.rubric}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def judge_stats_line(stats: dict[str, Any]) -> str:
    return (f"judged {stats['judged']}: scored {stats['scored']}, unparseable {stats['unparseable']}, "
            f"failed {stats['failed']}")


__all__: Sequence[str] = ("JudgeVerifier", "parse_score", "DEFAULT_RUBRIC")
