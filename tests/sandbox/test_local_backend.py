"""Hostile-code suite for the local sandbox: attacks run as ``python3 main.py`` in one module-wide LocalSandbox.

Each test checks the attack was contained and the host unchanged; an autouse fixture then checks that no process
of the sandbox uids is alive and a ``print(1)`` run still works. Covers network, host files (read, write,
site-packages, stdlib), env secrets, /proc snooping, ptrace, fork/thread/memory/disk/output bombs, CPU loops,
sleeps and SIGTERM-ignoring past the timeout, daemons, kill(getppid()) and kill(-1), Program.files path escapes,
setuid/su/sudo, sethostname, uid slots shared between instances, host RAM pinned past the limits, strict mode,
stdin and exit codes. Weaknesses found are strict xfails (the reason says what and the fix). Root + bubblewrap
only; uid_base 61000, not 60000, so sandboxes of other processes on this host never share our uids.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from evalgym.sandbox import local
from evalgym.sandbox.base import Limits, Program

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the local sandbox's uid switching and namespaces need root and bubblewrap")]

UID_BASE = 61000
SCAN = range(UID_BASE, UID_BASE + local.SLOTS + 1)  # the module sandbox's slots + the slot-sharing test's
TOKEN = uuid.uuid4().hex[:12]
REPO = str(Path(__file__).resolve().parents[2])
PRINT1 = Program({"main.py": "print(1)"}, ["python3", "main.py"])
PRELUDE = ("import os, sys, time\ndef attempt(name, fn):\n    try: out = fn()\n    except BaseException as e:"
           " return print('OK', name, type(e).__name__, flush=True)\n    print('LEAK', name, repr(out)[:200])\n")


def live_sandbox_pids() -> list[int]:
    """Host pids of live (not zombie) processes of the sandbox uids."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid in SCAN and Path(f"/proc/{entry}/stat").read_bytes().rsplit(
                    b")", 1)[1].split()[0] not in (b"Z", b"X"):
                pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


