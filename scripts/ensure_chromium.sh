#!/usr/bin/env bash
# Make sure Debian's Chromium is available for the browser tests of the book
# (tests/test_book.py). Playwright's own browser download is never used: the
# tests drive /usr/bin/chromium through Playwright's Python API.
#
# Idempotent: does nothing when /usr/bin/chromium already exists.
# Needs root (apt-get); prints little.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium.sh: /usr/bin/chromium is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x /usr/bin/chromium ]; then
    echo "ensure_chromium.sh: apt-get finished but /usr/bin/chromium is still missing" >&2
    exit 1
fi
echo "ensure_chromium.sh: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
