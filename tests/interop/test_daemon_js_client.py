"""The unmodified npm ``@libp2p/daemon-client`` drives two of our daemons (daemon_client.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from test_daemon_harness import Daemon  # noqa: E402

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def result():
    if shutil.which("node") is None or not (HERE / "node_modules" / "@libp2p").exists():
        pytest.skip("node or tests/interop/node_modules missing (run npm ci in tests/interop)")
    with Daemon() as a, Daemon() as b:
        out = subprocess.run(
            ["node", "daemon_client.mjs", str(a.sock), str(b.sock)],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        yield a, b, json.loads(out.stdout.strip().splitlines()[-1])


def test_identify_matches_the_ready_lines(result):
    a, b, r = result
    assert r["identifyA"] == {"peerId": a.peer_id, "addrs": a.addrs}
    assert r["identifyB"] == {"peerId": b.peer_id, "addrs": b.addrs}


def test_connect_and_list_peers(result):
    _, b, r = result
    assert r["peersA"] == [b.peer_id]


def test_four_mib_echo_through_both_control_sockets_is_byte_identical(result):
    _, _, r = result
    assert r["echo"] == {"sent": 4 << 20, "received": 4 << 20, "identical": True}


def test_connmanager_requests_succeed(result):
    _, _, r = result
    assert r["tag"]["ok"] and r["untag"]["ok"] and r["trim"]["ok"]


def test_peerstore_returns_protocols_and_addresses(result):
    _, b, r = result
    assert "/ipfs/ping/1.0.0" in r["getProtocols"]["protos"]
    assert r["getPeerInfo"]["ok"] and b.addrs[0] in r["getPeerInfo"]["peerInfoAddrs"]


def test_dht_and_pubsub_get_not_enabled_errors(result):
    _, _, r = result
    assert not r["dht"]["ok"] and "DHT not enabled" in r["dht"]["error"]
    assert not r["pubsub"]["ok"] and "pubsub not enabled" in r["pubsub"]["error"]


def test_disconnect_drops_the_peer(result):
    _, _, r = result
    assert r["disconnect"]["ok"] and r["peersAfter"] == []


def test_pubsub_through_the_js_daemon_client():
    if shutil.which("node") is None or not (HERE / "node_modules" / "@libp2p").exists():
        pytest.skip("node or tests/interop/node_modules missing (run npm ci in tests/interop)")
    with Daemon("-pubsub") as a, Daemon("-pubsub") as b:
        out = subprocess.run(["node", "daemon_client_pubsub.mjs", str(a.sock), str(b.sock)],
                             cwd=HERE, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["subscribers"] == [b.peer_id]
    assert r["topicsB"] == ["js-topic"]
    assert [m["data"] for m in r["received"]] == ["one", "two", "three"]
    assert all(m["hasSig"] for m in r["received"])
