#!/usr/bin/env bash
# The README's test command: installs everything on a fresh machine, then runs the test suites.
# torch is installed first and pinned (an unpinned torch pulls gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0"
python3 -m pip install -q --disable-pip-version-check -r requirements-dev.txt
if command -v node >/dev/null 2>&1 && [ -d web/tests ]; then
  node --test web/tests/
fi
python3 -m pytest -q "$@"
