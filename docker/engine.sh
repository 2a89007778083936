#!/usr/bin/env bash
# Make sure a Docker engine answers, for the container test (tests/test_compose.py).
#
# When `docker info` fails: install what is missing from Debian (docker.io, Debian's
# docker-compose 1.29, debootstrap for a local base image), start dockerd in the
# background and wait for it. Needs root for that; says why when it cannot.
# SANDBAR_SKIP_DOCKER=1 skips it on a developer machine (never in CI: the test then fails).
set -euo pipefail

LOG=${SANDBAR_DOCKERD_LOG:-/var/log/sandbar-dockerd.log}
say() { echo "docker/engine.sh: $*" >&2; }

if [ "${SANDBAR_SKIP_DOCKER:-}" = 1 ] && [ -z "${CI:-}" ]; then
    say "SANDBAR_SKIP_DOCKER=1: not checking the Docker engine (the compose test will skip)"
    exit 0
fi
if docker info >/dev/null 2>&1; then exit 0; fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ] || ! pgrep -x dockerd >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        say "no Docker engine answers and this is not root: install and start Docker" \
            "(or set SANDBAR_SKIP_DOCKER=1 to skip the container test here)"
        exit 1
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q >/dev/null
    timeout 600 apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! pgrep -x dockerd >/dev/null; then
    say "starting dockerd (log: $LOG)"
    setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then exit 0; fi
    sleep 1
done
echo "--- last lines of $LOG:" >&2
tail -n 10 "$LOG" >&2 || true
say "the Docker engine did not answer within 60 s (docker info: $(docker info 2>&1 | tail -n 1))"
exit 1
