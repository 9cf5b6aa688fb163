#!/usr/bin/env bash
# Set up p2pd (venv + native build) and start a daemon with the default configuration.
# The package is installed in editable mode, so Python changes need no reinstall; pip runs
# only when the venv is new or the build inputs (pyproject.toml, setup.py, native/) changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.p2pd-build-inputs
inputs=$(cat pyproject.toml setup.py native/* | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/p2pd ] || [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
    echo "p2pd: installing into .venv (first start, or the build inputs changed)..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e . 2>&1 \
        | grep -v -e "is ignored: it is neither" -e "^ *$" >&2 || true
    [ -x .venv/bin/p2pd ] || { echo "p2pd: installation failed" >&2; exit 1; }
    echo "$inputs" > "$stamp"
fi
exec .venv/bin/p2pd "$@"
