#!/usr/bin/env bash
# Debian's Chromium and CJK fonts for the browser tests (never `playwright install`: no network for it).
set -euo pipefail
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-browser: not root; install 'chromium fonts-noto-cjk' yourself or the browser tests are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
