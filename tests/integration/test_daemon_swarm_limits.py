"""Bad input after the Noise handshake, the per-peer connection cap, and the connection
manager's trimming, against real daemons and a real py-libp2p peer in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from test_daemon_harness import Daemon

from p2pd.control.client import ControlClient
from p2pd.proto import daemon_pb2 as pb

PEER = str(Path(__file__).with_name("libp2p_peer.py"))


def tcp_port(d: Daemon) -> int:
    return int(next(a for a in d.addrs if "/ws" not in a).rsplit("/", 1)[1])


def client(d: Daemon) -> ControlClient:
    return ControlClient.for_address(d.control, timeout=15)


def run_peer(*args: str, timeout: float = 90) -> dict:
    out = subprocess.run([sys.executable, PEER, *args], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_garbage_after_the_noise_handshake_closes_that_connection_only():
    with Daemon() as d, Daemon() as other:
        for mode in ("garbage", "badframe"):
            result = run_peer(mode, "127.0.0.1", str(tcp_port(d)), d.peer_id)
            assert result == {"handshake": True, "closed": True}, mode
        # The daemon still serves its control clients and new, honest peers.
        peer, addrs = client(other).identify()
        client(d).connect(peer, addrs)
        assert [p.id for p in client(d).list_peers()] == [peer]


def test_connections_per_peer_are_capped():
    with Daemon() as d:  # harness default: max_conns_per_peer = 3
        proc = subprocess.Popen([sys.executable, PEER, "manyconns", "127.0.0.1",
                                 str(tcp_port(d)), d.peer_id, "6"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-2000:]
            report = json.loads(line)
            assert report["dialed"] == 6
            peers = client(d).list_peers()
            assert len(peers) == 1
            assert 1 <= len(peers[0].addrs) <= 3  # one address per live connection
        finally:
            proc.kill()
            proc.wait()


def test_trim_closes_the_least_valuable_peers_down_to_the_low_water_mark():
    with Daemon("-connManager", "-connLo=2", "-connHi=3") as d:
        others = [Daemon() for _ in range(5)]
        try:
            ids = []
            for o in others:
                peer, addrs = client(o).identify()
                client(d).connect(peer, addrs)
                ids.append(peer)
            assert len(client(d).list_peers()) == 5

            def tag(peer: bytes, weight: int) -> None:
                r = client(d).request(pb.Request(type=pb.Request.CONNMANAGER,
                                                 connManager=pb.ConnManagerRequest(
                                                     type=pb.ConnManagerRequest.TAG_PEER,
                                                     peer=peer, tag="keep", weight=weight)))
                assert r.type == pb.Response.OK, r.error.msg

            tag(ids[3], 100)
            tag(ids[1], 50)
            r = client(d).request(pb.Request(type=pb.Request.CONNMANAGER,
                                             connManager=pb.ConnManagerRequest(
                                                 type=pb.ConnManagerRequest.TRIM)))
            assert r.type == pb.Response.OK, r.error.msg
            deadline = time.monotonic() + 10
            while len(client(d).list_peers()) > 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {p.id for p in client(d).list_peers()} == {ids[3], ids[1]}
        finally:
            for o in others:
                o.stop()

