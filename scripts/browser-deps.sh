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
# The widget manager of static HTML exports (nbconvert loads it from a CDN, out of reach in
# tests): a local copy of @jupyter-widgets/html-manager and require.js from the npm registry.
WIDGETS=.venv/share/nbimages-test
if [ ! -f "$WIDGETS/html-manager/dist/embed-amd.js" ] || [ ! -f "$WIDGETS/requirejs/require.js" ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "browser-deps: npm is missing; as root: apt-get install -y npm" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.7 >/dev/null)
  mkdir -p "$WIDGETS/html-manager" "$WIDGETS/requirejs"
  tar -xzf "$tmp"/jupyter-widgets-html-manager-1.0.15.tgz -C "$WIDGETS/html-manager" --strip-components=1
  tar -xzf "$tmp"/requirejs-2.3.7.tgz -C "$WIDGETS/requirejs" --strip-components=1
fi
echo "browser-deps: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright and jupyterlab in .venv"
