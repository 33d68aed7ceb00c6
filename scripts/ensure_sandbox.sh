#!/usr/bin/env bash
# Make sure Debian's bubblewrap (/usr/bin/bwrap) is available: `llmcourse autograde`
# runs every student's kernel in a bubblewrap sandbox (src/llmcourse/grading/sandbox.py),
# and tests/test_sandbox.py checks what that sandbox stops.
#
# Idempotent: does nothing when /usr/bin/bwrap already exists.
# Needs root (apt-get); prints little.
set -euo pipefail

if [ -x /usr/bin/bwrap ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_sandbox.sh: /usr/bin/bwrap is missing; install it as root: apt-get install bubblewrap" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null

if [ ! -x /usr/bin/bwrap ]; then
    echo "ensure_sandbox.sh: apt-get finished but /usr/bin/bwrap is still missing" >&2
    exit 1
fi
echo "ensure_sandbox.sh: installed $(/usr/bin/bwrap --version 2>/dev/null || echo bubblewrap)"
