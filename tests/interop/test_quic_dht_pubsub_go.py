"""The DHT and gossipsub between our daemon and the go daemon over QUIC v1 only (both
listen on /udp/N/quic-v1 alone, nothing else): provider records found both ways, and
pubsub messages delivered both ways, everything through the two control sockets.

The go daemon's DHT keeps loopback peers out of its routing table (its public filters), so
its PROVIDE answers "failed to find any peer in table" and pushes nothing; the record it
stores locally is what our FIND_PROVIDERS finds by asking it (GET_PROVIDERS over QUIC).
Ours pushes its record (ADD_PROVIDER over QUIC) and go finds it in its store."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from harness.gocontrol import DaemonPeer, GoPeer

from p2pd.blocks import CID, Codec
from p2pd.cli.client import RequestFailed
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.proto import daemon_pb2 as pb

pytestmark = [pytest.mark.interop]
QUIC_ONLY = "/ip4/127.0.0.1/udp/0/quic-v1"
TOPIC = "quic-interop"


def providers(peer: DaemonPeer, cid: bytes) -> list[bytes]:
    answers = peer.client.request_stream(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
        type=pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=1, timeout=10)))
    return [a.peer.id for a in answers if a.HasField("peer")]


def provide(peer: DaemonPeer, cid: bytes) -> None:
    peer.client.request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
        type=pb.DHTRequest.PROVIDE, cid=cid, timeout=10)))


def publish(peer: DaemonPeer, data: bytes) -> None:
    peer.client.request(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
        type=pb.PSRequest.PUBLISH, topic=TOPIC, data=data)))


class Subscription:
    """SUBSCRIBE on a control connection kept open; messages collected by a thread."""

    def __init__(self, peer: DaemonPeer) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(peer.dir / "ctl.sock"))
        self.sock.sendall(encode_message(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
            type=pb.PSRequest.SUBSCRIBE, topic=TOPIC))))
        self.decoder = FrameDecoder()
        assert decode_response(self._frame()).type == pb.Response.OK
        self.messages: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _frame(self) -> bytes:
        while (frame := self.decoder.next_frame()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("subscription closed")
            self.decoder.receive_data(data)
        return frame

    def _read(self) -> None:
        try:
            while True:
                self.messages.append(pb.PSMessage.FromString(self._frame()).data)
        except (OSError, ConnectionError):
            return

    def close(self) -> None:
        self.sock.close()


def until(check, timeout: float, every=None) -> bool:
    """Retry ``check`` (after ``every``) until it holds; an error counts as not yet (a
    routing table still empty: the go DHT adds a peer once it answered a query)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for step in ([every] if every is not None else []) + [check]:
            try:
                ok = step()
            except RequestFailed:
                ok = False
        if ok:
            return True
        time.sleep(0.3)
    return False


def test_dht_and_pubsub_between_ours_and_the_go_daemon_over_quic_only():
    try:
        go = GoPeer(QUIC_ONLY, "-dhtServer", "-pubsub")
    except Exception as exc:
        pytest.skip(f"go daemon unavailable: {exc}")
    ours = None
    subs: list[Subscription] = []
    try:
        ours = DaemonPeer([sys.executable, "-m", "p2pd"], QUIC_ONLY, "-dhtServer", "-pubsub")
        ours.connect(go.peer, go.addrs)
        [conn] = ours.client.status()["Connections"]
        assert conn["Transport"] == "quic"
        # the DHT: each finds the other's provider record (each routing table holds the other)
        mine = bytes(CID.for_block(b"provided by ours over QUIC", Codec.RAW))
        theirs = bytes(CID.for_block(b"provided by go over QUIC", Codec.RAW))
        assert until(lambda: providers(go, mine) == [ours.peer], 30,
                     every=lambda: provide(ours, mine)), "go did not find our provider record"
        assert until(lambda: providers(ours, theirs) == [go.peer], 30,
                     every=lambda: provide(go, theirs)), "we did not find go's provider record"
        # gossipsub: a message each way once both subscribed (the mesh forms on heartbeats)
        to_go, to_ours = Subscription(go), Subscription(ours)
        subs += [to_go, to_ours]
        assert until(lambda: b"from ours" in to_go.messages, 30,
                     every=lambda: publish(ours, b"from ours"))
        assert until(lambda: b"from go" in to_ours.messages, 30,
                     every=lambda: publish(go, b"from go"))
        [conn] = ours.client.status()["Connections"]
        assert conn["Transport"] == "quic"  # all of it over the one QUIC connection
    finally:
        for sub in subs:
            sub.close()
        if ours is not None:
            ours.stop()
        go.stop()
