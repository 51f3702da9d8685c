"""Sandbox sessions for real, on both backends (bubblewrap as root; the docker tests skip loudly without an
engine): the tools' behaviour, and the sandbox suite's hostile programs run as tool calls, each followed by a
check that the episode goes on and that the next episode's session is clean."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from evalgym.sandbox.base import SandboxUnavailable
from evalgym.sandbox.session import SessionLimits, SessionPool

REPO = Path(__file__).resolve().parents[2]
TOKEN = uuid.uuid4().hex[:12]
LIMITS = SessionLimits(timeout_s=3, memory_mb=256, processes=32, disk_mb=32, output_bytes=8192)
pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="sessions need root and bubblewrap (local) here")


def _docker_pool() -> SessionPool:
    for script in ("docker-up.sh", "build-sandbox-image.sh"):
        r = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=400)
        if r.returncode != 0:
            pytest.skip(f"DOCKER SANDBOX TESTS SKIPPED: scripts/{script}: {r.stderr.strip()[-300:]}")
    try:
        return SessionPool("docker", LIMITS, warm=1)
    except SandboxUnavailable as exc:
        pytest.skip(f"DOCKER SANDBOX TESTS SKIPPED: {exc}")


@pytest.fixture(scope="module", params=["local", "docker"])
def pool(request):
    p = SessionPool("local", LIMITS, warm=1) if request.param == "local" else _docker_pool()
    yield p
    p.close()


LIVE = "for p in /proc/[0-9]*/stat; do cut -d' ' -f3 $p; done 2>/dev/null | grep -vc Z"  # live processes


def clean_next(pool) -> None:
    """A new episode's session: empty but for its own files, no stray process, nothing in /tmp."""
    with pool.session(files={"f.txt": "fresh"}) as s:
        r = s.shell("ls -A /work /tmp /dev/shm; " + LIVE)
        lines = r.output.split()
        assert r.exit_code == 0 and "f.txt" in lines and not any(TOKEN in x for x in lines), r.output
        assert int(lines[-1]) <= 5, r.output  # agent, bash, its subshell, cut, grep


# -- the tools --------------------------------------------------------------------------------------

def test_stateful_python_shell_files_and_isolation(pool):
    with pool.session(files={"repo/a.py": "x = 1\n"}) as s:
        assert s.python("y = 41").ok and s.python("y + 1").output == "42\n"
        r = s.python("import a  # not on the path\n")
        assert r.status == "error" and "ModuleNotFoundError" in r.output
        assert s.python("import sys; sys.path.insert(0, 'repo'); import a; a.x").output == "1\n"
        r = s.shell("cd repo && python3 -c 'import a; print(a.x + 1)' && pwd && echo err >&2; exit 3")
        assert (r.exit_code, r.output) == (3, "2\n/work/repo\nerr\n"), r
        assert s.write_file("repo/b.py", "z = 2\n").ok and s.shell("cat repo/b.py").output == "z = 2\n"
        assert s.write_file("../../etc/evil", "x").error.startswith("bad path")
        assert s.files() == {"repo/a.py": b"x = 1\n", "repo/b.py": b"z = 2\n"}
        assert {"netns", "pidns"} <= set(r.isolation) and r.backend == pool.backend
        r = s.python("raise SystemExit(2)")
        assert r.status == "exit" and s.python("y").output == "41\n"  # the interpreter lives on


def test_hang_flood_and_memory_are_that_calls_errors(pool):
    with pool.session() as s:
        s.python("keep = 'state'")
        t0 = time.monotonic()
        r = s.python("while True: pass", timeout_s=1)
        assert r.error == "timeout" and r.status == "interrupted" and time.monotonic() - t0 < 3, r
        assert s.python("keep").output == "'state'\n"  # interrupted like Ctrl-C: the state survives
        r = s.python("import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\ntime.sleep(60)",
                     timeout_s=1)
        assert r.error == "timeout" and r.status is None and time.monotonic() - t0 < 8, r
        r = s.python("keep")  # it could not be interrupted: killed, and a fresh interpreter says so
        assert r.restarted and "NameError" in r.output, r
        r = s.shell("sleep 30", timeout_s=1)
        assert r.error == "timeout" and r.exit_code is None, r
        t0 = time.monotonic()
        r = s.shell("yes " + "x" * 100 + " | head -c 2000000000")
        assert r.error == "output_limit" and r.truncated and len(r.output) <= LIMITS.output_bytes, r.error
        assert time.monotonic() - t0 < 2
        r = s.python("while True: print('y' * 1000)")
        assert r.error == "output_limit" and r.status == "interrupted" and len(r.output) <= LIMITS.output_bytes
        assert s.python("1 + 1").output == "2\n"  # nothing of the flood leaks into the next call
        r = s.python("chunks = [bytearray(64 << 20) for _ in range(64)]")
        assert r.status == "error" and "MemoryError" in r.output, r
        r = s.shell("python3 -c 'b = bytearray(1 << 31)'")
        assert r.exit_code != 0 and "MemoryError" in r.output, r
        assert s.python("2 + 2").output == "4\n" and s.shell("echo ok").output == "ok\n"
    clean_next(pool)


