#!/usr/bin/env bash
# Start evalgym's own Docker daemon (idempotent, quiet on success).
#
# A private dockerd with its own data root, exec root, pidfile, socket and containerd namespace, so it
# never touches another dockerd on the machine; --iptables=false --bridge=none --ip-forward=false
# --ip-masq=false keep it from rewriting the host's networking (sandbox containers use --network none).
# Installs docker.io via apt when dockerd is missing. Exits non-zero with a message when it cannot start.
set -euo pipefail

SOCK=/run/evalgym-docker.sock
HOST="unix://$SOCK"
PIDFILE=/run/evalgym-docker.pid
DATA_ROOT=/var/lib/evalgym-docker
EXEC_ROOT=/run/evalgym-docker-exec
LOG=/var/log/evalgym-dockerd.log
LOCK=/run/evalgym-docker.lock
WAIT_S=${EVALGYM_DOCKER_WAIT_S:-60}

die() { echo "docker-up.sh: $*" >&2; exit 1; }

answers() { command -v docker >/dev/null 2>&1 && timeout 10 docker -H "$HOST" info >/dev/null 2>&1; }

# Another daemon chosen by the user: check it, start nothing.
if [ -n "${EVALGYM_DOCKER_HOST:-}" ] && [ "$EVALGYM_DOCKER_HOST" != "$HOST" ]; then
    timeout 10 docker -H "$EVALGYM_DOCKER_HOST" info >/dev/null 2>&1 && exit 0
    die "EVALGYM_DOCKER_HOST=$EVALGYM_DOCKER_HOST does not answer (this script only starts $HOST)"
fi

[ "$(id -u)" = 0 ] || die "must run as root to start a Docker daemon (uid $(id -u))"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available to install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq docker.io >/tmp/evalgym-apt.log 2>&1; then
        apt-get update -qq >>/tmp/evalgym-apt.log 2>&1 || true
        apt-get install -y -qq docker.io >>/tmp/evalgym-apt.log 2>&1 \
            || die "apt-get install docker.io failed (see /tmp/evalgym-apt.log)"
    fi
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
fi

answers && exit 0

# One starter at a time (parallel test workers, make -j).
exec 9>"$LOCK"
flock -w $((WAIT_S + 30)) 9 || die "timed out waiting for the lock $LOCK"
answers && exit 0

running_pid=""
if [ -s "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa dockerd "/proc/$pid/cmdline" 2>/dev/null; then
        running_pid=$pid  # ours, still starting up (or wedged): wait for it below rather than start a second
    else
        rm -f "$PIDFILE"
    fi
fi

if [ -z "$running_pid" ]; then
    # A containerd that our previous dockerd started may outlive it (dockerd SIGKILLed), or still be exiting:
    # the new dockerd would then wait for its socket forever. Stop it (only ours: its config is in our exec
    # root) and drop its pid file, so dockerd starts a fresh one.
    cpid_file=$EXEC_ROOT/containerd/containerd.pid
    cpid=$(cat "$cpid_file" 2>/dev/null || true)
    ours() { grep -qa -- "$EXEC_ROOT/containerd/" "/proc/$1/cmdline" 2>/dev/null; }  # false once a zombie
    if [ -n "$cpid" ]; then
        if ours "$cpid"; then
            kill -TERM "$cpid" 2>/dev/null || true
            for _ in $(seq 1 40); do ours "$cpid" || break; sleep 0.25; done
            ours "$cpid" && kill -KILL "$cpid" 2>/dev/null || true
        fi
        rm -f "$cpid_file"
    fi
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
    rm -f "$SOCK"
    {
        echo "=== $(date -Is) docker-up.sh starting dockerd"
    } >>"$LOG"
    setsid nohup dockerd \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" \
        -H "$HOST" \
        --containerd-namespace evalgym \
        --containerd-plugins-namespace evalgym-plugins \
        --iptables=false --bridge=none --ip-forward=false --ip-masq=false \
        </dev/null >>"$LOG" 2>&1 &
    running_pid=$!
    disown "$running_pid" 2>/dev/null || true
fi

for _ in $(seq 1 $((WAIT_S * 2))); do
    answers && exit 0
    if ! kill -0 "$running_pid" 2>/dev/null; then
        echo "docker-up.sh: dockerd exited during start-up; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "docker-up.sh: dockerd (pid $running_pid) did not answer on $SOCK within ${WAIT_S}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