def wait_no_sandbox_pids(grace: float = 1.0) -> list[int]:
    deadline = time.monotonic() + grace
    while (pids := live_sandbox_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


@pytest.fixture(scope="module")
def box():
    sandbox = local.LocalSandbox(uid_base=UID_BASE)
    return sandbox if sandbox.namespaces else pytest.skip("bubblewrap cannot create user namespaces here")


@pytest.fixture(autouse=True)
def host_unharmed_and_sandbox_serving(box):
    yield
    assert wait_no_sandbox_pids() == [], "a sandboxed process outlived its run"
    r = box.run(PRINT1, Limits(timeout_s=5))
    assert (r.exit_code, r.stdout, r.timed_out) == (0, "1\n", False), r


def run(box, code: str, limits: Limits = Limits(timeout_s=3), stdin=None, **consts):
    """Run ``code`` (after PRELUDE and ``consts`` as globals); it prints DONE if it reaches its end."""
    src = PRELUDE + "".join(f"{k} = {v!r}\n" for k, v in consts.items()) + textwrap.dedent(code) + "\nprint('DONE')\n"
    return box.run(Program({"main.py": src}, ["python3", "main.py"], stdin=stdin), limits)


def contained(r, blocked: int | None = None):
    """The program ran to its end (printed DONE) and made ``blocked`` attempts, all of which failed."""
    assert r.exit_code == 0 and r.stdout.rstrip().endswith("DONE") and not r.timed_out, r
    assert "LEAK" not in r.stdout and blocked in (None, r.stdout.count("OK ")), r.stdout
    return r


def num(r, key: str) -> int:
    return int(r.stdout.split(key + " ")[1].split()[0])


def test_network_is_unreachable(box):
    with socket.create_server(("127.0.0.1", 0)) as srv:  # a real listener on the host's loopback
        srv.setblocking(False)
        contained(run(box, """
            import socket
            attempt("tcp-external", lambda: socket.create_connection(("1.1.1.1", 53), timeout=1))
            attempt("tcp-host-loopback", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=1))
            attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
            attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("1.1.1.1", 53)))
            """, PORT=srv.getsockname()[1]), 4)
        with pytest.raises(BlockingIOError):
            srv.accept()


def test_host_files_are_not_readable(box, tmp_path):
    (tmp_path / "secret.txt").write_text(TOKEN)
    r = run(box, """
        attempt("shadow", lambda: open("/etc/shadow").read())
        attempt("root", lambda: os.listdir("/root"))
        attempt("repo", lambda: os.listdir(REPO))
        attempt("secret", lambda: open(SECRET).read())
        attempt("sys", lambda: os.listdir("/sys/class/net"))""", REPO=REPO, SECRET=str(tmp_path / "secret.txt"))
    contained(r, 5)
    assert TOKEN not in r.stdout + r.stderr


def test_host_writes_do_not_reach_the_host(box):
    targets = [f"{d}/evalgym-attack-{TOKEN}" for d in ("/tmp", "/var/tmp", REPO, "/etc", "/root", "/dev/shm")]
    stdlib_os = Path(os.path.realpath(os.__file__))  # the host's /usr/lib/python3.X/os.py
    before = stdlib_os.read_bytes()
    r = run(box, """
        import site, sysconfig
        for t in TARGETS:  # these land in the sandbox's own tmpfs, or fail
            try: os.makedirs(os.path.dirname(t), exist_ok=True); open(t, "w").write("pwned")
            except OSError as e: print("REFUSED", t, e)
        dirs = sorted(set(site.getsitepackages() + [sysconfig.get_paths()[k] for k in ("purelib", "stdlib")]))
        for d in dirs:
            attempt("write " + d, lambda: open(f"{d}/evalgym_attack_{TOKEN}.pth", "w").write("import os"))
        attempt("patch os.py", lambda: open(os.__file__, "a").write("#pwned"))
        print("N", len(dirs) + 1)""", TARGETS=targets, TOKEN=TOKEN)
    contained(r, num(r, "N"))
    assert [t for t in targets if os.path.lexists(t)] == []
    assert glob.glob(f"/usr/*lib/python3*/*-packages/evalgym_attack_{TOKEN}.pth") == []
    assert glob.glob(f"/usr/local/lib/python3*/*-packages/evalgym_attack_{TOKEN}.pth") == []
    assert stdlib_os.read_bytes() == before


def test_environment_secrets_do_not_leak(box, monkeypatch):
    monkeypatch.setenv("EVALGYM_TEST_SECRET", f"s3cret-{TOKEN}")
    r = run(box, """
        import glob; print(dict(os.environ))
        for p in ["/proc/1/environ", "/proc/self/environ"] + glob.glob("/proc/[0-9]*/environ"):
            try: print(p, open(p, "rb").read())
            except OSError as e: print(p, e)""")
    assert "/proc/1/environ" in contained(r).stdout and TOKEN not in r.stdout and "EVALGYM_TEST_SECRET" not in r.stdout


def test_host_processes_are_invisible_and_untouchable(box):
    r = run(box, """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        def ptrace_attach():
            if libc.ptrace(16, HOSTPID, None, None) != 0:  # PTRACE_ATTACH
                raise OSError(ctypes.get_errno(), "ptrace")
        print("PIDS", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        attempt("cmdline", lambda: open(f"/proc/{HOSTPID}/cmdline").read())
        attempt("signal-0", lambda: os.kill(HOSTPID, 0))
        attempt("ptrace", ptrace_attach)
        attempt("mem", lambda: open(f"/proc/{HOSTPID}/mem", "rb").read(16))
        attempt("pidfd", lambda: os.pidfd_open(HOSTPID))""", HOSTPID=os.getpid())
    contained(r, 5)
    pids = eval(r.stdout.split("PIDS ")[1].splitlines()[0])  # the list literal it printed
    assert os.getpid() not in pids and len(pids) < 10, pids
    assert "TracerPid:\t0\n" in Path("/proc/self/status").read_text()  # nobody attached to us


def test_fork_bomb_is_bounded(box):
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=lambda: [peak.append(len(live_sandbox_pids())) for _ in iter(
        lambda: stop.wait(0.05), True)])
    sampler.start()
    r = run(box, "while True:\n    try: os.fork()\n    except OSError: pass", Limits(timeout_s=2, processes=32))
    stop.set()
    sampler.join()
    assert r.timed_out and r.exit_code is None and r.duration_s < 5, r
    # Limits.processes, plus the sandbox's own allowance (bwrap's helpers), plus the one reaper process that
    # _kill_uid forks as that uid at the timeout to kill(-1) (seen in CI: 41 = 32 + 8 + 1)
    assert 0 < max(peak) <= 32 + 8 + 1, peak


def test_thread_bomb_is_bounded(box):
    r = run(box, """
        import threading; n = 0
        try:
            while n := n + 1: threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        except RuntimeError: print("THREADS", n)""", Limits(timeout_s=3, processes=32))
    assert num(contained(r), "THREADS") < 40


def test_memory_bomb_is_stopped(box):
    r = run(box, "chunks = [bytearray(64 << 20) for _ in range(64)]  # 4 GB", Limits(timeout_s=3, memory_mb=256))
    assert r.oom and r.exit_code != 0 and "DONE" not in r.stdout and not r.timed_out, r


