"""The libp2p host, built on py-libp2p with a security policy of our own.

py-libp2p's ``new_host()`` offers Noise, TLS, SECIO *and plaintext* by default, so any
peer could talk to it unencrypted and unauthenticated. We pass an explicit security
table holding only Noise (``/noise``): a peer proposing ``/plaintext/2.0.0`` or
``/secio/1.0.0`` gets multistream ``na`` and, having nothing else, is disconnected.
Muxers are Yamux first, mplex as the fallback older peers may need.

The transports (TCP, WebSocket) follow from the listen addresses. Identify (with push)
and ping are py-libp2p's; we only set the agent version it reports.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from .. import __version__
from ..errors import ConfigError

AGENT_VERSION = f"p2pd/{__version__}"
NOISE_PROTOCOL = "/noise"
YAMUX_PROTOCOL = "/yamux/1.0.0"
MPLEX_PROTOCOL = "/mplex/6.7.0"
PING_PROTOCOL = "/ipfs/ping/1.0.0"
IDENTIFY_PROTOCOL = "/ipfs/id/1.0.0"


@dataclass(slots=True)
class HostOptions:
    """What the host needs beyond its key: addresses and connection limits."""

    listen_addrs: Sequence[str]
    announce_addrs: Sequence[str] = ()
    conn_low: int = 256
    conn_high: int = 512
    conn_grace: float = 120.0
    max_conns_per_peer: int = 8
    max_streams_per_conn: int = 512
    dial_timeout: float = 10.0


def parse_swarm_addr(text: str):
    """A swarm multiaddr, or :class:`ConfigError` naming the bad one."""
    import multiaddr

    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:
        raise ConfigError(f"invalid swarm address {text!r}: {exc}") from None


def separate_ephemeral_ports(addrs: Sequence[str]) -> list[str]:
    """Give every TCP-based address after the first on ``(host, port 0)`` a free port of its own.

    py-libp2p puts a TCP and a WebSocket listener on the same ``host:port`` behind one
    socket and a demultiplexer that sniffs the first bytes; it closes connections whose
    first segment is too short to classify (js-libp2p sends the multistream length byte
    alone), so ``/tcp/0`` + ``/tcp/0/ws`` would drop some inbound TCP dials. Explicit equal
    ports are left as given (the user asked for sharing).
    """
    import socket

    out, seen = [], set()
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp" and parts[4] == "0":
            key = (parts[1], parts[2])
            if key in seen:
                family = socket.AF_INET6 if parts[1] == "ip6" else socket.AF_INET
                with socket.socket(family) as probe:
                    probe.bind((parts[2], 0))
                    parts[4] = str(probe.getsockname()[1])
                addr = "/".join(parts)
            seen.add(key)
        out.append(addr)
    return out


def verify_ed25519_through_native() -> None:
    """Make py-libp2p check every Ed25519 signature with :func:`p2pd.native.verify`.

    That covers the Noise handshake's identity payload, signed peer records and other
    envelopes, and records: one rule set (docs/ed25519.md) and the native core for all
    of them. Idempotent; applied before any host is built.
    """
    from libp2p.crypto.ed25519 import Ed25519PublicKey

    from .. import native

    def verify(self, data: bytes, signature: bytes) -> bool:
        return native.verify(self.to_bytes(), data, signature)

    Ed25519PublicKey.verify = verify


#: Most bytes one Yamux write hands to Noise at once (16 frames of 64 KiB).
YAMUX_WRITE_BATCH = 1 << 20


def batch_yamux_writes() -> None:
    """Make py-libp2p's ``YamuxStream.write`` send what the window allows in one go.

    py-libp2p 0.8 writes one 64 KiB Yamux frame per lock round and per
    ``secured_conn.write``; 12 header bytes over the Noise plaintext limit (65,519 bytes),
    each frame then becomes two Noise messages, two encryptions and two socket sends. And
    when the send window is used up it polls it every 10 ms. Here a write takes as much
    window as is open (up to ``YAMUX_WRITE_BATCH``), builds all its frames (still at most
    64 KiB of payload each, as the peer expects) and hands them to Noise in one call, which
    cuts them into full-size Noise messages; a writer waiting for window is woken by the
    window update itself (``send_window`` becomes a property that signals increases).
    Locks, the 5 s window timeout and the errors are the library's. Idempotent.
    """
    from libp2p.stream_muxer.exceptions import MuxedStreamError
    from libp2p.stream_muxer.yamux.yamux import (
        HEADER_SIZE,
        MAX_MESSAGE_SIZE,
        TYPE_DATA,
        YAMUX_HEADER_FORMAT,
        YamuxStream,
    )

    if getattr(YamuxStream.write, "_p2pd", False):
        return
    pack = struct.Struct(YAMUX_HEADER_FORMAT).pack

    def get_window(self) -> int:
        return self.__dict__.get("_p2pd_send_window", 0)

    def set_window(self, value: int) -> None:
        old = self.__dict__.get("_p2pd_send_window", 0)
        self.__dict__["_p2pd_send_window"] = value
        if value > old:
            event = self.__dict__.get("_p2pd_window_event")
            if event is not None:
                event.set()

    YamuxStream.send_window = property(get_window, set_window)

    async def write(self, data: bytes) -> None:
        if self.send_closed:
            raise MuxedStreamError("Stream is closed for sending")
        view = memoryview(data).cast("B")
        total, sent = len(view), 0
        while sent < total:
            n = 0
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    n = min(self.send_window, total - sent, YAMUX_WRITE_BATCH)
                    if n > 0:
                        self.send_window -= n
                    else:
                        self.__dict__["_p2pd_window_event"] = trio.Event()
            if n <= 0:
                with trio.move_on_after(5.0) as scope:
                    while self.send_window <= 0 and not self.closed:
                        event = self.__dict__.get("_p2pd_window_event")
                        with trio.move_on_after(0.05):  # also notice closes
                            await event.wait()
                if scope.cancelled_caught:
                    raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
                continue
            parts = []
            for start in range(sent, sent + n, MAX_MESSAGE_SIZE):
                chunk = view[start : min(start + MAX_MESSAGE_SIZE, sent + n)]
                parts.append(pack(0, TYPE_DATA, 0, self.stream_id, len(chunk)))
                parts.append(chunk)
            async with self.conn._write_lock:
                await self.conn.secured_conn.write(b"".join(parts))
            await trio.lowlevel.checkpoint()
            sent += n

    write._p2pd = True
    YamuxStream.write = write
    assert HEADER_SIZE == 12  # the frame layout the packer above writes


def read_whole_yamux_buffers() -> None:
    """Make py-libp2p's ``YamuxStream.read()`` (no size) take its buffer in one slice.

    py-libp2p 0.8 drains the buffer in 64 KiB slices, deleting each from the front of
    a bytearray and appending it to a ``bytes`` result: quadratic in what is buffered.
    With its 16 MiB windows a 64 MiB upload ran at ~5 MB/s and a 128 MiB one timed out.
    Here the buffered bytes are taken at once (credited in the same 64 KiB steps); the
    end-of-stream, reset and finalisation rules are the library's. Sized reads
    (``read(n)``) are untouched. Idempotent.
    """
    from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamReset
    from libp2p.stream_muxer.yamux.yamux import MAX_MESSAGE_SIZE, YamuxStream

    if getattr(YamuxStream.read, "_p2pd", False):
        return
    sized_read = YamuxStream.read

    async def read(self, n: int | None = -1) -> bytes:
        if n is not None and n != -1:
            return await sized_read(self, n)
        while True:
            buffer = self.conn.stream_buffers.get(self.stream_id)
            if buffer is None:
                if self.reset_received:
                    raise MuxedStreamReset("Stream was reset")
                raise MuxedStreamEOF("Stream buffer closed")
            if buffer:
                data = bytes(buffer)
                buffer.clear()
                # Credit the peer in the library's own 64 KiB steps, so the window
                # updates on the wire are the ones py-libp2p would have sent.
                for _ in range(0, len(data), MAX_MESSAGE_SIZE):
                    await self._auto_tune_and_send_window_update(
                        bytes_read=min(MAX_MESSAGE_SIZE, len(data) - _))
                if self.closed and not buffer:
                    await self.conn._finalize_stream(self, fully_closed=True)
                return data
            if self.reset_received:
                raise MuxedStreamReset("Stream was reset")
            if self.recv_closed:
                raise MuxedStreamEOF("Stream is closed for receiving")
            if self.conn.event_shutting_down.is_set():
                raise MuxedStreamEOF("Connection shut down")
            try:
                await self.conn.stream_events[self.stream_id].wait()
                self.conn.stream_events[self.stream_id] = trio.Event()
            except KeyError:
                raise MuxedStreamEOF("Stream was removed during read") from None

    read._p2pd = True
    YamuxStream.read = read


def no_dial_stagger() -> None:
    """Dial a peer's addresses without py-libp2p's fixed 250 ms head start per address.

    py-libp2p 0.8 waits ``_HAPPY_EYEBALLS_DELAY`` after starting each address's dial even
    when it is the last (or only) one and even when it already succeeded, so every
    outbound connection took at least 250 ms. With 0 all addresses are dialed at once.
    """
    from libp2p.network import swarm

    swarm._HAPPY_EYEBALLS_DELAY = 0.0


#: How long a WebSocket client may take to complete the HTTP upgrade.
WS_HANDSHAKE_TIMEOUT = 10.0


def bound_websocket_handshakes(timeout: float = WS_HANDSHAKE_TIMEOUT) -> None:
    """Give WebSocket upgrades a deadline (py-libp2p ignores its own ``handshake_timeout``).

    The listener calls trio-websocket's ``serve_websocket`` without ``connect_timeout``,
    whose default is 60 s: a client sending nothing, or bytes that never end an HTTP
    request, held a connection that long. Idempotent.
    """
    import functools

    from libp2p.transport.websocket import listener
    from trio_websocket import serve_websocket

    listener.serve_websocket = functools.partial(serve_websocket, connect_timeout=timeout)


def per_peer_connection_cap(limit: int, max_streams: int = 512):
    """A swarm notifee enforcing two bounds as connections and streams arrive.

    Connections: a peer's connections beyond ``limit`` are closed at once, idle ones
    first, the newest among those (py-libp2p trims per-peer excess only outside the
    grace period, 120 s by default, so a peer could hold any number of fresh ones).
    Streams: a stream that would make its connection carry more than ``max_streams``
    is reset.
    """
    from libp2p.abc import INotifee

    class PerPeerCap(INotifee):
        async def connected(self, network, conn) -> None:
            try:
                peer = conn.muxed_conn.peer_id
                conns = list(network.get_connections(peer))
            except Exception:
                return
            excess = len(conns) - limit
            if excess <= 0:
                return

            def idle_first(c) -> tuple[int, float]:
                try:
                    streams = len(c.get_streams())
                except Exception:
                    streams = 0
                return streams, -(getattr(c, "_created_at", 0.0) or 0.0)

            # Connections carrying streams are closed last; among equals, the newest first.
            for extra in sorted(conns, key=idle_first):
                if excess <= 0:
                    break
                if getattr(extra, "is_closed", False):
                    continue
                try:
                    await extra.close()
                except Exception:
                    pass
                excess -= 1

        async def disconnected(self, network, conn) -> None:
            pass

        async def opened_stream(self, network, stream) -> None:
            conn = getattr(stream, "swarm_conn", None)
            try:
                if conn is not None and len(conn.get_streams()) > max_streams:
                    await stream.reset()
            except Exception:
                pass

        async def closed_stream(self, network, stream) -> None:
            pass

        async def listen(self, network, multiaddr) -> None:
            pass

        async def listen_close(self, network, multiaddr) -> None:
            pass

    return PerPeerCap()


def build_host(key_pair, options: HostOptions):
    """Create (not start) a py-libp2p ``BasicHost`` that only speaks Noise.

    Start it with ``host.run(listen_multiaddrs)`` inside the node's nursery.
    """
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.custom_types import TProtocol
    from libp2p.identity.identify import identify as identify_module
    from libp2p.network.config import ConnectionConfig
    from libp2p.rcmgr.manager import new_resource_manager
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.mplex.mplex import Mplex
    from libp2p.stream_muxer.yamux.yamux import Yamux

    # py-libp2p reads the agent version from this module global when it answers identify.
    identify_module.AGENT_VERSION = AGENT_VERSION
    verify_ed25519_through_native()
    read_whole_yamux_buffers()
    batch_yamux_writes()
    no_dial_stagger()
    bound_websocket_handshakes()

    security = {
        TProtocol(NOISE_PROTOCOL): NoiseTransport(key_pair, noise_privkey=new_x25519().private_key),
    }
    muxers = {TProtocol(YAMUX_PROTOCOL): Yamux, TProtocol(MPLEX_PROTOCOL): Mplex}
    conn_config = ConnectionConfig(
        max_connections=max(options.conn_high * 2, options.conn_high + 16),
        low_watermark=options.conn_low,
        high_watermark=options.conn_high,
        grace_period=options.conn_grace,
        max_connections_per_peer=options.max_conns_per_peer,
        dial_timeout=options.dial_timeout,
        min_connections=0,
    )
    listen = [parse_swarm_addr(a) for a in options.listen_addrs]
    announce = [parse_swarm_addr(a) for a in options.announce_addrs] or None
    # py-libp2p's default resource manager carries a process-wide circuit breaker: five
    # failed resource acquisitions (any peers, any cause) refuse every new connection
    # for 60 s, so a few bad peers would lock everyone out. Per-peer rate limits stay.
    resources = new_resource_manager(enable_circuit_breaker=False)
    host = new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt=muxers,
        listen_addrs=listen,
        connection_config=conn_config,
        announce_addrs=announce,
        resource_manager=resources,
    )
    host.get_network().register_notifee(
        per_peer_connection_cap(options.max_conns_per_peer, options.max_streams_per_conn)
    )
    return host
