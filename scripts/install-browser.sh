#!/usr/bin/env bash
# Debian's Chromium and CJK fonts for the browser tests (never `playwright install`: no network for it).
exec bash "$(dirname "$0")/apt-install.sh" browser \
    '[ -x /usr/bin/chromium ] && fc-list | grep -qi "noto sans cjk"' chromium fonts-noto-cjk
