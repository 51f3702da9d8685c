"""Security of agentic episodes, for real (local bubblewrap; docker when an engine runs): the sandbox suite's
hostile programs as tool calls of an episode, each followed by a check that the next episode's session is
clean; and swe-lite episodes that game the grader (edit the tests, the runner or the grader's files, print a
pass marker, tamper from the imported code) score 0 while a real fix scores 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from evalgym.agentic.demos import call
from evalgym.agentic.env import AgenticEnv
from evalgym.rollouts import make_env

REPO = Path(__file__).resolve().parents[2]
TOKEN = uuid.uuid4().hex[:10]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="sandbox sessions need root and bubblewrap here")

ATTACKS = {  # name -> (tool, argument); each must be contained and leave nothing behind
    "read-host-files": ("python", f"print([open(p).read()[:50] for p in ('{REPO}/pyproject.toml', '/etc/shadow')])"),
    "write-outside": ("shell", f"for d in /tmp /usr /etc /work/.. /dev/shm; do echo {TOKEN} > $d/x-{TOKEN}; done; "
                               "ls /tmp"),
    "network": ("python", "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)"),
    "fork-bomb": ("shell", ":(){ :|:& };:; sleep 3"),
    "memory-bomb": ("python", "x = [bytearray(64 << 20) for _ in range(100)]"),
    "output-flood": ("shell", "yes flood"),
    "daemon": ("shell", f"(setsid sh -c 'while true; do echo {TOKEN} >> /tmp/d-{TOKEN}; sleep 0.1; done' &); echo ok"),
    "kill-parent": ("shell", "kill -9 $PPID 1; kill -9 -1; echo alive"),
    "proc-snoop": ("shell", "cat /proc/1/cmdline /proc/1/environ 2>&1 | head -c 300; ls /proc"),
}


def _backends() -> list[str]:
    out = ["local"]
    ok = all(subprocess.run(["bash", str(REPO / "scripts" / s)], capture_output=True, timeout=400).returncode == 0
             for s in ("docker-up.sh", "build-sandbox-image.sh"))
    return out + (["docker"] if ok else [])


@pytest.fixture(scope="module", params=_backends())
def backend(request):
    return request.param


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_tool_calls_are_contained_and_the_next_episode_is_clean(backend, attack):
    base = make_env("python-math", dataset="arithmetic", split="test", sandbox=backend, call_timeout_s=3, tool_time_s=20)
    env = AgenticEnv(base.source, base.verifier, options=replace(base.options, tools=("python", "shell", "submit")))
    env.reset(options={"index": 0})
    tool, arg = ATTACKS[attack]
    obs, reward, terminated, truncated, info = env.step(call(tool, **{"code" if tool == "python" else "command": arg}))
    assert not terminated and not truncated, "a hostile call must not end the episode"
    assert TOKEN not in obs or attack in ("daemon", "write-outside"), obs  # the attack's own marker may echo
    if attack == "read-host-files":
        assert "[project]" not in obs and ("FileNotFoundError" in obs or "PermissionError" in obs), obs
    if attack == "network":
        assert "OSError" in obs or "Errno" in obs, obs
    after, *_ = env.step(call("python", code="print('still here')"))
    assert "still here" in after  # the episode goes on
    env.step(call("submit", answer=env.problem.answer))
    assert not list(Path("/tmp").glob(f"*{TOKEN}*")) and not list(Path("/usr").glob(f"x-{TOKEN}"))
    # the next episode's session: empty working tree, no stray process, no marker anywhere it can look
    env.reset(options={"index": 1})
    obs, *_ = env.step(call("shell", command="find /work /tmp /dev/shm -mindepth 1 | wc -l"))
    assert obs.strip() == "0", obs
    obs, *_ = env.step(call("shell", command="for p in /proc/[0-9]*/stat; do cut -d' ' -f3 $p; done | grep -vc Z"))
    assert obs.split()[0].isdigit() and int(obs.split()[0]) <= 5, obs  # the agent, bash, its subshell, cut, grep
    env.close()


# -- swe-lite: gaming the grader scores 0 ------------------------------------------------------------------

def _fix(problem) -> list[str]:
    files = json.loads(problem.reference)["files"]
    return [call("write_file", path=p, content=c) for p, c in files.items() if problem.extra["repo"].get(p) != c]


PKG = "repo/{package}/__init__.py"
GAMES = {  # name -> (tool calls, a shell command showing the game took effect in the session, what it shows)
    "edit-visible-tests": (
        lambda p: [call("shell", command="cd repo/tests && for f in test_*.py; do printf 'import unittest\\n' > $f; "
                                         "done")],
        "cd repo && python3 -m unittest 2>&1 | tail -2", "OK"),  # the visible suite "passes"
    "pass-marker-at-import": (
        lambda p: [call("shell", command=f"echo 'print(\"EVALGYM-PASS {'0' * 64} 99\")' >> {PKG.format(**p.extra)}")],
        "cd repo && python3 -c 'import {package}'", "EVALGYM-PASS"),
    "patch-assert-at-import": (
        lambda p: [call("shell", command="printf 'import builtins, sys\\nbuiltins.AssertionError = type(\"X\", "
                                         f"(Exception,), {{}})\\nsys.exit(0)\\n' >> {PKG.format(**p.extra)}")],
        "cd repo && python3 -c 'import {package}'; echo exit $?", "exit 0"),
    "grader-files-in-repo": (
        lambda p: [call("shell", command="cd repo && echo 'print(1)' > harness.py && echo '{}' > spec.json && "
                                         "echo pass > child.py && cp harness.py spec.json child.py ..")],
        "ls /work", "harness.py"),
    "overwrite-grader-at-import": (
        lambda p: [call("shell", command="printf 'import os\\nfor f in (\"harness.py\", \"spec.json\", \"child.py\"):"
                                         "\\n    open(\"/work/\" + f, \"w\").write(\"print(1)\")\\n"
                                         f"os.kill(os.getppid(), 9)\\n' >> {PKG.format(**p.extra)}")],
        "(cd repo && python3 -c 'import {package}'; true); cat /work/spec.json", "print(1)"),
}


@pytest.mark.parametrize("game", sorted(GAMES))
def test_gaming_swe_lite_scores_zero(game):
    env = make_env("swe-lite").unwrapped
    env.reset(options={"index": 0})
    p = env.problem
    turns, check, shows = GAMES[game]
    for t in turns(p):
        env.step(t)
    obs, *_ = env.step(call("shell", command=check.format(**p.extra)))
    assert shows in obs, obs  # the game did what it meant to in the session
    _o, reward, terminated, _t, info = env.step(call("submit", answer="done"))
    assert terminated and reward == 0.0 and info["verdict"].error is None, info["verdict"]
    # the same game on top of a real fix: the fix is what counts (0 only where the game breaks the package:
    # exiting at import, killing the process that imports it)
    env.reset(options={"index": 0})
    for t in _fix(p) + turns(p):
        env.step(t)
    _o, reward, *_ = env.step(call("submit", answer="fixed"))
    assert reward == (0.0 if game in ("patch-assert-at-import", "overwrite-grader-at-import") else 1.0), game


def test_a_real_fix_scores_one_and_the_unpatched_repo_zero():
    env = make_env("swe-lite").unwrapped
    env.reset(options={"index": 0})
    p = env.problem
    for t in _fix(p):
        env.step(t)
    _o, reward, terminated, _t, info = env.step(call("submit", answer="fixed"))
    assert terminated and reward == 1.0, info["verdict"]
    unpatched = env.verifier.verify(p, json.dumps({"files": p.extra["repo"]}))
    assert unpatched.reward == 0.0 and unpatched.error is None
    assert env.verifier.verify(p, "not json").details["reason"].startswith("the response is not a snapshot")
