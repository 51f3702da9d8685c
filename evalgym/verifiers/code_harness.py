"""The test harness that runs inside the sandbox. Its design makes a pass unforgeable by the program.

Two processes inside the sandbox:
- the **harness** (trusted) reads a per-run secret nonce from stdin, makes itself non-dumpable (no
  ptrace, no /proc/<pid>/mem, fd or environ for same-uid processes), then starts
- the **child**, which runs the untrusted program in its own interpreter, with no access to the
  harness's stdin/stdout/stderr, and serves function calls over a pipe.

The tests (dataset code, trusted) run in the harness. Every call of the program's functions is sent to
the child; arguments go over and results come back as plain data only (None, bool, int, float, str,
bytes, list, tuple, dict, set, complex — exact types, encoded as JSON), so an object with an always-true
``__eq__`` cannot cross, and mutated list/dict/set arguments are copied back. When the test code runs to
its end with at least one call made, the harness prints ``EVALGYM-PASS <hmac(nonce, calls)>``; the
verifier outside recomputes the HMAC. The program cannot learn the nonce (another process, not
dumpable, never in a file, argv or environment), so printing, ``sys.exit(0)``, ``os._exit``,
``atexit``/``excepthook`` tricks, its own ``check``, frame walking, writing to every fd or killing its
parent can only make the run fail.
"""

HARNESS = r'''
import collections, ctypes, hashlib, hmac, json, os, subprocess, sys

nonce = sys.stdin.buffer.readline().strip()
os.close(0)
os.open(os.devnull, os.O_RDONLY)  # takes fd 0 again, so the pipes below never land on it
try:
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
except Exception:
    pass
spec = json.load(open("spec.json"))

def enc(x, depth=0):
    t = type(x)
    if depth > 100:
        raise TypeError("value nested too deeply")
    if x is None or t in (bool, int, str):
        return x
    if t is float:
        return x if x == x and x not in (float("inf"), float("-inf")) else {"$f": repr(x)}
    if t is list:
        return [enc(v, depth + 1) for v in x]
    if t is tuple:
        return {"$t": [enc(v, depth + 1) for v in x]}
    if t in (set, frozenset):
        return {"$s": [enc(v, depth + 1) for v in x]}
    if t in (dict, collections.Counter, collections.defaultdict, collections.OrderedDict):
        return {"$d": [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in x.items()]}
    if t is type and x in BUILTIN_TYPES:
        return {"$type": x.__name__}
    if isinstance(x, Record) or (hasattr(x, "__dict__") and not callable(x) and t.__module__ in ("solution", "evalgym_tests")):
        return {"$obj": [t.__name__, enc(dict(vars(x)), depth + 1)]}
    if t is complex:
        return {"$c": [x.real, x.imag]}
    if t in (bytes, bytearray):
        return {"$b": x.hex()}
    if depth == 0 and t.__module__ not in ("builtins", "evalgym_tests", "__main__"):
        # any other object (re.Match...): only its truth value and repr cross, as an inert Opaque
        return {"$opaque": [t.__name__, bool(x), repr(x)[:200]]}
    raise TypeError("cannot pass a %s" % t.__name__)

BUILTIN_TYPES = (int, float, str, bool, list, tuple, dict, set, frozenset, complex, bytes, type(None))
CLASSES = {}  # name -> class this side may rebuild objects as (the harness: only trusted prelude classes)

class Record:
    """An object of a class this side does not have: its attributes, compared by value."""
    def __eq__(self, other):
        return type(other) is type(self) and vars(self) == vars(other)
    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, vars(self))

class Opaque:
    """Stands for a returned object of a type that cannot cross: truthy like it, equal to nothing else."""
    def __init__(self, name, truth, text):
        self.name, self.truth, self.text = name, truth, text
    def __bool__(self):
        return self.truth
    def __repr__(self):
        return self.text

RECORDS = {}
def record_class(name):
    return RECORDS.setdefault(name, type(str(name), (Record,), {}))

def dec(x):
    if isinstance(x, list):
        return [dec(v) for v in x]
    if isinstance(x, dict):
        (k, v), = x.items()
        if k == "$t": return tuple(dec(i) for i in v)
        if k == "$s": return set(dec(i) for i in v)
        if k == "$d": return {dec(a): dec(b) for a, b in v}
        if k == "$c": return complex(v[0], v[1])
        if k == "$b": return bytes.fromhex(v)
        if k == "$f": return float(v)
        if k == "$opaque":
            return Opaque(str(v[0]), v[1] is True, str(v[2]))
        if k == "$type":
            return {t.__name__: t for t in BUILTIN_TYPES}[v]
        if k == "$obj":
            cls = CLASSES.get(v[0])
            obj = object.__new__(cls) if isinstance(cls, type) else record_class(v[0])()
            obj.__dict__.update(dec(v[1]))
            return obj
        raise ValueError("bad value tag")
    return x

r1, w1 = os.pipe()
r2, w2 = os.pipe()
child = subprocess.Popen([sys.executable, "-I", "child.py", str(r1), str(w2)], pass_fds=(r1, w2),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(r1); os.close(w2)
to_child = os.fdopen(w1, "w", buffering=1)
from_child = os.fdopen(r2, "r")
calls = [0]

class RemoteError(Exception):
    pass

def ask(msg):
    try:
        to_child.write(json.dumps(msg) + "\n")
        line = from_child.readline()
    except (BrokenPipeError, OSError):
        line = ""
    if not line:
        raise RemoteError("the program's process ended")
    return json.loads(line)

def proxy_for(name):
    def proxy(*args, **kwargs):
        calls[0] += 1
        reply = ask({"op": "call", "name": name, "args": enc(list(args)), "kwargs": enc(kwargs)})
        if "error" in reply:
            raise RemoteError(str(reply["error"])[:300])
        for a, after in zip(args, dec(reply.get("args_after", []))):
            if type(a) is list and type(after) is list: a[:] = after
            elif type(a) is dict and type(after) is dict: a.clear(); a.update(after)
            elif type(a) is set and type(after) is set: a.clear(); a.update(after)
        return dec(reply["value"])
    proxy.__name__ = name
    return proxy

ns = {"__name__": "evalgym_tests"}
try:
    hello = ask({"op": "names"})
    for name in hello.get("names", []):  # the program's functions and classes, called remotely
        ns[name] = proxy_for(name)
    for mod in hello.get("imports", []):  # tests may lean on the program's stdlib imports (MBPP does)
        if mod.split(".")[0] in sys.stdlib_module_names and mod not in ("antigravity", "this", "turtle", "tkinter", "idlelib"):
            ns[mod.split(".")[0]] = __import__(mod)
    # trusted: prompt helpers, setup code; its definitions win over the program's
    exec(compile(spec.get("prelude", ""), "prelude", "exec"), ns)
    CLASSES.update({k: v for k, v in ns.items() if isinstance(v, type) and v.__module__ == "evalgym_tests"})
    ns[spec["entry_point"]] = proxy_for(spec["entry_point"])
    exec(compile(spec["test"], "tests", "exec"), ns)
    if spec.get("check"):
        ns["check"](ns[spec["entry_point"]])
    ok, why = calls[0] > 0, "no call of the program was made"
except BaseException as e:
    ok, why = False, "%s: %s" % (type(e).__name__, str(e)[:300])
try:
    child.kill()
except Exception:
    pass
if ok:
    print("EVALGYM-PASS " + hmac.new(nonce, b"pass:%d" % calls[0], hashlib.sha256).hexdigest() + " %d" % calls[0])
else:
    print("EVALGYM-FAIL " + json.dumps(why))
sys.stdout.flush()
'''

