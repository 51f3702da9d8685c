"""A small long-lived process that starts the local sandbox's runs.

Why: starting a run means setsid + rlimits + dropping to the run's uid, then exec'ing bubblewrap. Done
from the caller with ``Popen(user=..., preexec_fn=...)`` that costs a full ``fork()`` of the caller
(~13 ms once torch is loaded); done with ``setpriv``/``prlimit`` it costs two extra execs (~3.5 ms).
The launcher is a bare ``python3 -S`` (a few MB) that forks per run instead: well under a millisecond.

Protocol over a private socketpair: the caller sends one JSON request (argv, uid, rlimits, cwd) with
the run's stdin/stdout/stderr pipe ends and file descriptors attached (SCM_RIGHTS); the launcher
answers ``{"id", "pid"}``, and ``{"id", "exit"}`` when the run ends. If the launcher dies, pending runs
end as killed and the sandbox falls back to the setpriv/prlimit chain.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import IO

_SRC = r'''
import json, os, resource, socket, sys, threading
sock = socket.socket(fileno=int(sys.argv[1]))
os.set_inheritable(sock.fileno(), False)
lock = threading.Lock()
def send(obj):
    data = (json.dumps(obj) + "\n").encode()
    with lock:
        sock.sendall(data)
def reap(rid, pid):
    _, status = os.waitpid(pid, 0)
    send({"id": rid, "exit": os.waitstatus_to_exitcode(status)})
while True:
    try:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1024)
    except OSError:
        os._exit(0)
    if not msg:
        os._exit(0)
    req = json.loads(msg)
    for fd in fds:
        os.set_inheritable(fd, False)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            for name, value in req["rlimits"]:
                resource.setrlimit(getattr(resource, name), (value, value))
            for target, fd in zip((0, 1, 2), fds[:3]):
                os.dup2(fd, target)
            mapping = {}
            for i, fd in enumerate(fds[3:]):
                os.set_inheritable(fd, True)
                mapping["{FD%d}" % i] = str(fd)
            argv = [mapping.get(a, a) for a in req["argv"]]
            os.chdir(req["cwd"])
            if req["uid"] is not None:
                os.setgroups([])
                os.setgid(req["uid"])
                os.setuid(req["uid"])
            os.execve(argv[0], argv, {})
        except BaseException as e:
            try:
                os.write(2, ("evalgym launcher: %s\n" % e).encode())
            except OSError:
                pass
            os._exit(127)
    for fd in fds:
        os.close(fd)
    send({"id": req["id"], "pid": pid})
    threading.Thread(target=reap, args=(req["id"], pid), daemon=True).start()
'''


@dataclass
class Launched:
    """A run started by the launcher: the parts of ``Popen`` the sandbox uses."""

    stdin: IO[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]
    pid: int | None = None
    returncode: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> int | None:
        self.done.wait()
        return self.returncode


class Launcher:
    def __init__(self, python: str = "/usr/bin/python3"):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one request per packet
        self.proc = subprocess.Popen([python, "-S", "-c", _SRC, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.sock = ours
        self.pid = os.getpid()
        self.alive = True
        self._lock = threading.Lock()
        self._runs: dict[int, Launched] = {}
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.sock.makefile("r"):
            msg = json.loads(line)
            run = self._runs.get(msg["id"])
            if run is None:
                continue
            if "pid" in msg:
                run.pid = msg["pid"]
                run.started.set()
            else:
                run.returncode = msg["exit"]
                run.done.set()
                self._runs.pop(msg["id"], None)
        self.alive = False  # the launcher is gone: nothing pending will ever be answered
        for run in list(self._runs.values()):
            run.returncode = -9 if run.returncode is None else run.returncode
            run.started.set()
            run.done.set()

    def spawn(self, argv: list[str], *, uid: int | None, rlimits: list[tuple[str, int]], cwd: str,
              pass_fds: list[int]) -> Launched:
        """Start ``argv``; numbers in it that are ``pass_fds`` are rewritten to the child's copies."""
        placeholders = {str(fd): "{FD%d}" % i for i, fd in enumerate(pass_fds)}
        argv = [placeholders.get(a, a) if prev in ("--file", "--seccomp") else a for prev, a in zip([""] + argv, argv)]
        r0, w0 = os.pipe()
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        run = Launched(stdin=os.fdopen(w0, "wb"), stdout=os.fdopen(r1, "rb"), stderr=os.fdopen(r2, "rb"))
        try:
            with self._lock:
                rid = self._next
                self._next += 1
                self._runs[rid] = run
                request = json.dumps({"id": rid, "argv": argv, "uid": uid, "rlimits": rlimits, "cwd": cwd})
                socket.send_fds(self.sock, [request.encode()], [r0, w1, w2, *pass_fds])
        finally:
            for fd in (r0, w1, w2):
                os.close(fd)
        if not run.started.wait(30) or run.pid is None:
            raise OSError("the sandbox launcher did not start the run")
        return run

    def close(self) -> None:
        try:  # shutdown, not just close: the reader thread's makefile() keeps the fd open past close()
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        finally:
            self.proc.wait(timeout=5)
