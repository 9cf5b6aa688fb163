"""-v, -vv and -q on a real daemon: what reaches stderr at each level."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from test_daemon_harness import Daemon


def _stderr(*flags: str) -> str:
    d = Daemon(*flags)
    d.stop()
    return d.proc.stderr.read()


def test_the_default_level_says_no_info_and_v_does():
    quiet = _stderr()
    assert "INFO " not in quiet and "DEBUG " not in quiet
    verbose = _stderr("-v")
    assert "INFO p2pd.daemon: p2pd " in verbose and "(log level info)" in verbose
    assert "received signal 15, shutting down" in verbose
    assert "DEBUG " not in verbose


def test_vv_logs_debug_and_q_only_errors():
    debug = _stderr("-vv")
    assert "(log level debug)" in debug and "DEBUG " in debug
    # -q prints no ready lines either: wait for the control socket instead
    sock = Path(tempfile.mkdtemp(prefix="p2pd-q-", dir="/tmp")) / "c.sock"
    proc = subprocess.Popen([sys.executable, "-m", "p2pd", "-q", "-listen", f"/unix{sock}",
                             "-hostAddrs", "/ip4/127.0.0.1/tcp/0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert out == "" and err == ""
