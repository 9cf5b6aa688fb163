"""QUIC v1 for libp2p, sans-IO (p2pd.net.quic_core): addresses, the datagram router of one
UDP socket, the libp2p certificate check after a handshake run between two aioquic
connections in memory, and receive credit that follows what the application read."""

from __future__ import annotations

import os
import socket

import nacl.signing
import pytest
from aioquic.buffer import Buffer
from aioquic.quic import events as quic_events
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header

from p2pd.net.quic_core import (
    MIN_INITIAL,
    DatagramRouter,
    Libp2pQuicConnection,
    QuicSettings,
    ResetTokens,
    check_peer_certificate,
    gso_batches,
    make_configuration,
    quic_multiaddr,
    quic_target,
)
from p2pd.net.rcmgr import Limits, ResourceManager
from p2pd.net.swarm import Identity
from p2pd.net.tlscert import TlsCertError
from p2pd.peerkeys import peer_id_from_public_key

SERVER_ADDR = ("127.0.0.1", 4001)
CLIENT_ADDR = ("127.0.0.1", 5555)


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


def test_quic_addresses_round_trip_and_other_addresses_are_not_quic():
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        addr = quic_multiaddr(host, 4001)
        assert quic_target(addr) == (host, 4001, family)
        peer = identity().peer_id
        with_peer = addr + b"\xa5\x03" + bytes([len(peer)]) + peer
        assert quic_target(with_peer) == (host, 4001, family)
    v4 = quic_multiaddr("1.2.3.4", 1)
    assert v4.hex() == "04010203049102" + "0001" + "cd03"  # /udp/1/quic-v1 (0x01cd)
    assert quic_target(v4[:-2] + b"\xcc\x03") is None  # draft-29 /quic: not ours
    assert quic_target(b"\x04\x7f\x00\x00\x01\x06\x0f\xa1") is None  # tcp
    assert quic_target(v4 + b"\xdd\x03") is None  # something after quic-v1
    assert quic_target(b"\xff\xff\xff") is None
    assert quic_target(v4[:5]) is None


class Pair:
    """A client and a server connection wired through a server-side router, in memory."""

    def __init__(self, *, client_identity=None, server_identity=None,
                 settings: QuicSettings | None = None) -> None:
        self.settings = settings or QuicSettings()
        self.client_id = client_identity or identity()
        self.server_id = server_identity or identity()
        self.router = DatagramRouter(
            make_configuration(self.server_id, self.settings, is_client=False), self.settings)
        self.client = Libp2pQuicConnection(
            configuration=make_configuration(self.client_id, self.settings, is_client=True),
            settings=self.settings)
        self.server: Libp2pQuicConnection | None = None
        self.now = 1.0
        self.client.connect(SERVER_ADDR, now=self.now)

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            moved = False
            for data, _ in self.client.datagrams_to_send(now=self.now):
                moved = True
                routed = self.router.route(data, CLIENT_ADDR, self.now)
                if routed.conn is not None:
                    self.server = routed.conn
                    routed.conn.receive_datagram(data, CLIENT_ADDR, now=self.now)
            if self.server is not None:
                for data, _ in self.server.datagrams_to_send(now=self.now):
                    moved = True
                    self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
            self.now += 0.001
            if not moved:
                return

    @staticmethod
    def events(conn) -> list:
        out = []
        while (e := conn.next_event()) is not None:
            out.append(e)
        return out


def test_handshake_is_mutual_and_each_side_learns_the_others_peer_id():
    pair = Pair()
    pair.pump()
    assert "HandshakeCompleted" in {type(e).__name__ for e in pair.events(pair.client)}
    assert "HandshakeCompleted" in {type(e).__name__ for e in pair.events(pair.server)}
    peer, key = check_peer_certificate(pair.client, pair.server_id.peer_id)
    assert (peer, key) == (pair.server_id.peer_id, pair.server_id.public_key)
    # the server asked for and got the client's libp2p certificate
    peer, key = check_peer_certificate(pair.server, None)
    assert (peer, key) == (pair.client_id.peer_id, pair.client_id.public_key)
    assert pair.server.tls.alpn_negotiated == "libp2p"


