#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd (as root) when none does.
# The container tests and the image targets call this, so a fresh machine (and CI) needs nothing else.
# Where Docker cannot start, this exits non-zero with the reason; the tests then fail, never skip.
set -euo pipefail
LOG_DIR=${DOCKERD_LOG_DIR:-build}

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker-up: no Docker engine answers and dockerd is not installed; as root: apt-get install docker.io" >&2
        exit 1
    fi
    echo "docker-up: installing Debian's docker.io" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! command -v docker >/dev/null 2>&1; then
    echo "docker-up: dockerd is installed but the docker client is not on PATH" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "docker-up: dockerd is installed but not running, and starting it needs root" >&2
    exit 1
fi
mkdir -p "$LOG_DIR"
echo "docker-up: starting dockerd (log: $LOG_DIR/dockerd.log)" >&2
setsid nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "docker-up: dockerd did not answer within 30 s; the end of its log:" >&2
tail -n 20 "$LOG_DIR/dockerd.log" >&2
exit 1
