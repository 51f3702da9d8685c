"""Reaper for the docker sandbox: outlives its owner and removes the owner's containers when it dies.

    python evalgym/sandbox/docker_reaper.py OWNER_PID [BASE_URL]     (or python -m evalgym.sandbox.docker_reaper)

``DockerSandbox`` starts one per process, detached (own session, stdio on /dev/null), so that containers
labelled ``evalgym.owner_pid=OWNER_PID`` are force-removed even when the owner is SIGKILLed and its
``atexit`` hook never runs. It waits on a pidfd (no pid-reuse race), falling back to polling the pid and
its start time. Imports only the docker SDK, not evalgym (it is run by path, so it starts fast).
"""

from __future__ import annotations

import os
import select
import sys
import time

LABEL = "evalgym.sandbox"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


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
