"""Bad input after the Noise handshake, the per-peer connection cap, and the connection
manager's trimming, against real daemons and a real py-libp2p peer in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from test_daemon_harness import Daemon

from p2pd.cli.client import ControlClient
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
        # A broken Yamux frame after the muxer was negotiated: GO_AWAY (protocol error, 1).
        result = run_peer("badyamux", "127.0.0.1", str(tcp_port(d)), d.peer_id)
        assert result == {"handshake": True, "go_away": [1], "closed": True}
        # The daemon still serves its control clients and new, honest peers.
        peer, addrs = client(other).identify()
        client(d).connect(peer, addrs)
        assert [p.id for p in client(d).list_peers()] == [peer]


def test_connections_per_peer_are_capped():
    with Daemon() as d:  # harness default: max_conns_per_peer = 8
        proc = subprocess.Popen([sys.executable, PEER, "manyconns", "127.0.0.1",
                                 str(tcp_port(d)), d.peer_id, "12"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-2000:]
            report = json.loads(line)
            assert report["dialed"] == 12
            peers = client(d).list_peers()
            assert len(peers) == 1
            assert 1 <= len(peers[0].addrs) <= 8  # one address per live connection
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



def _closed_within(port: int, data: bytes, seconds: float) -> tuple[bool, bytes]:
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    got = b""
    try:
        if data:
            s.sendall(data)
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except ConnectionResetError:  # closed with our bytes unread: a reset is a close
        return True, got
    except (TimeoutError, OSError):
        return False, got
    finally:
        s.close()


def test_garbage_and_silence_before_the_handshake_are_bounded_on_tcp_and_ws():
    import os

    with Daemon(host_addrs="/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws") as d:
        tcp = tcp_port(d)
        ws = int(next(a for a in d.addrs if "/ws" in a).split("/tcp/")[1].split("/")[0])
        cases = [
            (tcp, os.urandom(300)),                      # garbage instead of multistream
            (tcp, b"\xff\xff\xff\xff\x0f"),              # an absurd length prefix
            (tcp, b"\x13/multistream/1.0"),              # a truncated frame, then silence
            (tcp, b""),                                  # silence
            (ws, os.urandom(300)),                       # garbage instead of HTTP
            (ws, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),  # HTTP without the upgrade
            (ws, b""),                                   # silence
        ]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(cases)) as pool:  # all at once: the daemon serves them together
            results = list(pool.map(lambda case: _closed_within(case[0], case[1], 25), cases))
            assert client(d).identify()  # and answers its control client meanwhile
        for (port, data), (closed, _) in zip(cases, results, strict=True):
            assert closed, (port, data[:20])


def test_above_the_high_water_mark_the_manager_trims_by_itself_sparing_tagged_peers():
    with Daemon("-connManager", "-connLo=2", "-connHi=3", "-connGrace=1s") as d:
        others = [Daemon() for _ in range(6)]
        try:
            ids = []
            for o in others:
                peer, addrs = client(o).identify()
                client(d).connect(peer, addrs)
                ids.append(peer)
            r = client(d).request(pb.Request(type=pb.Request.CONNMANAGER,
                                             connManager=pb.ConnManagerRequest(
                                                 type=pb.ConnManagerRequest.TAG_PEER,
                                                 peer=ids[4], tag="keep", weight=100)))
            assert r.type == pb.Response.OK
            deadline = time.monotonic() + 15
            peers = ids
            while time.monotonic() < deadline:
                peers = [p.id for p in client(d).list_peers()]
                if len(peers) <= 2:
                    break
                time.sleep(0.2)
            assert len(peers) == 2 and ids[4] in peers  # no TRIM request was sent
        finally:
            for o in others:
                o.stop()