@pytest.mark.parametrize("code", ["while True: pass", "time.sleep(60)", "import signal\nfor s in (1, 2, 15): "
                                  "signal.signal(s, signal.SIG_IGN)\ntime.sleep(60)"],
                         ids=["cpu-loop", "sleep", "sigterm-ignored"])
def test_runaway_program_is_killed_at_timeout(box, code):
    r = run(box, code, Limits(timeout_s=2))
    assert r.timed_out and r.exit_code is None and 1.9 <= r.duration_s < 4, r


def test_output_flood_is_stopped_at_the_cap(box):
    cap = 64 * 1024
    r = run(box, """
        for _ in range(2048): os.write(1, b"x" * (1 << 20)); os.write(2, b"x" * (1 << 20))  # 4 GB""",
            Limits(timeout_s=20, output_bytes=cap))
    assert r.truncated and r.killed == "output_limit" and not r.timed_out and r.exit_code is None, r.killed
    assert r.duration_s < 2 and len(r.stdout) == cap and len(r.stderr) <= cap, (r.duration_s, len(r.stdout))


def test_output_within_the_cap_is_whole(box):
    r = run(box, "sys.stdout.write('x' * 60000); sys.stderr.write('e' * 1000)", Limits(output_bytes=64 * 1024))
    assert (r.exit_code, r.killed, r.truncated, len(r.stdout), r.stderr) == (0, None, False, 60005, "e" * 1000), r


def test_isolation_is_refused_weaker_than_promised_unless_asked(monkeypatch):
    monkeypatch.setattr(local, "bwrap_path", lambda: None)  # as on a host without bubblewrap
    with pytest.raises(local.SandboxUnavailable, match="isolation: weak"):
        local.LocalSandbox(uid_base=UID_BASE)
    weak = local.LocalSandbox(uid_base=UID_BASE, isolation="weak")
    r = weak.run(PRINT1, Limits(timeout_s=5))
    assert r.stdout == "1\n" and "netns" not in r.isolation and "rlimits" in r.isolation, r
    weak.close()


def test_double_forked_daemon_dies_with_the_run_and_cannot_reach_host_tmp(box):
    name = f"evalgym-marker-{TOKEN}"
    r = run(box, """
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:  # the daemon: keeps our stdout, writes a marker wherever it can every 0.1 s, for 60 s
                for i in range(600):
                    for d in ("/tmp", "/var/tmp", "/dev/shm", "/work", "/proc/1/root/tmp", "/proc/1/cwd", REPO):
                        try: os.makedirs(d, exist_ok=True); open(f"{d}/{NAME}-{i}", "w").write("x")
                        except OSError: pass
                    time.sleep(0.1)
            os._exit(0)
        time.sleep(0.5)
        print("INSIDE", len([f for f in os.listdir("/tmp") if f.startswith(NAME)]))""", NAME=name, REPO=REPO)
    assert num(contained(r), "INSIDE") > 0 and r.duration_s < 2.5, r  # it ran (inside) and did not hold the run
    assert wait_no_sandbox_pids(1.0) == []
    time.sleep(0.3)
    assert [p for d in ("/tmp", "/var/tmp", "/dev/shm", "/work", REPO) for p in glob.glob(f"{d}/{name}*")] == []


def test_killing_parent_and_everything(box):
    r = run(box, """
        attempt("kill-host-test-process", lambda: os.kill(HOSTPID, 9))
        os.kill(os.getppid(), 9); time.sleep(0.2); print("SURVIVED", flush=True)
        os.kill(-1, 9); time.sleep(0.3)""", HOSTPID=os.getpid())
    assert "OK kill-host-test-process" in r.stdout and "SURVIVED" in r.stdout and not r.timed_out, r  # we live


def test_disk_fill_is_bounded(box):
    free_before = shutil.disk_usage("/").free
    r = run(box, """
        mb = 0
        try:
            with open("big", "wb") as f:
                while mb < 1000: f.write(b"\\0" * (1 << 20)); f.flush(); mb += 1
        except OSError as e: print("ERRNO", e.errno)
        print("MB", mb)""", Limits(timeout_s=10, disk_mb=32))
    assert num(contained(r), "ERRNO") in (errno.ENOSPC, errno.EFBIG) and num(r, "MB") <= 32, r.stdout
    assert shutil.disk_usage("/").free > free_before - (500 << 20)  # slack for other activity on the host


@pytest.mark.parametrize("key", [f"../../etc/evalgym-evil-{TOKEN}", f"/etc/evalgym-evil-{TOKEN}",
                                 f"a/../../evalgym-evil-{TOKEN}", "..", "."])
