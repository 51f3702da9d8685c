"""Reference solutions as tool-calling transcripts, and a policy that plays them through a real tokenizer.

    turns = reference_turns(problem)      # the assistant turns of a correct episode, in Hermes syntax
    policy = TranscriptPolicy(tokenizer, reference_turns, name="reference")
    groups, stats = run_episodes(policy, [(env, 0)])    # a real episode: real sessions, real grading

``reference_turns`` turns each agentic env's reference solution into what a good agent would do:
``python-math`` checks its answer in the interpreter, then submits it; ``code-tools`` runs the reference
function against the visible tests, then submits it; ``swe-lite`` runs the tests, writes the fixed files,
runs the tests again, then submits. These are the demonstrations the ``mopd-agentic`` recipe's SFT stage
learns the tool format from, the baseline the perf benchmarks run, and the runner's end-to-end tests.

``reference_chat(env, index)`` plays problem ``index``'s transcript in the env for real (its tool replies
come from the episode's sandbox session) and returns the conversation as chat messages (``tool`` messages
for the replies, up to the last assistant turn) once the verifier scores it 1: the SFT trainer's row for an
agentic env in ``envs`` (``reference_chats``: many, episodes in parallel).

``TranscriptPolicy`` implements the policy protocol: it finds each prompt's problem by its question and its
turn by the number of generation prompts in it, and answers with that turn's text as token ids (the
tokenizer's ids + end-of-turn), so episodes played with it are token-exact like a model's. It has no
log-probs (``logprobs=()``): it is a script, not a sampler.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams, render_chat
from evalgym.types import Completion, Problem


def call(name: str, **arguments: Any) -> str:
    """One Hermes tool call."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def _visible_tests(problem: Problem) -> str:
    x = problem.extra
    return x.get("test", "") if not x.get("check") else f"{x['test']}\ncheck({x['entry_point']})"


def reference_turns(problem: Problem) -> list[str]:
    """The assistant turns of a correct tool-using episode of ``problem`` (an agentic env's)."""
    name = problem.env_id.split("/")[-1].rsplit("-v", 1)[0]
    if name == "python-math":
        answer = problem.answer
        return [f"Let me check the answer in Python.\n{call('python', code=f'answer = {answer!r}{chr(10)}answer')}",
                f"The answer is {answer}.\n{call('submit', answer=answer)}"]
    if name == "code-tools":
        from evalgym.verifiers.code import extract_code

        code = extract_code(problem.reference)
        x = problem.extra
        prelude = x.get("prelude", "") if x.get("check") is False else ""
        test = f"{prelude}\n{code}\n{_visible_tests(problem)}\nprint('tests pass')".strip()
        return [f"Let me test my function.\n{call('python', code=test)}", f"It works.\n{call('submit', answer=code)}"]
    if name == "swe-lite":
        files = json.loads(problem.reference)["files"]
        changed = {p: c for p, c in files.items() if problem.extra["repo"].get(p) != c}
        writes = "\n".join(call("write_file", path=p, content=c) for p, c in sorted(changed.items()))
        run = "cd repo && python3 -m unittest -q 2>&1 | tail -15"
        return [f"First, the failing tests.\n{call('shell', command=run)}",
                f"I found the bug; fixing it.\n{writes}",
                f"Checking again.\n{call('shell', command=run)}",
                f"All tests pass.\n{call('submit', answer='fixed the bug')}"]
    if problem.extra.get("base_env") is None and problem.reference:  # a text env: its reference, in one turn
        return [problem.reference]
    raise EvalgymError(f"reference_turns: no transcript for env {problem.env_id}")


