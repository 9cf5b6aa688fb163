#!/usr/bin/env bash
# Set up everything the test suite needs (venv, native build, npm packages) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
exec .venv/bin/python -m pytest -q "$@"