def test_program_files_cannot_escape_the_work_dir(box, key):
    with pytest.raises(ValueError):
        box.run(Program({key: "pwned", "main.py": "print(1)"}, ["python3", "main.py"]), Limits(timeout_s=3))
    assert glob.glob(f"/etc/evalgym-evil-{TOKEN}") + glob.glob(f"/tmp/evalgym-evil-{TOKEN}") == []


def test_privilege_escalation_and_hostname_change_fail(box):
    hostname = socket.gethostname()
    r = run(box, """
        import socket, subprocess
        def as_root(argv):
            p = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=2)
            if p.returncode != 0 or p.stdout.strip() != b"0":
                raise PermissionError(p.returncode, p.stderr[:100])
        attempt("setuid", lambda: os.setuid(0))
        attempt("setgid", lambda: os.setgid(0))
        attempt("su", lambda: as_root(["su", "-c", "id -u", "root"]))
        attempt("sudo", lambda: as_root(["sudo", "-n", "id", "-u"]))
        attempt("sethostname", lambda: socket.sethostname(NAME))
        print("UID", os.getuid(), os.geteuid())""", NAME=f"pwned-{TOKEN}")
    contained(r, 5)
    assert num(r, "UID") != 0 and socket.gethostname() == hostname


def test_uid_slots_are_not_shared_between_instances():
    # two instances on one uid (as processes on the default pool are); a run's cleanup kills its uid's processes
    a, b = (local.LocalSandbox(uid_base=UID_BASE + local.SLOTS, slots=1) for _ in range(2))
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(run(a, "time.sleep(1); print('ok')", Limits(timeout_s=5))))
    t.start()
    time.sleep(0.4)
    fast = b.run(PRINT1, Limits(timeout_s=5))  # waits for the slot
    t.join()
    assert (fast.exit_code, fast.stdout, slow[0].exit_code, slow[0].stdout) == (0, "1\n", 0, "ok\nDONE\n"), (fast, slow)


def test_strict_mode_constructs_here():
    assert local.LocalSandbox(strict=True, uid_base=UID_BASE).namespaces


def test_stdin_exit_code_backend_and_isolation(box):
    r = run(box, "print(sys.stdin.read().upper()); sys.exit(3)", stdin="hello")
    assert (r.exit_code, r.stdout, r.timed_out, r.backend) == (3, "HELLO\n", False, "local"), r
    assert {"netns", "mountns", "pidns", "uid", "rlimits", "seccomp"} <= set(r.isolation), r.isolation


def test_killed_by_signal_is_negative(box):
    r = run(box, "import signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert r.exit_code == -9, r


PIN_ATTACKS = [  # each tries to hold 384 MB of host RAM with Limits(memory_mb=256, disk_mb=32), printing "MB n"
    pytest.param("""
        mb = 0
        for d in ("/", "/dev", "/dev/shm", "/etc", "/var"):
            for i in range(48 - mb // 8):
                try: os.makedirs(d, exist_ok=True); open(f"{d}/fill{i}", "wb").write(b"\\0" * (8 << 20)); mb += 8
                except OSError: break
        print("MB", mb)""", id="tmpfs-outside-work"),  # / is remounted read-only; /dev/shm is size-capped
    pytest.param("""
        fds, mb = [], 0
        try:
            while mb < 384:
                fds.append(os.memfd_create("x"))
                for _ in range(16): os.write(fds[-1], b"\\0" * (1 << 20)); mb += 1
        except OSError: pass
        print("MB", mb)""", id="memfd"),  # seccomp: memfd_create fails with EPERM
    pytest.param("""
        import subprocess
        sh = ("mkdir -p /work/m && mount -t tmpfs none /work/m && for i in $(seq 48); do "
              "head -c 8388608 /dev/zero > /work/m/f$i || exit 1; done")
        p = subprocess.run(["unshare", "-Urm", "sh", "-c", sh], capture_output=True, timeout=8)
        print("MB", 384 if p.returncode == 0 else 0, p.returncode, p.stderr[:200])""",
        id="nested-userns-tmpfs"),  # --disable-userns: no nested user namespace, so no private mounts
]


@pytest.mark.parametrize("code", PIN_ATTACKS)
def test_host_ram_cannot_be_pinned_past_the_limits(box, code):
    r = run(box, code, Limits(timeout_s=10, memory_mb=256, disk_mb=32))
    assert not r.stdout.rstrip().endswith("DONE") or num(r, "MB") <= 256 + 32, r  # killed, or could not