def reference_chat(env: Any, index: int) -> list[dict[str, str]]:
    """The chat of problem ``index``'s reference episode in ``env`` (an ``AgenticEnv``), its tool replies real;
    an error naming the problem if the episode does not end with a correct answer."""
    env.reset(options={"index": index})
    problem = env.problem
    where = f"{problem.env_id} problem {index} ({problem.id})"
    for text in reference_turns(problem):
        act = env.act(text)
        if act.truncated:
            env.truncate(act.reason or "turns")
            raise EvalgymError(f"reference transcript of {where}: the {act.reason} budget ended it")
        if act.final is not None:
            verdict = env.verifier.verify(problem, act.final)
            env.conclude(verdict)
            if not verdict.correct:
                raise EvalgymError(f"reference transcript of {where} scores {verdict.reward}: {verdict.details}")
            chat = [m.as_dict() for m in env.messages]
            while chat[-1]["role"] != "assistant":      # the reply to submit ("Submitted.") teaches nothing
                chat.pop()
            return chat
    env.truncate("turns")
    raise EvalgymError(f"reference transcript of {where} ended without an answer")


def reference_chats(make_env: Callable[[], Any], indices: Sequence[int], workers: int = 8) -> list[list[dict[str, str]]]:
    """``reference_chat`` of each index, ``workers`` episodes at a time (each thread its own env from
    ``make_env``: the time is the sandbox's, waited on, not CPU), in the order of ``indices``."""
    local = threading.local()
    made: list[Any] = []

    def one(index: int) -> list[dict[str, str]]:
        if not hasattr(local, "env"):
            local.env = make_env()
            made.append(local.env)
        return reference_chat(local.env, index)

    try:
        with ThreadPoolExecutor(max(1, min(workers, len(indices)))) as pool:
            return list(pool.map(one, indices))
    finally:
        for env in made:
            env.close()


class TranscriptPolicy:
    """Plays ``turns(problem)`` (one text per assistant turn) for the problems it is shown."""

    backend = "transcript"

    def __init__(self, tokenizer: Any, turns: Callable[[Problem], list[str]] = reference_turns,
                 name: str = "transcript", problems: Sequence[Problem] = ()):
        self.tokenizer, self.turns, self.name = tokenizer, turns, name
        self.problems: list[Problem] = list(problems)
        x = [{"role": "user", "content": "x"}]
        self._gen = render_chat(tokenizer, x)[len(render_chat(tokenizer, x, add_generation_prompt=False)):]
        self._eos = tokenizer.eos_token_id
        self._seen: list[str] = []

    def add(self, problems: Sequence[Problem]) -> None:
        self.problems.extend(problems)

    def _problem(self, text: str) -> Problem:
        if len(self._seen) != len(self.problems):  # each question as the tokenizer writes it back (<unk>...)
            self._seen = [self.tokenizer.decode(self.tokenizer(p.prompt_text, add_special_tokens=False)["input_ids"],
                                                skip_special_tokens=False) for p in self.problems]
        found = [p for p, q in zip(self.problems, self._seen) if q in text]
        if not found:
            raise EvalgymError("transcript policy: a prompt that matches none of its problems (add() them first)")
        return max(found, key=lambda p: len(p.prompt_text))

    def generate(self, prompts: Sequence[Any], sampling: SamplingParams, *, keys: Sequence[int] | None = None
                 ) -> list[list[Completion]]:
        from evalgym.policies.base import encode

        out = []
        for prompt in prompts:
            ids = encode(self.tokenizer, prompt)
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            problem = self._problem(text)
            turn = text.count(self._gen) - 1
            script = self.turns(problem)
            said = script[min(turn, len(script) - 1)]
            said_ids = list(self.tokenizer(said, add_special_tokens=False)["input_ids"])
            reason = "stop"
            if len(said_ids) >= sampling.max_tokens:
                said_ids, reason = said_ids[:sampling.max_tokens], "length"
            elif self._eos is not None:
                said_ids.append(int(self._eos))
            text_out = self.tokenizer.decode(said_ids, skip_special_tokens=True)
            out.append([Completion(text_out, tuple(said_ids), (), reason, tuple(ids))] * sampling.n)
        return out

    def close(self) -> None:
        pass
