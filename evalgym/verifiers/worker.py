"""The process behind a verifier pool: ``python -m evalgym.verifiers.worker FD`` (started by ``pool.py``).

It imports the grading modules once, then forks one worker per request from its parent, so a worker
(or the replacement of one killed for overrunning its budget) starts in milliseconds with everything
imported. Started with ``-m`` and never through ``multiprocessing``: nothing here imports the caller's
``__main__``, so grading works from a script without a main guard, ``python -``, a REPL or a notebook.

Control channel (FD, a ``SOCK_SEQPACKET`` socket, one message per command):
  parent -> here  ``C`` + JSON {"sys_path", "preload"}    once; answered ``R`` when the modules are imported
  parent -> here  ``F`` with a socket passed (SCM_RIGHTS)  fork a worker serving that socket; answered with
                                                           its pid (4 bytes)
  parent -> here  ``K`` + pid                              SIGKILL that worker (only a child of ours: a pid
                                                           is reaped here, so it cannot have been reused)
  EOF                                                      the parent is gone: kill every worker, exit
A worker speaks ``multiprocessing.connection`` on its socket: ``"ready"``, then ``(fn, args, by_value)``
-> ``((status, value), seconds)`` until EOF or ``None``.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

PID = struct.Struct("!i")


def _die_with_parent() -> None:
    try:  # Linux: SIGKILL when this process's parent goes away, even mid-computation
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(conn: Connection) -> None:
    """A worker: run ``fn(*args)`` for each request until the parent hangs up."""
    conn.send("ready")  # budgets start after start-up
    functions: dict[bytes, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args, by_value = msg
        t0 = time.perf_counter()
        try:
            if by_value:  # defined in the caller's __main__ (a script, a notebook): sent by value
                if fn not in functions:
                    import cloudpickle

                    functions[fn] = cloudpickle.loads(fn)
                fn = functions[fn]
            result: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - the grader's failure is data, not a crash
            result = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send((result, time.perf_counter() - t0))
        except Exception as exc:  # unpicklable result
            conn.send((("error", f"unpicklable result: {exc}"[:500]), time.perf_counter() - t0))


def _child(ctrl: socket.socket, fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent()  # the parent is this zygote: single-threaded, so this holds for its whole life
    ctrl.close()
    serve(Connection(fd))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business; EOF ends us
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    msg = ctrl.recv(1 << 20)
    if msg[:1] != b"C":
        sys.exit("evalgym.verifiers.worker: expected a configuration message")
    config = json.loads(msg[1:])
    sys.path[:] = config["sys_path"]
    for name in config["preload"]:
        importlib.import_module(name)
    children: set[int] = set()

    def reap(*_: Any) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    ctrl.sendall(b"R")
    try:
        while True:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 64, 1)
            if not msg:
                return
            if msg[:1] == b"F" and fds:
                # SIGCHLD held until the pid is recorded: a pid reaped before that would stay in
                # ``children`` and could be reused by an unrelated process before a later kill
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
                pid = os.fork()
                if pid == 0:
                    try:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                        _child(ctrl, fds[0])
                    finally:
                        os._exit(0)
                children.add(pid)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                os.close(fds[0])
                ctrl.sendall(PID.pack(pid))
            elif msg[:1] == b"K":
                (pid,) = PID.unpack(msg[1:5])
                if pid in children:
                    os.kill(pid, signal.SIGKILL)
            else:
                for fd in fds:
                    os.close(fd)
    finally:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
