#!/usr/bin/env bash
# What the browser test (tests/test_browser.py) needs, idempotent and quick when present:
# Debian's chromium and fonts (as root, through apt), and in .venv Python Playwright and
# JupyterLab. Playwright's own browser download is never used (`playwright install` is not
# run): the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "browser-deps: /usr/bin/chromium is missing; as root: apt-get install -y chromium fonts-dejavu-core fonts-liberation" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-liberation >/dev/null
fi
if ! "$PY" -c "import playwright, jupyterlab, nbconvert" 2>/dev/null; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install -q "playwright>=1.45" "jupyterlab>=4" "nbconvert>=7"
fi
echo "browser-deps: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright and jupyterlab in .venv"
