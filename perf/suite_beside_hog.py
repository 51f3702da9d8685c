"""The test suite (or any command) run beside a CPU hog: one nice-0 busy loop per core for the whole run.

    python perf/suite_beside_hog.py [--hogs N] [--out perf/results/suite_beside_hog] [--log FILE] [-- CMD ...]

CMD defaults to ``make test``. The hogs (at this process's niceness, the command's too) start before CMD and stop after it; ``/proc/loadavg`` is sampled
every ``--every`` seconds, and each hog's CPU time is read from ``/proc/PID/stat`` at the end (the share of a
core it actually took, so a run where the hogs were starved does not pass for a hard one). Writes ``OUT.json``
and ``OUT.md`` (atomically): the command's exit code, wall time, pytest's summary line, the hogs' CPU share
and the load. CMD's output goes to ``--log`` (default: a temporary file, named in the results).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalgym.recipes.runner import write_atomic  # noqa: E402
HOG = "while :; do :; done"
SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error).*) in [\d.]+s.*$")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], hogs: int, every: float, log: Path) -> dict:
    procs = [subprocess.Popen(["bash", "-c", HOG]) for _ in range(hogs)]
    load: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while True:
            load.append((time.monotonic() - t0, float(Path("/proc/loadavg").read_text().split()[0])))
            if stop.wait(every):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with log.open("w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        wall = time.monotonic() - t0
        hog_cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        stop.set()
        for p in procs:
            p.kill()
            p.wait()
    sampler.join()
    summary = ""
    for line in log.read_text(errors="replace").splitlines():
        if m := SUMMARY.match(line.strip()):
            summary = m.group(1)
    loads = [x for _, x in load]
    return {"cmd": cmd, "rc": rc, "wall_s": round(wall, 1), "summary": summary, "hogs": hogs, "nice": os.nice(0),
            "cores": os.cpu_count(),
            "hog_cpu_share": [round(c / wall, 3) for c in hog_cpu], "load_1min": load,
            "load_mean": round(sum(loads) / len(loads), 2), "load_max": max(loads), "log": str(log)}


def report(r: dict) -> str:
    verdict = "passed" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
    return "\n".join([
        "# The suite beside a CPU hog", "",
        f"`{' '.join(r['cmd'])}` beside {r['hogs']} nice-{r['nice']} busy loops (`{HOG}`) on a {r['cores']}-core machine, "
        "started before the command and stopped after it.", "",
        "| result | wall | pytest | hogs' CPU (share of a core each) | load (1 min) mean / max |",
        "|---|---|---|---|---|",
        f"| {verdict} | {r['wall_s'] / 60:.1f} min | {r['summary'] or '-'} | "
        f"{', '.join(f'{s:.2f}' for s in r['hog_cpu_share'])} | {r['load_mean']} / {r['load_max']} |", "",
        f"Output: {r['log']}", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hogs", type=int, default=os.cpu_count(), help="busy loops (default: one per core)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between load samples")
    ap.add_argument("--out", default=str(REPO / "perf/results/suite_beside_hog"))
    ap.add_argument("--log", default=None, help="where the command's output goes")
    ap.add_argument("cmd", nargs="*", default=["make", "test"])
    a = ap.parse_args(argv)
    if a.hogs < 1:
        ap.error(f"--hogs must be >= 1 (got {a.hogs})")
    if a.every <= 0:
        ap.error(f"--every must be > 0 (got {a.every})")
    log = Path(a.log) if a.log else Path(tempfile.mkstemp(prefix="suite_beside_hog_", suffix=".log")[1])
    r = run(a.cmd, a.hogs, a.every, log)
    out = Path(a.out)
    write_atomic(out.with_suffix(".json"), json.dumps(r, indent=1) + "\n")
    write_atomic(out.with_suffix(".md"), report(r))
    print(report(r))
    return r["rc"]


if __name__ == "__main__":
    sys.exit(main())
