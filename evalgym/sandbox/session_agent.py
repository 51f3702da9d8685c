"""The agent inside a sandbox session: pid 1 of the session's namespace, serving tool calls from the host.

Not imported by evalgym: the host starts ``python3 -S -c BOOTSTRAP WORK SCOPE`` in the box and sends this
file's text as the first frame on its stdin (standard library only; the same file for bubblewrap and
docker). Protocol on its stdin/stdout: frames of a 4-byte big-endian length and a JSON object; one reply
per request.

    {"op": "init", "files": {rel: base64}, "limits": {...}, "env": {...}}     -> {"ok": true, "pid": 1}
    {"op": "python", "code": str, "timeout": s}     -> {"output", "truncated", "status", "error", "restarted", ...}
    {"op": "shell", "command": str, "timeout": s}   -> {"output", "truncated", "exit_code", "error", ...}
    {"op": "write_file", "path": rel, "data": base64}   -> {"ok": true} | {"error": ...}
    {"op": "files", "max_bytes": n}                 -> {"files": {rel: base64}, "skipped": [...]}

Why pid 1: the kernel delivers to a namespace's init only the signals it has handlers for, so a tool call
cannot kill the agent (``kill -9 -1``, ``kill 1``); the agent is also made non-dumpable (no ptrace, no
/proc/1/mem or fd access for the same uid). Every call runs in a child with rlimits (address space, file
size, processes where the uid is the session's own, core dumps off), stdout and stderr merged into one
capped stream; a call over its time or output is stopped (a shell call: killed; python: interrupted like
Ctrl-C, then killed if it does not stop, which restarts the interpreter) and after every call every process
but the agent and the interpreter is killed, so nothing outlives its call. The interpreter (one per session,
started at its first call) is stopped (SIGSTOP) between calls, so its threads cannot run on.
"""

import base64
import json
import os
import select
import signal
import struct
import sys
import time

# what the box runs: read this file's text from stdin, then run it (its argv stays short and plain)
BOOTSTRAP = ("import os,struct\ndef r(n):\n b=b''\n while len(b)<n:\n  c=os.read(0,n-len(b))\n  if not c: raise SystemExit\n"
             "  b+=c\n return b\nsrc=r(struct.unpack('>I',r(4))[0])\n__name__='__main__'\n"
             "exec(compile(src,'session_agent.py','exec'))")
PY = sys.executable or "/usr/bin/python3"
# argv: [WORK [SCOPE]]. SCOPE says which processes a call's clean-up kills: "namespace" (the agent is pid 1 of
# its own pid namespace: everything else), "uid" (the session's own uid, without namespaces), "group" (only
# each call's process group: a weak local session running as the caller's own uid)
WORK = sys.argv[1] if len(sys.argv) > 1 else "/work"
SCOPE = sys.argv[2] if len(sys.argv) > 2 else "namespace"

REPL = r'''
import ast, json, os, signal, struct, sys, traceback
INT = {signal.SIGINT}
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_BLOCK, INT)  # Ctrl-C (the agent's stop) only while user code runs
ns = {"__name__": "__main__", "__builtins__": __builtins__}
def rd(n):
    b = b""
    while len(b) < n:
        c = os.read(3, n - len(b))
        if not c:
            os._exit(0)
        b += c
    return b
def run(code):
    try:
        tree = ast.parse(code, "<python>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<python>", "exec"), ns)
        if last is not None:
            value = eval(compile(last, "<python>", "eval"), ns)
            if value is not None:
                print(repr(value))
        return "ok"
    except SystemExit as e:
        print("SystemExit: %s" % (e.code,), file=sys.stderr)
        return "exit"
    except BaseException as e:
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))
        return "interrupted" if isinstance(e, KeyboardInterrupt) else "error"
while True:
    req = json.loads(rd(struct.unpack(">I", rd(4))[0]))
    while signal.sigtimedwait(INT, 0):  # a stop meant for an earlier call
        pass
    while True:  # children of earlier calls, killed by the agent: their zombies are ours to reap
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INT)
        status = run(req["code"])
        signal.pthread_sigmask(signal.SIG_BLOCK, INT)
    except KeyboardInterrupt:
        signal.pthread_sigmask(signal.SIG_BLOCK, INT)
        status = "interrupted"
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    os.write(4, (json.dumps({"seq": req["seq"], "status": status}) + "\n").encode())
'''

LIMITS = {"memory_mb": 512, "processes": 64, "disk_mb": 64, "output_bytes": 16384, "nproc": True, "cpu_s": 3600}
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORK, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
statuses = {}
SEQ = [0]
interp = None  # {"pid", "cmd", "res", "out"}
interp_lost = False  # the interpreter died or was killed: the next python call says it was restarted
wake_r = wake_w = -1


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            sys.exit(0)  # the host went away: the session ends
        buf += chunk
    return buf


def send(obj):
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(1, data):]


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = status


