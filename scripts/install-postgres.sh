#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the store tests (tests/pg_support.py starts a throwaway
# cluster from /usr/lib/postgresql/<version>/bin; no service is started or enabled here).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && getent passwd postgres >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-postgres: not root; install 'postgresql' yourself or the PostgreSQL tests are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: the package must not start (or fail to start) a system cluster in a container
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq postgresql >/dev/null