CHILD = r'''
import collections, json, os, sys
rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
inbox = os.fdopen(rfd, "r")
outbox = os.fdopen(wfd, "w", buffering=1)
send = outbox.write
''' + HARNESS[HARNESS.index("def enc("):HARNESS.index("r1, w1 = os.pipe()")] + r'''
src = open("program.py").read()
ns = {"__name__": "solution"}
load_error = None
try:
    exec(compile(src, "program.py", "exec"), ns)
except BaseException as e:
    load_error = "%s: %s" % (type(e).__name__, str(e)[:300])
for line in inbox:
    msg = json.loads(line)
    if msg["op"] == "names":
        names = [k for k, v in list(ns.items()) if callable(v) and not k.startswith("__")]
        CLASSES.update({k: v for k, v in ns.items() if isinstance(v, type)})
        imports = [v.__name__ for k, v in ns.items() if type(v) is type(os) and k == v.__name__.split(".")[0]]
        reply = {"names": names, "imports": imports}
    elif load_error is not None:
        reply = {"error": "program failed to load: " + load_error}
    else:
        try:
            args, kwargs = dec(msg["args"]), dec(msg["kwargs"])
            value = ns[msg["name"]](*args, **kwargs)
            reply = {"value": enc(value), "args_after": enc(args)}
        except BaseException as e:
            reply = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
    try:
        out = json.dumps(reply)
    except Exception as e:
        out = json.dumps({"error": "unencodable result: %s" % e})
    send(out + "\n")
'''
