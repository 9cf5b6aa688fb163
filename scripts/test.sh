#!/usr/bin/env bash
# Set up everything the test suite needs (venv, native build, npm packages) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
# The network lab (tests/lab) needs nft, tc/ip and miniupnpd. As root, install what is missing
# from Debian (miniupnpd-nftables ships no service and no maintainer scripts: nothing starts on
# the host; the `miniupnpd` package, which would, is not installed). Without them the lab
# tests skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && ! { command -v nft && command -v tc && command -v ip && command -v miniupnpd; } >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends nftables iproute2 miniupnpd-nftables; } >/dev/null \
    || echo "test.sh: could not install nftables/iproute2/miniupnpd-nftables; lab tests will skip" >&2
fi
# The browser test (tests/integration/test_http_browser.py) drives Debian's headless Chromium
# and fetches with curl; without them it skips.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && ! { command -v chromium && command -v curl; } >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium curl fonts-dejavu-core; } >/dev/null \
    || echo "test.sh: could not install chromium/curl; the browser test will skip" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
