"""The narrow ports the services (kad, gossip, Bitswap, perf) are written against.

A service never sees :class:`p2pd.node.Node` or py-libp2p: it gets a :class:`Host` (who we
are, protocol handlers, streams, connections, the peers we know, connection events) and,
for Bitswap, a :class:`ContentRouting` (provide, find providers). ``Node`` is the
production implementation of ``Host``; the DHT service is the production
``ContentRouting``; the unit tests build services over an in-memory host.

Peer ids and multiaddrs cross these ports as bytes (their binary forms). A stream is
anything with ``read() -> bytes`` (``b""`` or ``StreamEOF`` at its end), ``write(data)``,
``close()`` and ``reset()``; :mod:`p2pd.net.streams` wraps the three that may raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Stream = Any
InboundHandler = Callable[[Stream], Awaitable[None]]


class MemoryShare(Protocol):
    """A peer's share of the memory budget (:class:`p2pd.net.rcmgr.PeerMemory`): what a
    reader holds for one of its streams is reserved before it is kept."""

    def reserve(self, n: int) -> bool: ...

    def release(self, n: int) -> None: ...

    def describe(self) -> str: ...


@dataclass(slots=True)
class PeerSummary:
    """A connected peer: its id and the remote addresses of its connections."""

    peer_id: bytes
    addrs: list[bytes]


@dataclass(slots=True)
class ProviderRecord:
    """A peer that says it has a block, and where to dial it."""

    id: bytes
    addrs: list[bytes]


class ConnectionListener(Protocol):
    """Told about connections as they come and go (one call per event, never blocking):
    a peer's first connection, identify's answer (and every identify push) with the
    protocols it serves, its last connection gone. ``peer_identified`` is optional."""

    def peer_connected(self, peer: bytes) -> None: ...

    def peer_disconnected(self, peer: bytes) -> None: ...

    # def peer_identified(self, peer: bytes, protocols: list[str]) -> None: ...


class Host(Protocol):
    """What a service may ask of the host it runs on."""

    @property
    def peer_id_bytes(self) -> bytes: ...

    def own_addrs(self, remote_addr: bytes | None = None) -> list[bytes]:
        """Our addresses (binary multiaddrs): all of them for the user on this machine, or
        (``remote_addr`` given: the remote address of a connection) what that peer may
        dial (:meth:`p2pd.net.addrs.AddressManager.for_peer`)."""

    # -- handlers and streams
    def set_stream_handler(self, protocol: str, handler: InboundHandler) -> None: ...

    def remove_stream_handler(self, protocol: str) -> None: ...

    async def open_stream(self, peer: bytes, protocols: Sequence[str],
                          timeout: float | None) -> tuple[Stream, str, bytes]:
        """Open a stream (dialing if needed); ``(stream, protocol chosen, remote addr)``."""

    def stream_peer(self, stream: Stream) -> bytes:
        """The remote peer of a stream (``b""`` if unknown)."""

    def stream_remote_addr(self, stream: Stream) -> bytes:
        """The remote multiaddr of the connection a stream runs on (``b""`` if unknown)."""

    def stream_memory(self, stream: Stream) -> MemoryShare | None:
        """Where a reader counts the bytes of a stream it holds (a partial message): the
        stream's peer's share of the memory budget, or None (not counted)."""

    # -- connections and peers
    async def connect(self, peer: bytes, addrs: Sequence[bytes], timeout: float | None) -> None: ...

    async def disconnect(self, peer: bytes) -> None: ...

    def peers(self) -> list[PeerSummary]:
        """The peers we are connected to now."""

    def peer_protocols(self, peer: bytes) -> list[str]: ...

    def peer_addrs(self, peer: bytes) -> list[bytes]:
        """The addresses we know for ``peer`` (connected or not)."""

    def live_addrs(self, peer: bytes) -> list[bytes]:
        """Dialable addresses of a peer we are connected to, as the peer itself gave them
        (identify) or as we reached it; [] when not connected."""

    def knows_peer(self, peer: bytes) -> bool: ...

    def remember_addrs(self, peer: bytes, addrs: Sequence[bytes]) -> None: ...

    def add_listener(self, listener: ConnectionListener) -> None:
        """Call ``listener`` on every connection event from now on."""


class ContentRouting(Protocol):
    """Who has a block (the DHT's provider records, for Bitswap)."""

    async def find_providers(self, key: bytes, count: int = 20) -> list[ProviderRecord]: ...

    async def provide(self, key: bytes) -> int: ...
