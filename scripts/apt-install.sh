#!/usr/bin/env bash
# Install Debian packages for a group of tests unless CHECK already succeeds; used by
# install-browser.sh and install-postgres.sh.
#   bash scripts/apt-install.sh NAME CHECK PACKAGE...
# CHECK is a shell command that succeeds when the packages are in place. Not root: a message
# saying which tests are skipped, exit 0. No service is started (policy-rc.d), so a package
# with a daemon (postgresql) cannot start, or fail to start, a system instance in a container.
set -euo pipefail
name=$1 check=$2
shift 2
if bash -c "$check" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "$name: not root; install '$*' yourself or the $name tests are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq "$@" >/dev/null
