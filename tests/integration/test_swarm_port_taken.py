"""A second daemon on a taken swarm port fails at start with a clear error."""

from __future__ import annotations

import socket
import subprocess
import sys

from test_daemon_harness import Daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_second_daemon_on_a_taken_port_fails(tmp_path):
    port = _free_port()
    addr = f"/ip4/127.0.0.1/tcp/{port}"
    first = Daemon(host_addrs=addr)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "p2pd", "-listen", f"/unix{tmp_path}/s.sock",
             "-hostAddrs", addr],
            capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert f"swarm address {addr} is already in use (another p2pd running?)" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.stop()
