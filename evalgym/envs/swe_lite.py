"""``swe-lite``: fix a seeded bug in a small generated Python repository, with a shell, in a sandbox.

    env = gymnasium.make("evalgym/swe-lite-v0", modules=3, functions=4, bugs=2)   # knobs: repo size, bugs
    obs, info = env.reset(options={"index": 0})     # the repo is in the session's /work/repo

Each problem is a repository from ``swe_lite_repo.generate_repo`` (seeded by ``Random(seed + index)``, so
unlimited; the splits partition repositories by content hash as every procedural env does). The model gets
``shell``, ``write_file`` and ``submit``: it runs the visible tests, reads and edits the code, and submits.

Grading (``SweLiteVerifier``): the response is the session's files at the end of the episode (a JSON
snapshot the env takes). The package's ``.py`` files of the snapshot replace the package in a fresh copy of
the original repository; every other file is the fresh copy's, so edits to the visible tests, the README or
files outside the package change nothing. The hidden tests (never in the session) then run through the code
harness (``evalgym.verifiers.code``: the tests in a trusted process, the repository's functions called in a
child process, a pass proven with an HMAC over a per-run nonce) in a one-shot sandbox. So an episode that
edits the tests, the runner or the grader's files, or prints a pass marker, scores 0; only a fix passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import Any, Sequence

from evalgym.envs.agentic import AgenticEnv, agentic_options, _split_knobs
from evalgym.envs.sources import GeneratedSource, SpaceModel
from evalgym.envs.swe_lite_repo import generate_repo
from evalgym.types import Problem, Verdict

NAME = "swe-lite"
VERSION = "1"
PROMPT = ("Task {task}. The Python project in `repo/` (package `{package}`) has {what}: some of its tests fail. Run "
          "them with `cd repo && python3 -m unittest -q`, find the bug{s} and fix the code (not the tests) with the "
          "`shell` and `write_file` tools, then call `submit` with a one-line summary of your fix.\n\nFiles:\n{files}")
SPACE = SpaceModel(count=lambda **knobs: None)  # unbounded: repositories are not counted
_LOADER = ('import importlib as _il, sys as _sys\n_sys.path.insert(0, "repo")\nfor _m in {modules!r}:\n'
           '    _mod = _il.import_module(_m)\n    globals().update({{_k: _v for _k, _v in vars(_mod).items()\n'
           '                      if callable(_v) and getattr(_v, "__module__", None) == _m}})\n'
           'del _il, _sys, _m, _mod\n')


def generate(rng: random.Random, modules: int = 2, functions: int = 3, bugs: int = 1) -> tuple[str, str, str, dict]:
    """GeneratedSource's generator: (question, answer, reference, extra) of one repository."""
    for _ in range(20):
        try:
            repo = generate_repo(rng, modules=modules, functions=functions, bugs=bugs)
            break
        except ValueError as exc:
            if "modules in" in str(exc):
                raise TypeError(str(exc)) from None  # a bad knob: GeneratedSource names it
    else:
        raise ValueError("swe-lite: no repository with the asked bugs in 20 draws")
    what = "a bug" if bugs == 1 else f"{bugs} bugs"
    digest = hashlib.sha256(json.dumps([repo.buggy, repo.hidden_tests], sort_keys=True).encode()).hexdigest()
    question = PROMPT.format(task=digest[:8], package=repo.package, what=what, s="" if bugs == 1 else "s",
                             files="\n".join(f"  {k}" for k in sorted(repo.buggy)))
    extra = {"repo": repo.buggy, "hidden_tests": repo.hidden_tests, "package": repo.package,
             "modules": [f"{repo.package}.{m}" for m in repo.modules], "bugs": list(repo.bugs),
             "canonical": f"swe-lite:{digest}"}
    reference = json.dumps({"files": repo.fixed}, sort_keys=True)
    return question, "all hidden tests pass", reference, extra


def snapshot_response(files: dict[str, bytes | str]) -> str:
    """The graded response: the session's files (text) as JSON."""
    return json.dumps({"files": {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                                 for k, v in sorted(files.items())}}, sort_keys=True)


def _final(env: AgenticEnv, answer: str, submitted: bool) -> str:
    """At the end of the episode, whatever it said: the working tree (the original one if it never opened a
    session, or if the session is lost)."""
    try:
        tree = env.working_tree()
    except Exception:  # noqa: BLE001  (the session was lost: its changes are gone)
        tree = None
    return snapshot_response(env.problem.extra["repo"] if tree is None else tree)


def _files(problem: Problem) -> dict[str, str]:
    return dict(problem.extra["repo"])


def swe_lite_source(info: Any, seed: int = 0, split: str = "train", modules: int = 2, functions: int = 3,
                    bugs: int = 1, **kwargs: Any) -> GeneratedSource:
    agentic, rest = _split_knobs(kwargs)
    if rest:
        raise TypeError(f"unexpected knob(s) {sorted(rest)}")
    source = GeneratedSource(info, generate, seed=seed, split=split, space=SPACE, modules=modules,
                             functions=functions, bugs=bugs)
    source.agentic = agentic_options(("shell", "write_file", "submit"), files=_files, final=_final,
                                     **{"call_timeout_s": 20.0, "tool_time_s": 120.0, **agentic})
    return source


class SweLiteVerifier:
    """The hidden tests on a fresh copy of the repository with the response's package files applied."""

    name = NAME
    version = VERSION

    def __init__(self, backend: str | None = None, timeout_s: float = 20.0, workers: int = 2):
        from evalgym.sandbox import Limits

        self.backend = backend or os.environ.get("EVALGYM_SANDBOX", "local")
        self.limits, self.workers = Limits(timeout_s=timeout_s, memory_mb=512), workers

    def verify(self, problem: Problem, response: str) -> Verdict:
        from evalgym.sandbox import Program, SandboxUnavailable
        from evalgym.verifiers.code import harness_program, run_harness

        t0 = time.perf_counter()
        x = problem.extra
        try:
            files = json.loads(response)["files"]
            if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self._verdict(False, "the response is not a snapshot of the repository", t0)
        prefix = f"repo/{x['package']}/"
        ours = {k: v for k, v in files.items() if k.startswith(prefix) and k.endswith(".py") and ".." not in k.split("/")}
        repo = {k: v for k, v in x["repo"].items() if not (ours and k.startswith(prefix))} | ours
        first = x["hidden_tests"].split("assert ", 2)[1].split("(", 1)[0]
        prog, nonce = harness_program(_LOADER.format(modules=list(x["modules"])), test=x["hidden_tests"],
                                      entry_point=first, check=False)
        prog = Program({**repo, **prog.files}, prog.command, stdin=prog.stdin)
        try:
            result, passed, calls, reason = run_harness(prog, nonce, self.backend, self.limits)
        except SandboxUnavailable as exc:
            return Verdict(0.0, False, error=f"sandbox unavailable: {exc}", elapsed_s=time.perf_counter() - t0,
                           verifier=NAME, verifier_version=VERSION)
        changed = sorted(k for k, v in ours.items() if x["repo"].get(k) != v)
        return self._verdict(passed, reason, t0, calls=calls, changed=changed, backend=result.backend,
                             isolation=list(result.isolation))

    @staticmethod
    def _verdict(passed: bool, reason: str, t0: float, **details: Any) -> Verdict:
        return Verdict(1.0 if passed else 0.0, passed, details={"reason": reason, **details},
                       elapsed_s=time.perf_counter() - t0, verifier=NAME, verifier_version=VERSION)

    def verify_batch(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(self.verify, problems, responses))
