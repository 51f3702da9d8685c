"""Leak safety for the docker sandbox: owner labels, a sweep of dead owners' containers, and the reaper.

    python evalgym/sandbox/docker_reaper.py OWNER_PID [BASE_URL]     (or python -m evalgym.sandbox.docker_reaper)

Every sandbox container is labelled with its owner (pid, the pid's start time, hostname). ``DockerSandbox``
starts one reaper per process, detached (own session, stdio on /dev/null): it waits for the owner to exit
(on a pidfd, so no pid-reuse race; else polling the pid's start time) and force-removes the owner's
containers, so they go even when the owner is SIGKILLed and its ``atexit`` hook never runs. Run by path,
it imports only the docker SDK, not evalgym, and starts fast. ``sweep_stale`` catches what a reaper could
not (a reaper killed too, a daemon that was down).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

LABEL = "evalgym.sandbox"
_REAPERS: dict[tuple[int, str], subprocess.Popen] = {}
_LOCK = threading.Lock()


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {LABEL: "1", "evalgym.owner_pid": str(pid), "evalgym.owner_start": _start_time(pid) or "",
            "evalgym.owner_host": socket.gethostname()}


def sweep_stale(client) -> int:
    """Force-remove sandbox containers of this host whose owner process is gone; how many."""
    removed, host = 0, socket.gethostname()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL}=1"})
    except Exception:  # noqa: BLE001
        return 0
    for c in found:
        labels = c.labels or {}
        pid = labels.get("evalgym.owner_pid", "")
        if labels.get("evalgym.owner_host", host) != host or not pid.isdigit():
            continue  # another machine's (a shared daemon): its own reaper's business
        started = _start_time(int(pid))
        if started is None or started != labels.get("evalgym.owner_start", started):
            try:
                c.remove(force=True)
                removed += 1
            except Exception:  # noqa: BLE001  (removed meanwhile)
                pass
    return removed


def start_reaper(base_url: str | None) -> None:
    """Start this process's reaper for ``base_url`` (once per process and daemon)."""
    key = (os.getpid(), base_url or "")
    with _LOCK:
        if key in _REAPERS and _REAPERS[key].poll() is None:
            return
        _REAPERS[key] = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid()), base_url or ""],
                                         start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, close_fds=True)


def wait_for_exit(pid: int, poll_s: float = 0.5) -> None:
    """Block until process ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        return
    started = _start_time(pid)
    while started is not None and _start_time(pid) == started:
        time.sleep(poll_s)


def reap(owner_pid: int, base_url: str | None, attempts: int = 5) -> int:
    """Force-remove every container labelled with ``owner_pid``; the number removed."""
    import docker

    removed = 0
    for attempt in range(attempts):
        try:
            client = docker.DockerClient(base_url=base_url, timeout=30) if base_url else docker.from_env(timeout=30)
            found = client.containers.list(all=True, filters={"label": [f"{LABEL}=1",
                                                                        f"evalgym.owner_pid={owner_pid}"]})
            for c in found:
                try:
                    c.remove(force=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
            client.close()
            return removed
        except Exception:  # noqa: BLE001  (daemon restarting: retry a few times, then give up)
            time.sleep(1 + attempt)
    return removed


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: docker_reaper.py OWNER_PID [BASE_URL]", file=sys.stderr)
        return 2
    owner = int(argv[0])
    base_url = argv[1] if len(argv) > 1 and argv[1] else None
    wait_for_exit(owner)
    reap(owner, base_url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
