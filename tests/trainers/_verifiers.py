"""In-process verifiers for trainer tests: a dense reward that always has variance (so advantages and
ratios move from the first step, even for a random model), and one whose grades fail."""

from __future__ import annotations

from evalgym.types import Problem, Verdict


class DigitShare:
    """Reward = share of digit characters in the response (0 for an empty one)."""

    name, version = "digit-share", "1"
    chars = "0123456789"

    def __repr__(self) -> str:   # stable in a run's saved config (resume compares configs)
        return f"{type(self).__name__}({getattr(self, 'failing', '')})"

    def verify(self, problem: Problem, response: str) -> Verdict:
        share = sum(c in self.chars for c in response) / max(len(response), 1)
        return Verdict(reward=share, correct=share > 0.5, verifier=self.name, verifier_version=self.version)

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        return [self.verify(p, r) for p, r in zip(problems, responses)]


class VowelShare(DigitShare):
    """Reward = share of vowels: varies between any two different texts of a real tokenizer's model."""

    name, chars = "vowel-share", "aeiouAEIOU"


class FailingGrades(DigitShare):
    """Like ``DigitShare``, but every grade of a problem whose index is a multiple of ``failing`` (1: all)
    is an error, as a code grader without a sandbox reports it."""

    name = "failing"

    def __init__(self, failing: int = 1, error: str = "no sandbox: bubblewrap not found"):
        self.failing, self.error = failing, error

    def verify(self, problem: Problem, response: str) -> Verdict:
        if problem.index % self.failing == 0:
            return Verdict(reward=0.0, correct=False, error=self.error, verifier=self.name, verifier_version="1")
        return super().verify(problem, response)