def test_fork_bomb_daemons_and_killing_the_agent(pool):
    with pool.session() as s:
        r = s.shell(":(){ :|:& };:", timeout_s=2)
        assert r.error == "timeout" or r.exit_code is not None, r
        assert int(s.shell(LIVE).output) <= 6, "fork bomb left processes"
        r = s.python("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", timeout_s=2)
        assert r.error is not None
        assert s.python("7 * 6").output == "42\n"
        r = s.shell(f"(setsid sh -c 'while true; do echo {TOKEN} >> /work/daemon; sleep 0.05; done' &) ; echo started")
        assert r.output == "started\n"
        time.sleep(0.3)
        size = s.shell("wc -c < /work/daemon").output
        time.sleep(0.3)
        assert s.shell("wc -c < /work/daemon").output == size, "a daemon outlived its call"
        r = s.python("import subprocess; subprocess.Popen(['sleep', '100'], start_new_session=True); 'ok'")
        assert int(s.shell(LIVE).output) <= 6
        for attack in ("kill -9 1; kill -9 -1; echo survived", "kill -STOP 1; kill -TERM 1; kill -INT 1; echo survived"):
            r = s.shell(attack)
            assert "survived" in r.output or r.exit_code == -9, r  # kill -9 -1 also kills the shell itself
            assert s.shell("echo alive").output == "alive\n"
            r = s.python("7 * 6")  # kill -9 -1 took the interpreter (not pid 1): a fresh one, and it says so
            assert r.output == "42\n" and (r.restarted or "-1" not in attack), r
        r = s.python("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                     "print(libc.ptrace(16, 1, None, None), ctypes.get_errno())\n"
                     "try: open('/proc/1/mem', 'rb').read(1); print('LEAK mem')\nexcept OSError as e: print('denied')\n"
                     "try: os.write(os.open('/proc/1/fd/1', os.O_WRONLY), b'x'); print('LEAK fd')\n"
                     "except OSError as e: print('denied')")
        assert "LEAK" not in r.output and r.output.startswith("-1 "), r.output
        assert s.shell("echo still").output == "still\n"
    clean_next(pool)


def test_no_network_no_host_files_no_other_sessions(pool):
    with socket.create_server(("127.0.0.1", 0)) as srv, pool.session() as a, pool.session() as b:
        port = srv.getsockname()[1]
        r = a.python(f"import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
                     "    try: socket.create_connection(addr, timeout=1); print('LEAK', addr)\n"
                     "    except OSError as e: print('blocked')")
        assert r.output == "blocked\nblocked\n", r.output
        r = a.shell(f"cat /root/.bashrc {REPO}/pyproject.toml /etc/shadow 2>&1; touch /usr/x 2>&1; echo $?")
        assert "[project]" not in r.output and r.output.strip().endswith("1"), r.output
        assert a.shell(f"echo {TOKEN} > /tmp/m && echo {TOKEN} > /work/m && sleep 0.01").exit_code == 0
        r = b.shell(f"cat /tmp/m /work/m 2>&1; grep -rl {TOKEN} /proc/[0-9]*/cmdline 2>/dev/null; id -u")
        assert TOKEN not in r.output, r.output
        if pool.backend == "local":
            assert a.shell("id -u").output != b.shell("id -u").output  # a uid slot each
        assert not (Path("/tmp/m").exists() and TOKEN in Path("/tmp/m").read_text())


def test_a_lost_session_is_replaced_with_the_initial_files(pool):
    with pool.session(files={"seed.txt": "seed"}) as s:
        s.shell("echo edited > seed.txt")
        s.box.kill()  # the box dies under the episode (as an engine restart or an OOM kill of pid 1 would)
        r = s.shell("cat seed.txt")
        assert r.error == "session_lost" and r.restarted
        assert s.shell("cat seed.txt").output == "seed" and s.restarts == 1


def test_concurrent_sessions_do_not_interfere(pool):
    out: dict[int, str] = {}

    def episode(k: int) -> None:
        with pool.session(files={"k.txt": str(k)}) as s:
            s.python(f"k = {k}")
            out[k] = s.python("k * 10").output + s.shell("cat k.txt").output

    threads = [threading.Thread(target=episode, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == {k: f"{k * 10}\n{k}" for k in range(6)}