def test_a_dialed_peer_id_that_does_not_match_is_refused():
    pair = Pair()
    pair.pump()
    with pytest.raises(TlsCertError):
        check_peer_certificate(pair.client, identity().peer_id)


def test_router_drops_garbage_short_packets_and_unknown_ids_without_an_answer():
    settings = QuicSettings()
    router = DatagramRouter(make_configuration(identity(), settings, is_client=False), settings)
    for junk in (b"", b"\x00", b"\xff" * 3, b"\x40" + bytes(10), b"\xc0" * 1300):
        routed = router.route(junk, CLIENT_ADDR, 1.0)
        assert routed.conn is None and not routed.replies
    assert router.dropped >= 3 and not router.conns


def test_a_short_packet_for_a_forgotten_connection_gets_a_smaller_stateless_reset():
    settings = QuicSettings()
    router = DatagramRouter(make_configuration(identity(), settings, is_client=False), settings)
    dcid = b"\x33" * 8
    for size in (100, 30):
        [reset] = router.route(b"\x40" + dcid + bytes(size - 9), CLIENT_ADDR, 1.0).replies
        assert len(reset) < size and len(reset) >= 21 and reset[0] & 0xC0 == 0x40
        assert reset[-16:] == router.reset_tokens.token(dcid)
    assert router.route(b"\x40" + dcid + bytes(12), CLIENT_ADDR, 1.0).replies == []  # 21
    for _ in range(200):  # at most 100 a second
        router.route(b"\x40" + dcid + bytes(50), CLIENT_ADDR, 2.0)
    assert router.resets_sent == 2 + 100


def test_the_peer_recognizes_our_reset_by_the_token_it_was_given():
    pair = Pair()
    pair.pump()
    server_cid = pair.server.host_cid
    token = pair.router.reset_tokens.token(server_cid)
    assert pair.client._peer_cid.stateless_reset_token == token  # from transport parameters
    # the client's socket: its router knows the client connection
    client_router = DatagramRouter(None, pair.settings)
    client_router.add_cid(pair.client.host_cid, pair.client)
    other = ResetTokens().reset_for(server_cid, 60)  # another process's key
    assert not client_router.route(other, SERVER_ADDR, 5.0).reset
    reset = pair.router.reset_tokens.reset_for(server_cid, 60)
    assert not client_router.route(reset[:-1] + bytes([reset[-1] ^ 1]), SERVER_ADDR, 5.0).reset
    routed = client_router.route(reset, SERVER_ADDR, 5.0)
    assert routed.reset and routed.conn is pair.client and not routed.replies
    assert pair.client not in client_router.conns.values()  # forgotten
    # the connection ids issued later carry derived tokens too
    issued = [c for c in pair.server._host_cids if c.sequence_number > 0]
    assert issued and all(c.stateless_reset_token == pair.router.reset_tokens.token(c.cid)
                          for c in issued)


