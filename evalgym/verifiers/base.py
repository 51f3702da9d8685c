"""The verifier side of the env contract: a pure grading function run in worker processes.

A grading function is a module-level function ``grade(*args) -> {"reward", "correct", "details"[,
"error"]}`` that never raises. A reasoning section (``think``: ``("<think>", "</think>")``, a tag name, or
None) is cut from each response before grading when the class sets ``default_think`` or the caller
passes ``think=``: the text after its last closing tag is graded; an unclosed one leaves no answer. :class:`PooledVerifier` runs it under a time budget in a
:class:`~evalgym.verifiers.pool.BudgetPool` and turns each outcome into a :class:`Verdict`: a timeout
or a crashed worker is a Verdict with ``error`` set, never a silent 0.

    class MyVerifier(PooledVerifier):
        name, version, modules = "mine", "1", ("mypkg.grading",)
        grade = staticmethod(mypkg.grading.grade)
        def args(self, problem, response): return (problem.answer, response)
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from evalgym.types import Problem, Verdict
from evalgym.verifiers.math_extract import check_think, strip_think
from evalgym.verifiers.pool import BudgetPool, Outcome, shared_pool

_CLASS_DEFAULT: Any = object()


class PooledVerifier:
    name: ClassVar[str]
    version: ClassVar[str]
    modules: ClassVar[tuple[str, ...]]  # imported once by every worker
    grade: Callable[..., dict[str, Any]]
    default_think: ClassVar[tuple[str, str] | None] = None
    handles_think: ClassVar[bool] = False  # True: ``args`` hands ``self.think`` to ``grade``, which cuts it

    def __init__(self, budget_s: float = 1.0, workers: int | None = None, pool: BudgetPool | None = None,
                 think: Any = _CLASS_DEFAULT):
        self.budget_s = budget_s
        self.think = check_think(self.default_think if think is _CLASS_DEFAULT else think)
        self.pool = pool or (BudgetPool(workers, self.modules) if workers else shared_pool(self.modules))

    def args(self, problem: Problem, response: str) -> tuple:
        raise NotImplementedError

    def answer_part(self, response: str) -> str:
        """The response as graded: without its reasoning section (unless ``grade`` cuts it itself)."""
        if self.handles_think or self.think is None:
            return response
        cut = strip_think(response, self.think)
        return "" if cut is None else cut

    def run(self, arg_tuples: Sequence[tuple]) -> list[Verdict]:
        return [self.to_verdict(o) for o in self.pool.map(type(self).grade, list(arg_tuples), self.budget_s)]

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.run([self.args(problem, self.answer_part(response))])[0]

    def verify_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        return self.run([self.args(p, self.answer_part(r)) for p, r in zip(problems, responses)])

    def to_verdict(self, outcome: Outcome) -> Verdict:
        if outcome.status == "ok":
            r = outcome.value
            return Verdict(reward=float(r["reward"]), correct=bool(r["correct"]), error=r.get("error"),
                           details=r.get("details", {}), elapsed_s=outcome.elapsed_s,
                           verifier=self.name, verifier_version=self.version)
        error = "timeout" if outcome.status == "timeout" else f"{outcome.status}: {outcome.error}"
        return Verdict(reward=0.0, correct=False, error=error, details={"reason": outcome.error},
                       elapsed_s=outcome.elapsed_s, verifier=self.name, verifier_version=self.version)
