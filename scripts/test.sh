#!/usr/bin/env bash
# Set up everything (including the Docker engine and sandbox images) and run the whole test suite.
# pytest's exit code 5 (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --docker || exit 1
# A headless browser for the HTML report tests (they check the rendered pixels).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null </dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
             chromium >/dev/null </dev/null; } || exit 1
fi
export PATH="$PWD/.venv/bin:$PATH"
# The setup above installed and started a Docker engine (or failed): docker tests must now fail,
# not skip, if it does not work.
export HRMCODE_REQUIRE_DOCKER=1
# ... and setup installed hrmcode[ray]: the local Ray cluster tests must run, not skip.
export HRMCODE_REQUIRE_RAY=1
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
status=$?
if [ "$status" = 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$status"