@pytest.mark.parametrize("key_type", ["ed25519", "secp256k1", "rsa", "ecdsa"])
def test_a_router_keyed_by_the_host_key_makes_the_same_tokens_after_a_restart(key_type):
    """A restarted node (same key, new process) still resets the connections it forgot."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from p2pd.identity import PrivateKeyRecord, new_ed25519, to_key_pair
    from p2pd.keys import ECDSA, RSA, SECP256K1
    from p2pd.net.swarmhost import identity_of

    der = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, \
        serialization.NoEncryption()
    records = {
        "ed25519": new_ed25519,
        "secp256k1": lambda: PrivateKeyRecord(SECP256K1, os.urandom(31) + b"\x01"),
        "rsa": lambda: PrivateKeyRecord(RSA, rsa.generate_private_key(65537, 2048)
                                        .private_bytes(*der)),
        "ecdsa": lambda: PrivateKeyRecord(ECDSA, ec.generate_private_key(ec.SECP256R1())
                                          .private_bytes(*der)),
    }
    record, other = records[key_type](), records[key_type]()
    before, after = identity_of(to_key_pair(record)), identity_of(to_key_pair(record))
    assert before.reset_key == after.reset_key and len(before.reset_key) == 32
    assert identity_of(to_key_pair(other)).reset_key != before.reset_key
    settings = QuicSettings()
    cid = os.urandom(8)
    first, restarted = (DatagramRouter(None, settings, reset_key=i.reset_key)
                        for i in (before, after))
    assert first.reset_tokens.token(cid) == restarted.reset_tokens.token(cid)
    assert DatagramRouter(None, settings).reset_tokens.token(cid) != \
        first.reset_tokens.token(cid)


def test_router_answers_an_unknown_version_with_version_negotiation_only_when_padded():
    settings = QuicSettings()
    router = DatagramRouter(make_configuration(identity(), settings, is_client=False), settings)
    dcid, scid = b"\x11" * 8, b"\x22" * 8
    long_header = (b"\xc0" + (0x0A0A0A0A).to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid)
    small = router.route(long_header + bytes(50), CLIENT_ADDR, 1.0)
    assert small.conn is None and not small.replies  # no amplification for small datagrams
    padded = router.route(long_header + bytes(MIN_INITIAL), CLIENT_ADDR, 1.0)
    [reply] = padded.replies
    header = pull_quic_header(Buffer(data=reply), host_cid_length=8)
    assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION
    assert header.destination_cid == scid and 0x00000001 in header.supported_versions
    assert padded.conn is None


def test_client_sockets_never_start_server_connections():
    pair = Pair()
    client_only = DatagramRouter(None, pair.settings)
    [(initial, _)] = pair.client.datagrams_to_send(now=1.0)
    assert client_only.route(initial, CLIENT_ADDR, 1.0).conn is None


def test_handshakes_in_progress_are_bounded_and_retry_asks_for_address_validation():
    settings = QuicSettings(max_pending=3, retry_above=2)
    server_config = make_configuration(identity(), settings, is_client=False)
    router = DatagramRouter(server_config, settings)
    client_config = make_configuration(identity(), settings, is_client=True)

    def initial() -> tuple[Libp2pQuicConnection, bytes]:
        c = Libp2pQuicConnection(configuration=client_config, settings=settings)
        c.connect(SERVER_ADDR, now=1.0)
        [(data, _)] = c.datagrams_to_send(now=1.0)[:1]
        return c, data

    for _ in range(2):
        _, data = initial()
        routed = router.route(data, CLIENT_ADDR, 1.0)
        assert routed.new and routed.conn is not None
    assert len(router.pending) == 2
    # above retry_above: a Retry, no state kept
    client, data = initial()
    routed = router.route(data, CLIENT_ADDR, 1.0)
    assert routed.conn is None and len(routed.replies) == 1
    assert len(router.pending) == 2
    # a token used from another address is refused
    other, data = initial()
    reply = router.route(data, CLIENT_ADDR, 1.0).replies[0]
    other.receive_datagram(reply, SERVER_ADDR, now=1.0)
    retried = [d for d, _ in other.datagrams_to_send(now=1.0)]
    assert router.route(retried[0], ("127.0.0.1", 9999), 1.0).conn is None
    # the client that answers the Retry from its address gets its connection
    client.receive_datagram(routed.replies[0], SERVER_ADDR, now=1.0)
    retried = [d for d, _ in client.datagrams_to_send(now=1.0)]
    routed = router.route(retried[0], CLIENT_ADDR, 1.0)
    assert routed.new and len(router.pending) == 3
    # at max_pending: dropped; an established one frees its slot
    _, data = initial()
    assert router.route(data, CLIENT_ADDR, 1.0).conn is None
    router.established(next(iter(router.pending)))
    assert len(router.pending) == 2


def test_receive_credit_follows_what_the_application_read():
    window = 64 * 1024
    settings = QuicSettings(stream_window=window, connection_window=4 * window)
    pair = Pair(settings=settings)
    pair.pump()
    pair.events(pair.client), pair.events(pair.server)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, bytes(10 * window))
    pair.pump(200)
    got = sum(len(e.data) for e in pair.events(pair.server) if hasattr(e, "data"))
    assert got == window  # nobody read: the peer stops at the window
    pair.server.consumed(sid, window)
    assert pair.server.credit_due(sid)
    pair.pump(200)
    got = sum(len(e.data) for e in pair.events(pair.server) if hasattr(e, "data"))
    assert got == window  # one more window after reading one


def test_larger_datagrams_only_up_to_what_the_peer_takes():
    pair = Pair()
    pair.pump()
    assert pair.client.peer_max_udp_payload == 65527  # aioquic's peer says nothing: the default
    pair.client.use_loopback_path(16384)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, bytes(200_000))
    sizes = [len(d) for d, _ in pair.client.datagrams_to_send(now=pair.now)]
    assert max(sizes) > 1350 and max(sizes) <= 16384
    quic_go_like = Pair()
    quic_go_like.pump()
    quic_go_like.client.peer_max_udp_payload = 1452  # what quic-go announces
    quic_go_like.client.use_loopback_path(16384)
    sid = quic_go_like.client.get_next_available_stream_id()
    quic_go_like.client.send_stream_data(sid, bytes(200_000))
    sizes = [len(d) for d, _ in quic_go_like.client.datagrams_to_send(now=quic_go_like.now)]
    assert max(sizes) <= 1452


def test_a_loopback_path_is_not_paced_but_stays_within_the_window():
    def burst(loopback: bool) -> tuple[int, int]:
        pair = Pair()
        pair.pump()
        if loopback:
            pair.client.use_loopback_path(0)
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_stream_data(sid, bytes(1 << 20))
        pair.pump(40)  # acknowledgements: a window, an RTT and a pacing rate
        pair.client.send_stream_data(sid, bytes(1 << 20))
        sizes = [len(d) for d, _ in pair.client.datagrams_to_send(now=pair.now)]
        return len(sizes), pair.client._loss._cc.congestion_window // 1350

    paced, _ = burst(False)
    unpaced, window = burst(True)
    # paced: aioquic's bucket (at most 16 packets, plus the one that empties it)
    assert paced <= 17 and 17 * 10 < unpaced <= window + 1


def test_segmentation_batches_keep_order_and_the_kernels_rules():
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    d = [(b"x" * 1200, a)] * 3 + [(b"y" * 500, a), (b"z" * 1200, a), (b"w" * 1200, b)]
    batches = gso_batches(d)
    # a run of equal sizes, closed by a shorter one; a longer one or another peer starts anew
    assert [(len(p), addr, seg) for p, addr, seg in batches] == [
        (4, a, 1200), (1, a, 1200), (1, b, 1200)]
    assert b"".join(b"".join(p) for p, _, _ in batches) == b"".join(x for x, _ in d)
    many = gso_batches([(bytes(1000), a)] * 200)
    assert [len(p) for p, _, _ in many] == [64, 64, 64, 8]  # at most 64 segments
    big = gso_batches([(bytes(16384), a)] * 5)
    assert [len(p) for p, _, _ in big] == [3, 2]  # at most ~64 KiB a call
    assert gso_batches([]) == []


def test_hole_punch_packets_are_dropped_without_an_answer():
    from p2pd.net.quic import _punch_packet

    settings = QuicSettings()
    router = DatagramRouter(make_configuration(identity(), settings, is_client=False), settings)
    for _ in range(200):
        routed = router.route(_punch_packet(), CLIENT_ADDR, 1.0)
        assert routed.conn is None and not routed.replies  # no reset, no VN, no state
    assert router.resets_sent == 0 and not router.conns


def _authenticated(conn: Libp2pQuicConnection, payload: bytes) -> bytes:
    """A 1-RTT packet from ``conn`` with ``payload`` as its frames, properly protected (what
    a peer with broken framing sends: it passes decryption and reaches the frame parser)."""
    from aioquic.tls import Epoch

    crypto = conn._cryptos[Epoch.ONE_RTT]
    pn = conn._packet_number
    conn._packet_number += 1
    header = bytes([0x40 | (crypto.send.key_phase << 2) | 0x03]) + conn._peer_cid.cid + \
        pn.to_bytes(4, "big")
    return crypto.encrypt_packet(header, payload.ljust(24, b"\x00"), pn)  # PADDING after


@pytest.mark.parametrize("frames, error", [
    (b"\x0a\x00\x43\xe8" + b"x" * 10, 0x07),  # STREAM with length 1000, 10 bytes there
    (b"\x40\x99", 0x07),  # a frame type nobody defined
    (b"\x0e\x00" + b"\xc0\x00\x00\x01\x00\x00\x00\x00" + b"\x05" + b"hello", 0x03),  # at 4 TiB
    (b"\x02\x05\x00\x00\x09", 0x07),  # ACK: its first range reaches below packet 0
], ids=["truncated-stream", "unknown-type", "beyond-flow-control", "bad-ack"])
def test_malformed_frames_in_an_authenticated_packet_close_with_the_right_error(frames, error):
    pair = Pair()
    pair.pump()
    pair.events(pair.client), pair.events(pair.server)
    pair.server.receive_datagram(_authenticated(pair.client, frames), CLIENT_ADDR, now=pair.now)
    close = pair.server._close_event
    assert close is not None and close.error_code == error, close
    pair.pump()  # the CONNECTION_CLOSE reaches the peer with the code
    told = pair.client._close_event
    assert told is not None and told.error_code == error, told


def test_the_resource_manager_admits_initials_before_any_handshake_work():
    """An Initial takes a pending slot and passes the per-IP rate before a connection is
    made; refused ones get CONNECTION_REFUSED without state; once unvalidated clients hold
    half the slots, new ones must answer a Retry (no slot meanwhile) and take one then."""
    settings = QuicSettings()
    rm = ResourceManager(Limits(max_pending_inbound=8, inbound_burst=3, inbound_rate=0.001,
                                exempt_loopback=False))
    router = DatagramRouter(make_configuration(identity(), settings, is_client=False),
                            settings, admission=rm)
    client_config = make_configuration(identity(), settings, is_client=True)

    def initial(addr=CLIENT_ADDR) -> tuple[Libp2pQuicConnection, bytes]:
        c = Libp2pQuicConnection(configuration=client_config, settings=settings)
        c.connect(SERVER_ADDR, now=1.0)
        [(data, _)] = c.datagrams_to_send(now=1.0)[:1]
        return c, data

    scopes = []
    for _ in range(3):  # the bucket's burst
        _, data = initial()
        routed = router.route(data, CLIENT_ADDR, 1.0)
        assert routed.new and routed.scope is not None
        scopes.append(routed.scope)
    assert (rm.pending, rm.pending_unvalidated) == (3, 3)
    # the fourth from that IP: refused before a connection exists, and told so
    client, data = initial()
    routed = router.route(data, CLIENT_ADDR, 1.0)
    assert routed.conn is None and len(routed.replies) == 1
    assert len(routed.replies[0]) < len(data)
    assert rm.refused["inbound_rate"] == 1 and router.refused == 1
    client.receive_datagram(routed.replies[0], SERVER_ADDR, now=1.0)
    ended = client._close_event  # draining: aioquic reports it after 3 PTO
    assert isinstance(ended, quic_events.ConnectionTerminated)
    assert ended.error_code == QuicErrorCode.CONNECTION_REFUSED
    assert "inbound_rate" in ended.reason_phrase
    # unvalidated clients now hold half the slots: the next one (another IP) gets a Retry
    other = ("127.0.0.2", 5555)
    _, data = initial(other)
    router.route(data, other, 1.0)
    assert rm.needs_validation() and rm.pending_unvalidated == 4
    client, data = initial(other)
    routed = router.route(data, other, 1.0)
    assert routed.conn is None and router.retries_sent == 1 and rm.pending == 4
    client.receive_datagram(routed.replies[0], SERVER_ADDR, now=1.0)
    [answer, *_] = [d for d, _ in client.datagrams_to_send(now=1.0)]
    routed = router.route(answer, other, 1.0)
    assert routed.new and (rm.pending, rm.pending_unvalidated) == (5, 4)
    routed.scope.set_peer(b"peer")  # the handshake ended: its pending slot is free
    assert rm.pending == 4 and rm.peer_conns == {b"peer": 1}
    for scope in scopes:  # failed / timed out: all given back
        scope.done()
    assert rm.pending_unvalidated == 1 and not rm.needs_validation()
