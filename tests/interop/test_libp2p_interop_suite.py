"""The official libp2p daemon interop suite (@libp2p/interop, pinned in package.json) with
our daemon in the suite's "go" role (started with the go daemon's flags) and js-libp2p
behind @libp2p/daemon-server in its "js" role: connect, echo streams over Noise and TLS with
Yamux and mplex and every key type, circuit relay v2 with ours as the relay, the dialer
and the listener, the DHT (peer routing, content routing and fetching) and floodsub.
The suite's plaintext cases are left out: p2pd never accepts plaintext."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.interop]


@pytest.mark.parametrize("suite", ["connect", "streams", "relay", "dht", "pubsub"])
def test_the_libp2p_interop_suite_passes_with_our_daemon(suite):
    if shutil.which("node") is None or not (HERE / "node_modules" / "@libp2p" / "interop").exists():
        pytest.skip("node or tests/interop/node_modules missing (run npm ci in tests/interop)")
    env = {**os.environ, "P2PD_PYTHON": sys.executable, "SUITES": suite}
    env.pop("GREP", None)
    done = subprocess.run(["node", str(HERE / "interop_suite.mjs")], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert " passing" in out and " failing" not in out, out[-3000:]
