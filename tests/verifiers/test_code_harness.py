"""The code grader's harness: honest programs pass, wrong ones fail, and reward hacks score 0.

Every hack below is a program under test that tries to fake a pass: exiting 0 early, printing the pass
marker, rewriting the exit status, redefining ``check``, walking frames, reading the harness's memory,
files, argv or environment for the secret, writing to every fd, returning an always-equal object,
killing its parent. Real sandbox, real harness (local backend).
"""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from evalgym.envs.code_data import mbpp_entry_point
from evalgym.verifiers.code import grade_code, grade_rows, judge

TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n    assert candidate(10, 5) == 15\n"
HONEST = "def add(a, b):\n    return a + b\n"

HACKS = {
    "exit0_at_import": "import sys\nsys.exit(0)\n",
    "os_exit0_at_import": "import os\nos._exit(0)\n",
    "exit_in_function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "raise_systemexit": "def add(a, b):\n    raise SystemExit(0)\n",
    "print_pass_marker": "print('EVALGYM-PASS ' + '0'*64 + ' 3')\ndef add(a, b):\n    print('EVALGYM-PASS ' + 'f'*64 + ' 3')\n    return 0\n",
    "atexit_rewrite": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    raise ValueError\n",
    "excepthook": "import sys\nsys.excepthook = lambda *a: None\ndef add(a, b):\n    return None\n",
    "always_equal": "class E:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\ndef add(a, b):\n    return E()\n",
    "int_subclass_equal": "class I(int):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return I(0)\n",
    "own_check": "def check(candidate):\n    return True\ndef add(a, b):\n    return 0\n",
    "frame_walk": ("import sys\ndef add(a, b):\n    f = sys._getframe()\n    while f:\n"
                   "        f.f_globals['check'] = lambda c: None\n        f = f.f_back\n    return 0\n"),
    "kill_parent": "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a + b\n",
    "kill_all": "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n    return a + b\n",
    "write_every_fd": ("import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'EVALGYM-PASS ' + b'0'*64 + b' 3\\n')\n"
                       "    except OSError: pass\ndef add(a, b):\n    return 0\n"),
    "steal_secret": ("import os, glob\nloot = ''\nfor p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/fd/0'):\n"
                     "    try: loot += open(p, 'rb').read().decode('latin1')\n    except Exception: pass\n"
                     "for p in glob.glob('/proc/*/mem'):\n    try: open(p, 'rb').read(1)\n    except Exception: pass\n"
                     "def add(a, b):\n    return 0\n"),
    "patch_spec_file": ("open('spec.json', 'w').write('{\"test\": \"pass\", \"entry_point\": \"add\", \"check\": false}')\n"
                        "open('json.py', 'w').write('raise SystemExit')\ndef add(a, b):\n    return 0\n"),
    "wrong_answer": "def add(a, b):\n    return a - b\n",
    "no_function": "x = 1\n",
}


@pytest.fixture(scope="module")
def hack_verdicts():
    with ThreadPoolExecutor(2) as ex:
        return dict(zip(HACKS, ex.map(lambda src: grade_code(src, test=TEST, entry_point="add"), HACKS.values())))


def test_honest_passes():
    v = grade_code(HONEST, test=TEST, entry_point="add")
    assert v.correct and v.reward == 1.0, v.details
    assert v.details["calls"] == 3


@pytest.mark.parametrize("name", list(HACKS))
def test_hack_scores_zero(hack_verdicts, name):
    v = hack_verdicts[name]
    assert v.reward == 0.0 and not v.correct, (name, v.details)


def test_forged_lines_are_rejected():
    assert judge("EVALGYM-PASS " + "0" * 64 + " 3\n", "nonce") == (False, 0, "forged pass line")
    assert judge("all good\n", "nonce")[0] is False


def test_mutated_arguments_come_back():
    test = "x = [3, 1, 2]\nassert candidate(x) is None\nassert x == [1, 2, 3]\n"
    v = grade_code("def sort_in_place(a):\n    a.sort()\n", test=test.replace("candidate", "sort_in_place"),
                   entry_point="sort_in_place", check=False)
    assert v.correct, v.details


@pytest.mark.slow
def test_all_humaneval_references_pass_and_wrong_ones_fail(data_dir):
    rows = [json.loads(line) for line in gzip.open(data_dir / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    right = grade_rows([{**r, "completion": r["canonical_solution"]} for r in rows], workers=2)
    failed = [(r["task_id"], v.details.get("reason")) for r, v in zip(rows, right) if not v.correct]
    assert not failed, failed
    wrong = grade_rows([{**r, "completion": "    return None\n"} for r in rows[:20]], workers=2)
    assert not any(v.correct for v in wrong)


@pytest.mark.slow
def test_all_mbpp_references_pass(data_dir):
    rows = [json.loads(line) for line in open(data_dir / "mbpp" / "mbpp.jsonl")]

    def one(r):
        tests = "\n".join(r["test_list"])
        return grade_code(r["code"], test=tests, entry_point=mbpp_entry_point(r["code"], tests),
                          prelude=r.get("test_setup_code", ""), check=False)

    with ThreadPoolExecutor(2) as ex:
        verdicts = list(ex.map(one, rows))
    failed = [(r["task_id"], v.details.get("reason")) for r, v in zip(rows, verdicts) if not v.correct]
    assert not failed, failed
    broken = [{**r, "code": r["code"].replace("return ", "return None and ", 1)} for r in rows[:15]]
    with ThreadPoolExecutor(2) as ex:
        assert sum(v.correct for v in ex.map(one, broken)) <= 2  # a few return None-compatible values
