"""FIND_PEER: a connected peer is answered from its own word with no query; anyone else
is looked up, whatever the peer store remembers (real daemons on 127.0.0.1)."""

from __future__ import annotations

import time

from test_daemon_harness import Daemon
from test_dht import client, dht

from p2pd.identity import encode_private_key, new_ed25519
from p2pd.proto import daemon_pb2 as pb

KAD = "/ipfs/kad/1.0.0"


def kad_bytes(d: Daemon) -> tuple[int, int]:
    """Bytes the daemon sent and received on /ipfs/kad/1.0.0 streams since it started."""
    entry = client(d).bandwidth()["Protocols"].get(KAD, {})
    return entry.get("TotalOut", 0), entry.get("TotalIn", 0)


def find_peer(d: Daemon, peer: bytes) -> pb.Response:
    [r] = dht(d, type=pb.DHTRequest.FIND_PEER, peer=peer)
    return r


def test_a_connected_peer_is_answered_from_its_identify_without_a_kad_request():
    a, b, c = Daemon("-dht"), Daemon("-dht"), Daemon()
    try:
        b_id, b_addrs = client(b).identify()
        client(a).connect(b_id, b_addrs)
        a_before, b_before = kad_bytes(a), kad_bytes(b)
        r = find_peer(a, b_id)
        assert r.type == pb.Response.OK, r.error.msg
        assert r.dht.peer.id == b_id
        answer = list(r.dht.peer.addrs)
        assert answer and set(answer) <= set(b_addrs)  # where b listens, nothing else
        # no kad stream was opened on either side for the answer
        assert kad_bytes(a) == a_before and kad_bytes(b) == b_before
        # the answer is something a dial can use: a third daemon connects with it alone
        client(c).connect(b_id, answer)
        assert b_id in {p.id for p in client(c).list_peers()}
    finally:
        for d in (a, b, c):
            d.stop()


def test_a_peer_we_are_not_connected_to_is_found_by_a_lookup():
    a, hub, far = Daemon("-dht"), Daemon("-dht"), Daemon("-dht")
    try:
        hub_id, hub_addrs = client(hub).identify()
        far_id, far_addrs = client(far).identify()
        client(a).connect(hub_id, hub_addrs)
        client(far).connect(hub_id, hub_addrs)
        assert far_id not in {p.id for p in client(a).list_peers()}
        sent_before = kad_bytes(a)[0]
        r = find_peer(a, far_id)
        assert r.type == pb.Response.OK, r.error.msg
        assert r.dht.peer.id == far_id and set(r.dht.peer.addrs) & set(far_addrs)
        assert kad_bytes(a)[0] > sent_before  # asked the network (the hub)
    finally:
        for d in (a, hub, far):
            d.stop()


def test_a_peer_that_moved_is_looked_up_not_answered_from_its_old_addresses(tmp_path):
    # b restarts with its identity on another port (a home machine after a router reboot):
    # a's peer store still holds the old address; the hub knows the new one
    key = tmp_path / "b.key"
    key.write_bytes(encode_private_key(new_ed25519()))
    a, hub = Daemon("-dht"), Daemon("-dht")
    b = Daemon("-dht", "-id", str(key))
    try:
        hub_id, hub_addrs = client(hub).identify()
        b_id, old_addrs = client(b).identify()
        client(a).connect(hub_id, hub_addrs)
        client(a).connect(b_id, old_addrs)
        b.stop()
        deadline = time.monotonic() + 10
        while b_id in {p.id for p in client(a).list_peers()}:
            assert time.monotonic() < deadline, "a never saw b's connection end"
            time.sleep(0.05)
        b = Daemon("-dht", "-id", str(key))
        _, new_addrs = client(b).identify()
        assert not set(new_addrs) & set(old_addrs)
        client(b).connect(hub_id, hub_addrs)
        r = find_peer(a, b_id)
        assert r.type == pb.Response.OK, r.error.msg
        answer = set(r.dht.peer.addrs)
        assert answer & set(new_addrs) and not answer & set(old_addrs), (answer, new_addrs)
    finally:
        for d in (a, hub, b):
            d.stop()
