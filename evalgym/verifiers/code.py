"""The code grader: run a program against its tests in a sandbox; a pass is counted only when the
trusted harness (``code_harness.py``) proves, with an HMAC over a per-run nonce, that every test ran
and held.

    grade_code(program, test=..., entry_point="add", backend="local")   -> Verdict
    CodeVerifier().verify(problem, response)                             # the env contract
    evalgym verify code --input rows.jsonl                               # HumanEval-style rows

A response's code is its last fenced ```python block, else the whole text. HumanEval-style problems
give a prompt (imports, helpers, the signature + docstring) and the program is assembled the way the
answer is meant to run (``assemble``): a completion (a body) goes after the prompt; a chat model's
rewrite of the whole function keeps the prompt's imports and helper definitions (``from typing import
List``...) in front of its own code. The prompt also runs, trusted, in the harness, so tests may use its
helpers.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from evalgym.sandbox import Limits, Program, SandboxUnavailable, get_sandbox
from evalgym.types import Problem, Verdict
from evalgym.verifiers.code_harness import CHILD, HARNESS

NAME = "code"
VERSION = "2"  # 2: a rewritten function keeps the prompt's imports and helpers
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)


def extract_code(response: str) -> str:
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def _defines_at_top(code: str, entry_point: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point for n in tree.body)


def prompt_context(prompt: str, entry_point: str) -> str:
    """The prompt without the entry point's own stub: its imports, constants and helper definitions."""
    source = prelude_from_prompt(prompt)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = None
    lines = prompt.splitlines(keepends=True)
    stubs = [n for n in (tree.body if tree else ())
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point]
    if not stubs:  # unparsable prompt: everything above the stub's def line
        m = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, re.M)
        return prompt[: m.start()] if m else prompt
    stub = stubs[-1]
    first = min([stub.lineno] + [d.lineno for d in stub.decorator_list]) - 1
    last = stub.end_lineno or len(lines)
    return "".join(lines[:first] + lines[last:])


def assemble(prompt: str, code: str, entry_point: str) -> str:
    """The program under test, as the answer is meant to run: when the code defines the entry point (a
    chat model rewrote the whole function), the prompt's context (imports, helpers) + the code; else
    (a completion: the body) prompt + code. Without a prompt (MBPP, code-gen), the code alone."""
    if not prompt:
        return code
    if not _defines_at_top(code, entry_point):
        return prompt + code
    context = prompt_context(prompt, entry_point).rstrip()
    return (context + "\n\n\n" if context else "") + code


def harness_program(program: str, test: str, entry_point: str, prelude: str = "", check: bool = True,
                    nonce: str | None = None) -> tuple[Program, str]:
    nonce = nonce or secrets.token_hex(16)
    spec = {"test": test, "entry_point": entry_point, "prelude": prelude, "check": check}
    files = {"harness.py": HARNESS, "child.py": CHILD, "program.py": program, "spec.json": json.dumps(spec)}
    # -I: the program's directory is not on the harness's sys.path (it could plant a module there)
    return Program(files=files, command=["python3", "-I", "harness.py"], stdin=nonce + "\n"), nonce


def judge(stdout: str, nonce: str) -> tuple[bool, int, str]:
    """(passed, calls, reason) from the harness's last output line; only a valid HMAC passes."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(("EVALGYM-PASS ", "EVALGYM-FAIL "))]
    if not lines:
        return False, 0, "the harness reported nothing"
    last = lines[-1].split(" ")
    if last[0] == "EVALGYM-FAIL":
        return False, 0, json.loads(" ".join(last[1:])) if len(last) > 1 else "failed"
    if len(last) != 3 or not last[2].isdigit():
        return False, 0, "malformed pass line"
    calls = int(last[2])
    want = hmac.new(nonce.encode(), b"pass:%d" % calls, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, last[1]):
        return False, 0, "forged pass line"
    return True, calls, f"all tests passed ({calls} calls)"


def run_harness(prog: Program, nonce: str, backend: str, limits: Limits) -> tuple[Any, bool, int, str]:
    """Run a harness program (:func:`harness_program`) in the sandbox and judge its report: ``(result, passed,
    calls, reason)``. Raises ``SandboxUnavailable``."""
    result = get_sandbox(backend).run(prog, limits)
    passed, calls, reason = judge(result.stdout, nonce)
    if result.timed_out:
        reason = f"timed out after {limits.timeout_s:g}s"
    return result, passed, calls, reason


def grade_code(program: str, *, test: str, entry_point: str, prelude: str = "", check: bool = True,
               backend: str = "local", limits: Limits = Limits(timeout_s=10, memory_mb=512)) -> Verdict:
    t0 = time.perf_counter()
    prog, nonce = harness_program(program, test, entry_point, prelude, check)
    try:
        result, passed, calls, reason = run_harness(prog, nonce, backend, limits)
    except SandboxUnavailable as exc:
        return Verdict(0.0, False, error=f"sandbox unavailable: {exc}", elapsed_s=time.perf_counter() - t0,
                       verifier=NAME, verifier_version=VERSION)
    details = {"reason": reason, "calls": calls, "exit_code": result.exit_code, "timed_out": result.timed_out,
               "oom": result.oom, "stderr": result.stderr[-500:], "backend": result.backend,
               "isolation": list(result.isolation)}
    return Verdict(1.0 if passed else 0.0, passed, details=details, elapsed_s=time.perf_counter() - t0,
                   verifier=NAME, verifier_version=VERSION)


class CodeVerifier:
    """Grades code problems (``problem.extra``: test, entry_point, prelude, check, prompt)."""

    name = NAME
    version = VERSION

    def __init__(self, backend: str = "local", timeout_s: float = 10.0, workers: int = 2):
        self.backend, self.limits, self.workers = backend, Limits(timeout_s=timeout_s), workers

    def _grade(self, problem: Problem, response: str) -> Verdict:
        x = problem.extra
        program = assemble(x.get("prompt", ""), extract_code(response), x["entry_point"])
        return grade_code(program, test=x["test"], entry_point=x["entry_point"], prelude=x.get("prelude", ""),
                          check=x.get("check", True), backend=self.backend, limits=self.limits)

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self._grade(problem, response)

    def verify_batch(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]:
        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(self._grade, problems, responses))


def prelude_from_prompt(prompt: str) -> str:
    """The prompt as trusted test-side code (its helpers and imports): as is when it compiles (HumanEval
    prompts end in a docstring), else with a stub body, else nothing."""
    for candidate in (prompt, prompt.rstrip() + "\n    ...\n"):
        try:
            compile(candidate, "prompt", "exec")
            return candidate
        except SyntaxError:
            continue
    return ""


def grade_rows(rows: Sequence[dict[str, Any]], backend: str = "local", workers: int = 2,
               timeout_s: float = 10.0) -> list[Verdict]:
    """HumanEval-style rows (prompt, completion, test, entry_point): the program is prompt + completion."""
    limits = Limits(timeout_s=timeout_s)

    def one(row: dict[str, Any]) -> Verdict:
        return grade_code(row["prompt"] + row["completion"], test=row["test"], entry_point=row["entry_point"],
                          prelude=prelude_from_prompt(row["prompt"]), check=True, backend=backend, limits=limits)

    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, rows))
