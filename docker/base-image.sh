#!/usr/bin/env bash
# Print the base image for the Sandbar Dockerfile, making sure it exists locally.
#
# The official python:3.11-slim-bookworm when it is present or can be pulled; otherwise
# (no registry reachable) a Debian bookworm image built here with debootstrap and
# `docker import`, kept as sandbar-base:bookworm so later runs reuse it.
# Progress goes to stderr; stdout is only the image name.
set -euo pipefail

OFFICIAL=${SANDBAR_OFFICIAL_BASE:-python:3.11-slim-bookworm}
LOCAL=${SANDBAR_LOCAL_BASE:-sandbar-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { docker image inspect "$1" >/dev/null 2>&1; }

if have "$OFFICIAL"; then echo "$OFFICIAL"; exit 0; fi
if have "$LOCAL"; then echo "$LOCAL"; exit 0; fi
if timeout 120 docker pull -q "$OFFICIAL" >&2; then echo "$OFFICIAL"; exit 0; fi

echo "base-image: $OFFICIAL cannot be pulled; building $LOCAL with debootstrap" >&2
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed" >&2; exit 1; }
root=$(mktemp -d /tmp/sandbar-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
timeout 600 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >&2
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$LOCAL" >&2
echo "$LOCAL"
