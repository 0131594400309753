#!/usr/bin/env bash
# The main job on the embedded default (no Docker needed): install nbimages into .venv,
# build an image from notebook cells, show its layers, write handout/demo.tar.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh none
if [ ! -x /bin/busybox ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Optional: a shell inside the demo image so `docker run` has something to run.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null || true
fi
exec .venv/bin/python scripts/demo.py "${1:-handout}"
