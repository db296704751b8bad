#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the store tests (tests/pg_support.py starts a throwaway
# cluster from /usr/lib/postgresql/<version>/bin; no service is started or enabled here).
exec bash "$(dirname "$0")/apt-install.sh" PostgreSQL \
    'ls /usr/lib/postgresql/*/bin/initdb && getent passwd postgres' postgresql
