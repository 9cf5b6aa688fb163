"""A lying peer in a DHT network of our daemons.

The liar is a daemon whose ``/ipfs/kad/1.0.0`` streams are served by this test (through a
STREAM_HANDLER on its control socket). To every request it answers with thousands of made-up
closer peers, itself again and again, bogus provider records naming honest peers at wrong
addresses, and a record with a bad signature. The honest nodes keep it in their tables (it
answers), bound what they take from it, and still find honest providers and values.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import nacl.signing
from test_daemon_harness import Daemon

from p2pd.blocks import CID, Codec
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.kad.wire import (
    KadMessage,
    MessageType,
    PeerInfo,
    Record,
    decode_message,
)
from p2pd.kad.wire import (
    encode_message as kad_encode,
)
from p2pd.proto import daemon_pb2 as pb

KAD = "/ipfs/kad/1.0.0"


class Liar:
    def __init__(self, daemon: Daemon, honest_ids: list[bytes]) -> None:
        self.d = daemon
        self.me = b58decode(daemon.peer_id)
        import multiaddr

        self.my_addr = multiaddr.Multiaddr(daemon.addrs[0]).to_bytes()
        self.honest_ids = honest_ids
        self.queries = 0
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-l", dir="/tmp"))
        self.path = str(self.dir / "h.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(daemon.sock))
        s.sendall(encode_message(pb.Request(type=pb.Request.STREAM_HANDLER,
                                            streamHandler=pb.StreamHandlerRequest(
                                                addr=_unix_ma(self.path),
                                                proto=[KAD]))))
        dec = FrameDecoder()
        while (frame := dec.next_frame()) is None:
            dec.receive_data(s.recv(4096))
        assert decode_response(frame).type == pb.Response.OK
        s.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def lies(self, req: KadMessage) -> KadMessage:
        fake = [PeerInfo(b"\x12\x20" + os.urandom(32), [os.urandom(20)]) for _ in range(3000)]
        myself = [PeerInfo(self.me, [self.my_addr]) for _ in range(500)]
        out = KadMessage(req.type, key=req.key, closer=myself + fake)
        if req.type == MessageType.GET_PROVIDERS:
            out.providers = [PeerInfo(p, [os.urandom(8)]) for p in self.honest_ids] + fake[:500]
        if req.type == MessageType.GET_VALUE:
            out.record = Record(req.key, os.urandom(200))  # signed by nobody
        return out

    def _serve(self, conn: socket.socket) -> None:
        dec = FrameDecoder(8 << 20)
        try:
            first = True
            while True:
                frame = dec.next_frame()
                if frame is None:
                    data = conn.recv(65536)
                    if not data:
                        return
                    dec.receive_data(data)
                    continue
                if first:  # the StreamInfo header
                    first = False
                    continue
                self.queries += 1
                conn.sendall(kad_encode(self.lies(decode_message(frame))))
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()


def _unix_ma(path: str) -> bytes:
    import multiaddr

    return multiaddr.Multiaddr(f"/unix{path}").to_bytes()


def client(d: Daemon) -> ControlClient:
    return ControlClient.for_address(d.control, timeout=60)


def dht(d: Daemon, **fields) -> list:
    return client(d).request_stream(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(**fields)))


def test_lookups_complete_with_honest_peers_despite_a_liar():
    honest = [Daemon("-dht") for _ in range(5)]
    liar_daemon = Daemon()
    liar = None
    try:
        ids = [client(h).identify() for h in honest]
        liar = Liar(liar_daemon, [i for i, _ in ids])
        for h in honest[1:]:
            client(h).connect(*ids[0])
        lid = client(liar_daemon).identify()
        for h in honest:
            client(h).connect(*lid)
        # identify says the liar serves /ipfs/kad/1.0.0: it is in every honest table at
        # once, and the lookups below ask it
        cid = CID.for_block(b"provided by an honest node", Codec.RAW)
        client(honest[1]).request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.PROVIDE, cid=cid.to_bytes())))
        t0 = time.monotonic()
        found = dht(honest[4], type=pb.DHTRequest.FIND_PROVIDERS, cid=cid.to_bytes(), count=1)
        assert time.monotonic() - t0 < 30
        assert [r.peer.id for r in found] == [ids[1][0]]
        assert liar.queries > 0  # the liar was asked, and its lies did not win
        # a value put by an honest node is found, the liar's unsigned record is not taken
        sk = nacl.signing.SigningKey(hashlib.sha256(b"liar test").digest())
        proto = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
        key = b"/pk/" + bytes([0x00, len(proto)]) + proto
        client(honest[2]).request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.PUT_VALUE, key=key, value=proto)))
        got = client(honest[3]).request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.GET_VALUE, key=key)))
        assert got.dht.value == proto
        # closest-peer answers hold no made-up peers
        closest = {r.value for r in dht(honest[4], type=pb.DHTRequest.GET_CLOSEST_PEERS,
                                         key=b"anything")}
        assert closest <= {i for i, _ in ids} | {lid[0]}
        for h in honest:  # everyone still answers
            client(h).identify()
    finally:
        if liar is not None:
            liar.close()
        for d in (*honest, liar_daemon):
            d.stop()
