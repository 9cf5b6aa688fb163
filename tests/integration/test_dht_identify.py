"""A peer enters the Kademlia table as soon as it connects: no maintenance round, no sleep."""

from __future__ import annotations

from test_daemon_harness import Daemon
from test_dht import client, dht

from p2pd.proto import daemon_pb2 as pb


def test_closest_peers_and_find_peer_right_after_connect():
    ds = [Daemon("-dht") for _ in range(3)]
    try:
        ids = [client(d).identify() for d in ds]
        client(ds[1]).connect(*ids[0])
        client(ds[2]).connect(*ids[0])
        # at once, no sleep: ds[1]'s table has ds[0], whose table has ds[2]
        replies = dht(ds[1], type=pb.DHTRequest.GET_CLOSEST_PEERS, key=b"some key")
        closest = {r.dht.value for r in replies[1:-1]}
        assert ids[0][0] in closest
        [r] = dht(ds[1], type=pb.DHTRequest.FIND_PEER, peer=ids[2][0])
        assert r.type == pb.Response.OK and r.dht.peer.id == ids[2][0] and r.dht.peer.addrs
    finally:
        for d in ds:
            d.stop()
