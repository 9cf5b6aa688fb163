"""An in-memory implementation of the Host port (p2pd.net.ports.Host) for unit tests.

Services (kad, Bitswap, gossip) are built over :class:`FakeHost` objects that share one
:class:`FakeNetwork`: opening a stream finds the target's handler and runs it in the
network's nursery over an in-memory byte pipe (``trio.testing.memory_stream_pair``), and
connection events reach listeners as the real host delivers them. No sockets, no
py-libp2p: what is tested is the service's own logic against the port it is written to.
"""

from __future__ import annotations

import hashlib
import struct

import trio
import trio.testing

from p2pd.net.ports import PeerSummary


def fake_peer_id(n: int) -> bytes:
    """A well-formed Ed25519 identity-multihash peer id, deterministic in ``n``."""
    return b"\x00\x24\x08\x01\x12\x20" + hashlib.sha256(b"peer %d" % n).digest()


def fake_addr(n: int) -> bytes:
    """/ip4/127.0.0.1/tcp/(10000+n) in binary form."""
    return b"\x04\x7f\x00\x00\x01\x06" + struct.pack(">H", 10000 + n)


class FakeStream:
    """One end of an in-memory stream with py-libp2p's stream surface."""

    def __init__(self, pipe, remote: bytes, protocol: str) -> None:
        self._pipe = pipe
        self.remote = remote
        self.protocol = protocol

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self._pipe.receive_some(n)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return b""

    async def write(self, data: bytes) -> None:
        await self._pipe.send_all(data)

    async def close(self) -> None:
        await self._pipe.send_eof()

    async def reset(self) -> None:
        await self._pipe.aclose()


class FakeNetwork:
    """Hosts by peer id, and the nursery their inbound handlers run in."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.hosts: dict[bytes, FakeHost] = {}
        self.streams_opened = 0

    def host(self, n: int) -> FakeHost:
        h = FakeHost(self, fake_peer_id(n), fake_addr(n))
        self.hosts[h.peer_id_bytes] = h
        return h


class FakeHost:
    """The Host port over a :class:`FakeNetwork`."""

    def __init__(self, network: FakeNetwork, peer_id: bytes, addr: bytes) -> None:
        self.network = network
        self._me = peer_id
        self.addr = addr
        self.handlers: dict[str, object] = {}
        self.connected: set[bytes] = set()
        self.known: dict[bytes, list[bytes]] = {}
        self.listeners: list = []
        self.offline = False

    @property
    def peer_id_bytes(self) -> bytes:
        return self._me

    def own_addrs(self, remote_addr: bytes | None = None) -> list[bytes]:
        return [self.addr]

    def set_stream_handler(self, protocol, handler) -> None:
        self.handlers[protocol] = handler

    def remove_stream_handler(self, protocol) -> None:
        self.handlers.pop(protocol, None)

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    # -- connections -------------------------------------------------------------------
    def _target(self, peer: bytes) -> FakeHost:
        target = self.network.hosts.get(peer)
        if target is None or target.offline or self.offline:
            raise ConnectionError(f"cannot dial {peer.hex()[:16]}")
        return target

    async def connect(self, peer, addrs, timeout) -> None:
        target = self._target(peer)
        await trio.lowlevel.checkpoint()
        if peer in self.connected:
            return
        self.connected.add(peer)
        target.connected.add(self._me)
        self.known[peer] = [target.addr]
        target.known[self._me] = [self.addr]
        for listener in list(self.listeners):
            listener.peer_connected(peer)
        for listener in list(target.listeners):
            listener.peer_connected(self._me)
        # identify, as the real swarm runs it on every connection: each side learns the
        # other's protocols
        for host, other in ((self, target), (target, self)):
            for listener in list(host.listeners):
                identified = getattr(listener, "peer_identified", None)
                if identified is not None:
                    identified(other.peer_id_bytes, list(other.handlers))

    async def disconnect(self, peer) -> None:
        await trio.lowlevel.checkpoint()
        target = self.network.hosts.get(peer)
        if peer not in self.connected:
            return
        self.connected.discard(peer)
        for listener in list(self.listeners):
            listener.peer_disconnected(peer)
        if target is not None:
            target.connected.discard(self._me)
            for listener in list(target.listeners):
                listener.peer_disconnected(self._me)

    def peers(self) -> list[PeerSummary]:
        return [PeerSummary(p, [self.network.hosts[p].addr]) for p in self.connected]

    def peer_protocols(self, peer) -> list[str]:
        target = self.network.hosts.get(peer)
        return list(target.handlers) if target is not None and peer in self.connected else []

    def peer_addrs(self, peer) -> list[bytes]:
        return list(self.known.get(peer, []))

    def live_addrs(self, peer) -> list[bytes]:
        target = self.network.hosts.get(peer)
        return [target.addr] if target is not None and peer in self.connected else []

    def knows_peer(self, peer) -> bool:
        return peer in self.known

    def remember_addrs(self, peer, addrs) -> None:
        if addrs:
            self.known.setdefault(peer, [])
            for a in addrs:
                if a not in self.known[peer]:
                    self.known[peer].append(a)

    # -- streams -----------------------------------------------------------------------
    async def open_stream(self, peer, protocols, timeout):
        await self.connect(peer, [], timeout)
        target = self._target(peer)
        for proto in protocols:
            handler = target.handlers.get(proto)
            if handler is not None:
                break
        else:
            raise ConnectionError(f"{peer.hex()[:16]} speaks none of {list(protocols)}")
        ours, theirs = trio.testing.memory_stream_pair()
        self.network.streams_opened += 1
        self.network.nursery.start_soon(handler, FakeStream(theirs, self._me, proto))
        return FakeStream(ours, peer, proto), proto, target.addr

    def stream_peer(self, stream) -> bytes:
        return stream.remote

    def stream_memory(self, stream):
        return None  # nothing counted in the fake network

    def stream_remote_addr(self, stream) -> bytes:
        target = self.network.hosts.get(stream.remote)
        return target.addr if target is not None else b""
