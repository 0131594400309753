#!/usr/bin/env bash
# Create .venv and install nbimages into it (idempotent, quick when up to date).
#   scripts/setup.sh         nbimages with its test extras
#   scripts/setup.sh none    nbimages alone (what the main job needs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
extras="${1:-test}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PY" -m venv .venv
    else
      echo "setup: '$PY -m venv' failed; install python3-venv" >&2; exit 1
    fi
  fi
fi
stamp=".venv/.nbimages-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "$extras" = none ]; then
    .venv/bin/python -m pip install -q -e .
  else
    .venv/bin/python -m pip install -q -e ".[$extras]"
  fi
  touch "$stamp"
fi
