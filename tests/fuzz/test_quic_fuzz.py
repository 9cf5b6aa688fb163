"""The QUIC edge's datagram path on arbitrary input: the router and the connections it
hands datagrams to (a fresh listener and one with an established connection) never raise,
and the established connection still works afterwards."""

from __future__ import annotations

import nacl.signing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pd.net.quic_core import (
    DatagramRouter,
    Libp2pQuicConnection,
    QuicSettings,
    make_configuration,
)
from p2pd.net.swarm import Identity
from p2pd.peerkeys import peer_id_from_public_key

SERVER, CLIENT = ("127.0.0.1", 4001), ("127.0.0.1", 5555)
SETTINGS = QuicSettings()
CLOCK = [1.0]


def now() -> float:
    """A clock that moves (aioquic paces its sends)."""
    CLOCK[0] += 0.01
    return CLOCK[0]


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


SERVER_CONFIG = make_configuration(identity(), SETTINGS, is_client=False)
CLIENT_CONFIG = make_configuration(identity(), SETTINGS, is_client=True)


def established():
    router = DatagramRouter(SERVER_CONFIG, SETTINGS)
    client = Libp2pQuicConnection(configuration=CLIENT_CONFIG, settings=SETTINGS)
    client.connect(SERVER, now=1.0)
    server = None
    for _ in range(10):
        for data, _ in client.datagrams_to_send(now=1.0):
            routed = router.route(data, CLIENT, 1.0)
            if routed.conn is not None:
                server = routed.conn
                server.receive_datagram(data, CLIENT, now=1.0)
        for data, _ in server.datagrams_to_send(now=1.0):
            client.receive_datagram(data, SERVER, now=1.0)
    return router, client, server


def datagrams(cid: bytes):
    """Random bytes, and random bytes behind plausible headers (long, and short with a
    connection id the router knows, so they reach the connection's decryption)."""
    return st.one_of(
        st.binary(max_size=1500),
        st.binary(min_size=1200, max_size=1400).map(lambda b: b"\xc0\x00\x00\x00\x01" + b),
        st.binary(max_size=1400).map(lambda b: b"\x40" + cid + b),
        st.binary(max_size=200).map(lambda b: b"\xe0\x00\x00\x00\x01\x08" + cid + b"\x00" + b),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage_datagrams_never_raise_and_the_connection_keeps_working(data):
    CLOCK[0] = 1.0
    ROUTER, CLIENT_CONN, SERVER_CONN = established()
    batch = data.draw(st.lists(datagrams(SERVER_CONN.host_cid), min_size=1, max_size=8))
    fresh = DatagramRouter(SERVER_CONFIG, SETTINGS)
    for datagram in batch:
        for router in (ROUTER, fresh):
            routed = router.route(datagram, CLIENT, now())
            if routed.conn is not None:
                routed.conn.receive_datagram(datagram, CLIENT, now=now())
                routed.conn.datagrams_to_send(now=now())
                while routed.conn.next_event() is not None:
                    pass
    # the real connection still carries data both ways
    sid = CLIENT_CONN.get_next_available_stream_id()
    CLIENT_CONN.send_stream_data(sid, b"ping", end_stream=True)
    got = b""
    for datagram, _ in CLIENT_CONN.datagrams_to_send(now=now()):
        routed = ROUTER.route(datagram, CLIENT, now())
        assert routed.conn is SERVER_CONN
        SERVER_CONN.receive_datagram(datagram, CLIENT, now=now())
    while (event := SERVER_CONN.next_event()) is not None:
        if getattr(event, "stream_id", None) == sid:
            got += event.data
    assert got == b"ping"