def live_pids(keep):
    out = []
    if SCOPE == "group":
        return out
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) not in keep:
            try:
                if SCOPE == "uid" and os.stat("/proc/" + e).st_uid != os.getuid():
                    continue
                with open("/proc/%s/stat" % e, "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                out.append(int(e))
    return out


def kill_strays():
    """Kill every process but the agent and the interpreter (fork bombs: until none is left)."""
    keep = {os.getpid()} | ({1} if SCOPE == "namespace" else set()) | ({interp["pid"]} if interp else set())
    for i in range(400):
        pids = live_pids(keep)
        reap()
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if i:
            time.sleep(0.002)


def child_setup(fds):
    """In a forked child: own process group, default signals, rlimits, fds 0..len(fds)-1 from ``fds``."""
    import resource
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    mem = LIMITS["memory_mb"] << 20
    rl = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, LIMITS["disk_mb"] << 20),
          (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CPU, int(LIMITS["cpu_s"]))]
    if LIMITS["nproc"]:
        rl.append((resource.RLIMIT_NPROC, LIMITS["processes"]))
    for what, value in rl:
        resource.setrlimit(what, (value, value))
    import fcntl
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # above every target, so no dup2 clobbers one
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    for fd in [int(x) for x in os.listdir("/proc/self/fd")]:  # not closerange(n, 65536): 65k syscalls, ~15 ms
        if fd >= len(fds):
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(WORK)


def spawn(argv, fds):
    pid = os.fork()
    if pid == 0:
        try:
            child_setup(fds)
            os.execve(argv[0], argv, ENV)
        except BaseException as exc:
            try:
                os.write(2, ("evalgym-session: cannot start %s: %s\n" % (argv[0], exc)).encode())
            except OSError:
                pass
        os._exit(127)
    return pid


def start_interp():
    global interp
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()
    out_r, out_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    pid = spawn([PY, "-S", "-u", "-c", REPL], [null, out_w, out_w, cmd_r, res_w])
    for fd in (cmd_r, res_w, out_w, null):
        os.close(fd)
    for fd in (res_r, out_r):
        os.set_blocking(fd, False)
    interp = {"pid": pid, "cmd": cmd_w, "res": res_r, "out": out_r, "resbuf": b""}


def drop_interp():
    global interp, interp_lost
    if interp is None:
        return
    try:
        os.killpg(interp["pid"], signal.SIGKILL)
    except OSError:
        pass
    try:
        os.kill(interp["pid"], signal.SIGKILL)
    except OSError:
        pass
    for k in ("cmd", "res", "out"):
        try:
            os.close(interp[k])
        except OSError:
            pass
    interp, interp_lost = None, True


def describe(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "killed by signal %d%s" % (sig, " (out of memory?)" if sig == signal.SIGKILL else "")
    return "exited with status %d" % os.WEXITSTATUS(status)


class Capture:
    def __init__(self, cap):
        self.cap, self.buf, self.total = cap, bytearray(), 0

    def feed(self, fd, budget=1 << 20):
        """Read what is there (past the cap: read and dropped, at most ``budget`` bytes a call, so a flood
        never blocks its writer and the caller gets to stop it); False at end of stream."""
        got = 0
        while got < budget:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.total += len(chunk)
            got += len(chunk)
            room = self.cap - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]
        return True

    @property
    def over(self):
        return self.total > self.cap

    def text(self):
        return bytes(self.buf).decode("utf-8", "replace")


def run_python(req):
    global interp_lost
    t0 = time.monotonic()
    reap()
    if interp is not None and interp["pid"] in statuses:  # killed since its last call (a shell's kill -9 -1)
        statuses.pop(interp["pid"])
        drop_interp()
    restarted = interp_lost
    if interp is None:
        start_interp()
        interp_lost = False
    me = interp
    Capture(0).feed(me["out"], 1 << 30)  # what an earlier call left behind is not this call's output
    me["resbuf"] = b""
    os.kill(me["pid"], signal.SIGCONT)
    SEQ[0] += 1
    code = json.dumps({"seq": SEQ[0], "code": req["code"]}).encode()
    cap = Capture(int(req.get("output_bytes", LIMITS["output_bytes"])))
    deadline = t0 + float(req["timeout"])
    error, status, interrupted_at, why = None, None, None, None
    try:
        os.write(me["cmd"], struct.pack(">I", len(code)))
        _write_all(me["cmd"], code, deadline, cap, me["out"])
    except OSError:
        error = "died"
    while error is None and status is None:
        now = time.monotonic()
        if (now >= deadline or cap.over) and interrupted_at is None:
            interrupted_at = now
            why = "timeout" if now >= deadline else "output_limit"
            try:
                os.kill(me["pid"], signal.SIGINT)  # like Ctrl-C: the state survives if the code stops
            except OSError:
                pass
        if interrupted_at is not None and now >= interrupted_at + 1.0:
            break
        wait = (interrupted_at + 1.0 if interrupted_at is not None else deadline) - now
        ready = select.select([me["out"], me["res"], wake_r], [], [], max(0.0, wait))[0]
        if wake_r in ready:
            _drain_wake()
        if me["out"] in ready:
            cap.feed(me["out"])
        if me["res"] in ready:
            try:
                me["resbuf"] += os.read(me["res"], 4096)
            except BlockingIOError:
                pass
            while status is None and b"\n" in me["resbuf"]:
                line, me["resbuf"] = me["resbuf"].split(b"\n", 1)
                try:
                    done = json.loads(line)
                except ValueError:
                    continue  # not the interpreter's (its own code wrote to fd 4)
                if isinstance(done, dict) and done.get("seq") == SEQ[0]:
                    status = str(done.get("status"))
        reap()
        if me["pid"] in statuses:
            cap.feed(me["out"])
            error = "died: the interpreter " + describe(statuses.pop(me["pid"]))
    cap.feed(me["out"])
    if interrupted_at is not None:
        error = why
    if error is not None and (status is None or error.startswith("died")):
        drop_interp()  # did not answer (or died): start afresh at the next call
        lost = True
    else:
        lost = False
        try:
            os.kill(me["pid"], signal.SIGSTOP)
        except OSError:
            pass
    kill_strays()
    return {"output": cap.text(), "truncated": cap.over, "status": status, "error": error, "lost": lost,
            "restarted": restarted, "duration_s": time.monotonic() - t0}


