#!/usr/bin/env bash
# Set up hrmcode on a fresh Debian 12 machine (root): system packages, a virtualenv in .venv
# with hrmcode installed editable (torch 2.13.0 CPU), and every sandbox toolchain.
#   bash scripts/setup.sh            # everything except the Docker engine
#   bash scripts/setup.sh --docker   # also install/start dockerd and build the sandbox images
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! dpkg -s bubblewrap git >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq bubblewrap git >/dev/null </dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel from the machine's local wheel dir.
# (Only grep's "nothing left to print" is ignored: a failing pip install fails the script.)
.venv/bin/pip install -q -e '.[dev,hf,ray]' 2>&1 | { grep -v -e '^WARNING: Location' -e '^$' || true; }
.venv/bin/python -c 'import hrmcode, torch; print(f"hrmcode {hrmcode.__version__}, torch {torch.__version__}")'

if [ -f scripts/setup-toolchains.sh ]; then
    PATH="$PWD/.venv/bin:$PATH" bash scripts/setup-toolchains.sh "$@"
fi
