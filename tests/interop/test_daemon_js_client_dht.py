"""The unmodified @libp2p/daemon-client drives our daemons' DHT (-dht): provide, find
providers, find peer, closest peers, put and get."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from test_daemon_harness import Daemon  # noqa: E402

from p2pd.cli.client import ControlClient  # noqa: E402

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None or not (HERE / "node_modules").is_dir(),
                                reason="needs node and npm ci in tests/interop")


def test_daemon_client_dht_requests():
    ds = [Daemon("-dht") for _ in range(3)]
    try:
        ids = [ControlClient.for_address(d.control, 30).identify() for d in ds]
        for d in ds[1:]:
            ControlClient.for_address(d.control, 30).connect(*ids[0])
        time.sleep(7)  # a maintenance round: the connected DHT servers enter the tables
        sk = nacl.signing.SigningKey(bytes([5]) * 32)
        proto = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
        key = b"/pk/" + bytes([0x00, len(proto)]) + proto
        env = dict(os.environ, PK_KEY=key.hex(), PK_VALUE=proto.hex())
        out = subprocess.run([NODE, str(HERE / "daemon_client_dht.mjs"), str(ds[1].sock),
                              str(ds[2].sock)], capture_output=True, text=True, timeout=120,
                             env=env, cwd=HERE)
        assert out.returncode == 0, out.stderr[-2000:]
        r = json.loads(out.stdout)
        assert r["providers"] == [r["peerA"]]
        assert r["findPeer"]["id"] == r["peerA"] and r["findPeer"]["addrs"]
        assert r["closest"] and set(r["closest"]) <= {d.peer_id for d in ds}
        assert r["got"] == proto.hex()
    finally:
        for d in ds:
            d.stop()
