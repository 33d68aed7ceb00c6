#!/usr/bin/env bash
# Make sure Debian's PostgreSQL server programs (initdb, pg_ctl) are available:
# tests/test_gradebook_db.py starts a throw-away cluster of its own to check that
# `llmcourse autograde --db URL` writes a real nbgrader gradebook to PostgreSQL.
# This script only installs; it starts no server and creates no cluster.
#
# Idempotent: does nothing when initdb and pg_ctl are on PATH or in
# /usr/lib/postgresql/<version>/bin (where Debian puts them).
# Needs root (apt-get); prints little.
set -euo pipefail

have_postgres() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        return 0
    fi
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
            return 0
        fi
    done
    return 1
}

if have_postgres; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_postgres.sh: initdb/pg_ctl are missing; install them as root: apt-get install postgresql" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null

if ! have_postgres; then
    echo "ensure_postgres.sh: apt-get finished but initdb/pg_ctl are still missing" >&2
    exit 1
fi
echo "ensure_postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1)"
