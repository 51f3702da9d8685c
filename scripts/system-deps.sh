#!/usr/bin/env bash
# System packages the sandboxes need: bubblewrap (local backend namespaces) and util-linux's setpriv/prlimit;
# and headless Chromium, which the leaderboard test opens the HTML page in (tests/benchmarks).
# Idempotent and quiet when everything is there. Needs root (CI runs as root); otherwise it only reports.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
[ -x /usr/bin/setpriv ] && [ -x /usr/bin/prlimit ] || need+=(util-linux)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]} and cannot install them here (need root and apt-get);" \
       "the local sandbox runs without namespaces" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${need[@]}" >/dev/null
