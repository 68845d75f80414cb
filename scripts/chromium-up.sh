#!/usr/bin/env bash
# Make sure a headless browser is installed: Debian's chromium, from apt, when none is on PATH. The dashboard's
# end-to-end test calls this, so a fresh machine (and CI) needs nothing else; it prints the browser's path.
# Where it cannot be installed, this exits non-zero with the reason; the test then fails, never skips.
set -euo pipefail

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        exit 0
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "chromium-up: no chromium on PATH, and installing it needs root: apt-get install chromium" >&2
    exit 1
fi
echo "chromium-up: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update -qq  # a fresh machine has no package lists yet
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v chromium