def _write_all(fd, data, deadline, cap, out_fd):
    """Write ``data`` to the interpreter while draining its output (a huge cell must not deadlock)."""
    os.set_blocking(fd, False)
    try:
        while data:
            if time.monotonic() >= deadline:
                raise OSError("timeout while sending the code")
            w = select.select([out_fd], [fd], [], 0.05)
            if w[0]:
                cap.feed(out_fd)
            if w[1]:
                data = data[os.write(fd, data):]
    finally:
        os.set_blocking(fd, True)


def run_shell(req):
    t0 = time.monotonic()
    cap = Capture(int(req.get("output_bytes", LIMITS["output_bytes"])))
    out_r, out_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    pid = spawn(["/bin/bash", "-c", req["command"]], [null, out_w, out_w])
    os.close(out_w)
    os.close(null)
    os.set_blocking(out_r, False)
    deadline = t0 + float(req["timeout"])
    error, status, eof = None, None, False
    while True:
        reap()
        if pid in statuses:
            status = statuses.pop(pid)
            break
        now = time.monotonic()
        if now >= deadline or cap.over:
            error = "timeout" if now >= deadline else "output_limit"
            break
        fds = [wake_r] + ([] if eof else [out_r])
        ready = select.select(fds, [], [], max(0.0, deadline - now))[0]
        if wake_r in ready:
            _drain_wake()
        if out_r in ready and not cap.feed(out_r):
            eof = True
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if status is not None:
        cap.feed(out_r)  # what was written before it exited (background writers are killed next)
    kill_strays()
    os.close(out_r)
    reap()
    statuses.pop(pid, None)
    code = None
    if status is not None:
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"output": cap.text(), "truncated": cap.over, "exit_code": code, "error": error,
            "duration_s": time.monotonic() - t0}


def _drain_wake():
    try:
        while os.read(wake_r, 512):
            pass
    except OSError:
        pass


def inside(rel):
    path = os.path.realpath(os.path.join(WORK, rel))
    if path != WORK and not path.startswith(WORK + "/"):
        raise ValueError("%r is outside the working directory" % rel)
    return path


def write_file(rel, data):
    path = inside(rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def files(max_bytes):
    out, skipped, total = {}, [], 0
    for root, dirs, names in os.walk(WORK):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, WORK)
            if os.path.islink(path) or not os.path.isfile(path):
                skipped.append(rel)
                continue
            try:
                size = os.path.getsize(path)
                if total + size > max_bytes:
                    skipped.append(rel)
                    continue
                with open(path, "rb") as f:
                    out[rel] = base64.b64encode(f.read()).decode()
                total += size
            except OSError:
                skipped.append(rel)
    return {"files": out, "skipped": skipped}


def handle(req):
    op = req.get("op")
    if op == "init":
        LIMITS.update(req.get("limits") or {})
        ENV.update(req.get("env") or {})
        for rel, data in (req.get("files") or {}).items():
            write_file(rel, base64.b64decode(data))
        if req.get("python", True):
            start_interp()  # it boots while the host gets on with the episode; paused until the first call
            os.kill(interp["pid"], signal.SIGSTOP)
        return {"ok": True, "pid": os.getpid()}
    if op == "python":
        return run_python(req)
    if op == "shell":
        return run_shell(req)
    if op == "write_file":
        write_file(req["path"], base64.b64decode(req["data"]))
        return {"ok": True}
    if op == "files":
        return files(int(req.get("max_bytes", 8 << 20)))
    if op == "ping":
        return {"ok": True}
    return {"error": "unknown op %r" % (op,)}


def main():
    global wake_r, wake_w
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: no ptrace, no /proc/1/{mem,fd}
    except Exception:
        pass
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    os.makedirs(WORK, exist_ok=True)
    while True:
        n = struct.unpack(">I", read_exact(0, 4))[0]
        req = json.loads(read_exact(0, n))
        try:
            reply = handle(req)
        except Exception as exc:  # a bad request (path outside /work...): the host reports it
            reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
        send(reply)


if __name__ == "__main__":
    main()
