#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: install, start the real engine and registry,
# run pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ "$(id -u)" = 0 ]; then
  bash scripts/services.sh start
  bash scripts/slurm.sh start           # a single-node Slurm cluster (munge, slurmctld, slurmd, runc)
  bash scripts/browser-deps.sh          # chromium, fonts, playwright, a local widget manager
  bash scripts/binfmt.sh start || true  # arm64 through QEMU; without it the arm64 tests fail, saying why
else
  bash scripts/services.sh status || true
  bash scripts/browser-deps.sh || true  # without root the browser test says what is missing
fi
mkdir -p test-artifacts
set +e
.venv/bin/python -m pytest -ra --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
