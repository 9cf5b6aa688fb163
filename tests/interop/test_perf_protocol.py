"""/perf/1.0.0 between our daemon and js-libp2p (tests/interop/perf.mjs), both directions,
and the server's bound on what one request may ask for."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None or not (HERE / "node_modules").is_dir(),
                                reason="needs node and npm ci in tests/interop")

CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
[perf]
enabled = true
max_bytes = 8388608
"""


@pytest.fixture
def daemon():
    tmp = Path(tempfile.mkdtemp(prefix="p2pd-p", dir="/tmp"))
    home = tmp / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(CONFIG)
    proc = subprocess.Popen([sys.executable, "-m", "p2pd"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, P2PD_HOME=str(home)))
    lines = [proc.stdout.readline().strip() for _ in range(4)]
    assert lines[1].startswith("Peer ID: "), lines
    yield f"{lines[3]}/p2p/{lines[1][len('Peer ID: '):]}"
    proc.terminate()
    proc.wait(timeout=15)
    shutil.rmtree(tmp, ignore_errors=True)


def js(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, str(HERE / "perf.mjs"), *args], capture_output=True, text=True,
                          timeout=120)


def test_js_client_uploads_and_downloads_through_our_server(daemon):
    for up, down in ((3_000_001, 0), (0, 5_000_003), (1_000_000, 2_000_000)):
        out = js("client", daemon, str(up), str(down))
        assert out.returncode == 0, out.stderr[-1500:]
        assert set(json.loads(out.stdout)) == {"upload_s", "download_s"}


def test_a_request_above_the_servers_bound_is_refused(daemon):
    out = js("client", daemon, "0", str(9 * 1024 * 1024))  # max_bytes is 8 MiB here
    assert out.returncode != 0  # the stream is reset: the client never gets its bytes
    # and the daemon still serves the next, honest request
    out = js("client", daemon, "1000", "1000")
    assert out.returncode == 0, out.stderr[-1500:]


def test_our_client_against_a_js_server():
    server = subprocess.Popen([NODE, str(HERE / "perf.mjs"), "server"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        addr = json.loads(server.stdout.readline())["addrs"][0]
        for up, down in ((2_000_000, 0), (0, 3_000_000)):
            out = subprocess.run([sys.executable, "-m", "bench.ourpeer", "client", addr, str(up),
                                  str(down)], capture_output=True, text=True, timeout=120,
                                 cwd=ROOT)
            assert out.returncode == 0, out.stderr[-1500:]
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["upload_s"] >= 0 and result["download_s"] >= 0
    finally:
        server.kill()
        server.wait()
