"""The evalgym command line, run as a real subprocess: --help everywhere, JSON output, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalgym.cli", *args], capture_output=True, text=True,
                          input=input, timeout=300)


@pytest.mark.parametrize("argv", [[], ["envs"], ["envs", "list"], ["envs", "info"], ["verify"], ["verify", "math"],
                                  ["demo"], ["eval"], ["watch"], ["leaderboard"]])
def test_help(argv):
    r = run(*argv, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: evalgym" in r.stdout


def test_envs_list_json(data_dir):
    r = run("--data-dir", str(data_dir), "envs", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert rows["evalgym/gsm8k-v0"]["size"] == 7473       # the default split: train
    assert rows["evalgym/gsm8k-v0"]["split"] == "train" and rows["evalgym/gsm8k-v0"]["eval_split"] == "test"
    assert rows["evalgym/math500-v0"] == {**rows["evalgym/math500-v0"], "domain": "math", "verifier": "math",
                                          "version": 0, "size": 500, "split": "test"}
    assert rows["evalgym/arithmetic-v1"]["size"] == "unlimited"
    assert rows["evalgym/arithmetic-v1"]["splits"] == ["train", "eval"]
    assert rows["evalgym/retry-arithmetic-v1"]["max_turns"] == 3


def test_envs_info_counts_the_space_and_splits():
    r = run("envs", "info", "arithmetic", "digits=2", "ops=+", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["id"] == "evalgym/arithmetic-v1" and info["space"] == 10_000 and info["exact"] is True
    assert info["knobs"] == {"digits": 2, "ops": "+"}
    assert info["split_sizes"]["train"] + info["split_sizes"]["eval"] == 10_000
    assert (info["train_split"], info["eval_split"]) == ("train", "eval")
    r = run("envs", "info", "countdown-gen", "count=4", "max_number=100", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["space"] is None           # too large to count: unknown
    r = run("envs", "info", "arithmetic")
    assert r.returncode == 0 and "space: 300 distinct problems" in r.stdout


@pytest.mark.parametrize("argv,named", [(["arithmetic", "split=test"], "'test'"), (["nope"], "'nope'"),
                                        (["arithmetic", "digitz=2"], "digitz")])
def test_envs_info_errors_name_the_culprit(argv, named):
    r = run("envs", "info", *argv)
    assert r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr


def test_envs_list_without_data_says_so(tmp_path):
    r = run("--data-dir", str(tmp_path), "envs", "list")
    assert r.returncode == 0, r.stderr
    gsm = next(line for line in r.stdout.splitlines() if line.startswith("evalgym/gsm8k-v0"))
    assert "n/a" in gsm and "gsm8k" in gsm


def test_verify_single_json():
    r = run("verify", "math", "--gold", "\\frac{1}{2}", "--pred", "The answer is $0.5$.", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["correct"] is True and out["reward"] == 1.0 and out["error"] is None
    assert out["extracted"] == "0.5" and out["elapsed_s"] < 1.0


def test_verify_batch_in_order(tmp_path):
    rows = [("1/2", "0.5", True), ("2", "\\pm 2", False), ("(1,2)", "(2, 1)", False), ("x^2-1", "(x-1)(x+1)", True)] * 25
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"gold": g, "pred": p}) + "\n" for g, p, _ in rows))
    r = run("verify", "math", "--input", str(path))
    assert r.returncode == 0, r.stderr
    outs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["correct"] for o in outs] == [want for _, _, want in rows]
    assert all({"reward", "correct", "error", "elapsed_s"} <= o.keys() for o in outs)


def test_verify_hostile_within_budget():
    r = run("verify", "math", "--gold", "5", "--pred", "\\boxed{9^{9^{9^{9^{9}}}}}", "--json")
    out = json.loads(r.stdout)
    assert out["correct"] is False and out["elapsed_s"] <= 1.2


@pytest.mark.parametrize("content,needle", [
    ('{"gold": "1", "pred": "1"}\nnot json\n', ":2: not JSON"),
    ('{"gold": 1, "pred": "1"}\n', ":1: field 'gold' must be a string"),
    ('[1, 2]\n', ":1: expected an object"),
])
def test_verify_bad_input_names_the_line(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    r = run("verify", "math", "--input", str(path))
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_verify_usage_errors():
    r = run("verify", "math", "--gold", "1")
    assert r.returncode == 2 and "--pred" in r.stderr and "Traceback" not in r.stderr
    r = run("verify", "math", "--input", "/nonexistent.jsonl")
    assert r.returncode == 2 and "/nonexistent.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_demo_json(data_dir):
    r = run("--data-dir", str(data_dir), "demo", "--num", "20", "--json",
            "--envs", "evalgym/arithmetic-v1,evalgym/math500-v0")
    assert r.returncode == 0, r.stderr
    by = {(s["env_id"], s["policy"]): s for s in json.loads(r.stdout)}
    for env in ("evalgym/arithmetic-v1", "evalgym/math500-v0"):
        assert by[(env, "reference")]["accuracy"] == 1.0
        assert by[(env, "hedger")]["accuracy"] == 0.0
        assert 0.4 <= by[(env, "noisy")]["accuracy"] <= 0.95  # p = 0.7 over mixed answer formats
        assert by[(env, "noisy")]["errors"] == 0


def test_demo_unknown_env_is_a_clear_error():
    r = run("demo", "--envs", "evalgym/nope-v0", "--num", "2")
    assert r.returncode == 2 and "unknown env 'evalgym/nope-v0'" in r.stderr and "Traceback" not in r.stderr


def test_sandbox_run_json(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("import os\nprint('hi', os.getuid() != 0)\nraise SystemExit(3)\n")
    r = run("sandbox", "run", str(prog), "--timeout", "10")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["exit_code"] == 3 and out["stdout"] == "hi True\n" and out["backend"] == "local"
    assert {"exit_code", "timed_out", "oom", "stdout", "stderr", "truncated", "duration_s", "isolation"} <= out.keys()
    r = run("sandbox", "run", str(tmp_path / "missing.py"))
    assert r.returncode == 2 and "missing.py" in r.stderr and "Traceback" not in r.stderr


def test_verify_code_rows_in_order(tmp_path):
    rows = [{"prompt": "def add(a, b):\n", "completion": "    return a + b\n", "entry_point": "add",
             "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"},
            {"prompt": "def add(a, b):\n", "completion": "    import sys; sys.exit(0)\n", "entry_point": "add",
             "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("verify", "code", "--input", str(path))
    assert r.returncode == 0, r.stderr
    outs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["passed"] for o in outs] == [True, False] and [o["reward"] for o in outs] == [1.0, 0.0]
    assert all({"reward", "passed", "error", "elapsed_s"} <= o.keys() for o in outs)
    path.write_text('{"prompt": "x"}\n')
    r = run("verify", "code", "--input", str(path))
    assert r.returncode == 2 and ":1: field 'completion' must be a string" in r.stderr
