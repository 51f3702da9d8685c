#!/usr/bin/env bash
# Build the docker sandbox image evalgym-sandbox:1 offline (no registry): a debootstrap'd Debian bookworm
# minbase with python3 (the interpreter and its full standard library: python3-minimal alone lacks json,
# shutil, decimal, ...), imported into evalgym's daemon (scripts/docker-up.sh starts it).
# Idempotent: exits at once when the image exists and was built from this recipe. The root filesystem is
# cached as a tarball, so a rebuild after the daemon's data is wiped is a few-second `docker import`.
# Programs run as uid 65534 (nobody, already in the base system).
#
#   EVALGYM_DOCKER_HOST     daemon to import into (default unix:///run/evalgym-docker.sock)
#   EVALGYM_DEBIAN_MIRROR   Debian mirror for debootstrap (default: the one apt already uses)
set -euo pipefail

IMAGE=${EVALGYM_SANDBOX_IMAGE:-evalgym-sandbox:1}
HOST=${EVALGYM_DOCKER_HOST:-unix:///run/evalgym-docker.sock}
CACHE_DIR=/var/cache/evalgym
TARBALL=$CACHE_DIR/sandbox-rootfs.tar
SUITE=bookworm
INCLUDE=python3-minimal,python3
RECIPE="debootstrap-minbase-$SUITE-$INCLUDE-v1"   # bump to force a rebuild

die() { echo "build-sandbox-image.sh: $*" >&2; exit 1; }
dk() { docker -H "$HOST" "$@"; }

command -v docker >/dev/null 2>&1 || die "docker CLI missing: run scripts/docker-up.sh first"
timeout 10 docker -H "$HOST" info >/dev/null 2>&1 || die "no Docker daemon answers on $HOST: run scripts/docker-up.sh first"
current() { [ "$(dk image inspect --format '{{index .Config.Labels "evalgym.recipe"}}' "$IMAGE" 2>/dev/null)" = "$RECIPE" ]; }
current && exit 0

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
flock -w 900 9 || die "timed out waiting for another build (lock $CACHE_DIR/.build.lock)"
current && exit 0
[ "$(cat "$TARBALL.recipe" 2>/dev/null)" = "$RECIPE" ] || rm -f "$TARBALL" "$TARBALL.recipe"

debian_mirror() {
    if [ -n "${EVALGYM_DEBIAN_MIRROR:-}" ]; then echo "$EVALGYM_DEBIAN_MIRROR"; return; fi
    local f url
    # deb822 .sources files: the URIs of the stanza whose Suites has plain "bookworm"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        url=$(awk 'BEGIN{RS=""} /Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ && /Components:[^\n]*main/ {
                   if (match($0, /URIs:[[:space:]]*[^[:space:]]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[[:space:]]*/,"",s); print s; exit } }' "$f")
        if [ -n "$url" ]; then echo "$url"; return; fi
    done
    # one-line .list files: "deb [opts] URL bookworm main"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        url=$(sed -E 's/\[[^]]*\]//' "$f" | awk '$1=="deb" && $3=="bookworm" {print $2; exit}')
        if [ -n "$url" ]; then echo "$url"; return; fi
    done
    echo "http://deb.debian.org/debian"
}

if [ ! -s "$TARBALL" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq debootstrap >/tmp/evalgym-apt.log 2>&1; then
            apt-get update -qq >>/tmp/evalgym-apt.log 2>&1 || true
            apt-get install -y -qq debootstrap >>/tmp/evalgym-apt.log 2>&1 \
                || die "apt-get install debootstrap failed (see /tmp/evalgym-apt.log)"
        fi
    fi
    MIRROR=$(debian_mirror)
    ROOT=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    trap 'rm -rf "$ROOT" "$TARBALL.tmp"' EXIT
    LOG=$CACHE_DIR/debootstrap.log
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        die "debootstrap $SUITE from $MIRROR failed (log: $LOG)"
    fi
    # Slim it: apt caches and docs are not needed to run python3.
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* \
           "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/*
    grep -q '^nobody:x:65534:' "$ROOT/etc/passwd" || die "rootfs has no nobody (65534) user"
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    echo "$RECIPE" >"$TARBALL.recipe"
    rm -rf "$ROOT"
    trap - EXIT
fi

old=$(dk image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
dk import --change "LABEL evalgym.recipe=$RECIPE" --change 'USER 65534:65534' --change 'WORKDIR /work' --change 'CMD ["sleep","infinity"]' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
    "$TARBALL" "$IMAGE" >/dev/null || die "docker import of $TARBALL failed"

out=$(dk run --rm --network none "$IMAGE" python3 -c 'import json, shutil, base64, resource; print(1)' 2>&1) || true
if [ "$out" != "1" ]; then
    dk rmi "$IMAGE" >/dev/null 2>&1 || true
    die "image check failed (python3 -c 'import json, shutil, ...; print(1)' printed: $out); the cached rootfs $TARBALL may be bad: delete it and rerun"
fi
# the image this one replaces (an older recipe), unless containers still use it
if [ -n "$old" ] && [ "$old" != "$(dk image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    dk rmi "$old" >/dev/null 2>&1 || true
fi
