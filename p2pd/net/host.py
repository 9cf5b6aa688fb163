"""The libp2p host, built on py-libp2p with a security policy of our own.

py-libp2p's ``new_host()`` offers Noise, TLS, SECIO *and plaintext* by default, so any
peer could talk to it unencrypted and unauthenticated. We pass an explicit security
table holding only Noise (``/noise``): a peer proposing ``/plaintext/2.0.0`` or
``/secio/1.0.0`` gets multistream ``na`` and, having nothing else, is disconnected.
After py-libp2p's Noise handshake the connection runs on our channel (p2pd/net/noise.py)
and our Yamux (p2pd/net/yamux.py), or our mplex (p2pd/net/mplex.py), the fallback older
peers may need.

The transports (TCP, WebSocket) follow from the listen addresses. Identify (with push)
and ping are py-libp2p's; we only set the agent version it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    #: The muxer proposed first on outbound connections and preferred on inbound ones
    #: (``-muxer``); the other stays offered for peers without it.
    muxer: str = "yamux"


def parse_swarm_addr(text: str):
    """A swarm multiaddr, or :class:`ConfigError` naming the bad one."""
    import multiaddr

    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:
        raise ConfigError(f"invalid swarm address {text!r}: {exc}") from None


def _tcp_parts(addr: str) -> list[str] | None:
    """``addr.split("/")`` for an ``/ip4|ip6/HOST/tcp/PORT...`` address, else None."""
    parts = addr.split("/")
    if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
        return parts
    return None


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
        parts = _tcp_parts(addr)
        if parts is not None and parts[4] == "0":
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


def use_our_yamux() -> None:
    """Make py-libp2p's muxer negotiation build our :class:`~p2pd.net.yamux.YamuxConnection`.

    ``MuxerMultistream.new_conn`` constructs its own ``Yamux`` class by name whenever
    ``/yamux/1.0.0`` is negotiated, whatever class the muxer table holds; the module
    global it uses is pointed at ours (same constructor signature). Idempotent.
    """
    from libp2p.stream_muxer import muxer_multistream

    from .yamux import YamuxConnection

    muxer_multistream.Yamux = YamuxConnection


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
    from .events import SwarmNotifee

    class PerPeerCap(SwarmNotifee):
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

        async def opened_stream(self, network, stream) -> None:
            conn = getattr(stream, "swarm_conn", None)
            try:
                if conn is not None and len(conn.get_streams()) > max_streams:
                    await stream.reset()
            except Exception:
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

    from .mplex import MplexConnection
    from .noise import NoiseTransport
    from .yamux import YamuxConnection

    # py-libp2p reads the agent version from this module global when it answers identify.
    identify_module.AGENT_VERSION = AGENT_VERSION
    verify_ed25519_through_native()
    use_our_yamux()
    no_dial_stagger()
    bound_websocket_handshakes()

    security = {
        TProtocol(NOISE_PROTOCOL): NoiseTransport(key_pair, noise_privkey=new_x25519().private_key),
    }
    muxers = {TProtocol(YAMUX_PROTOCOL): YamuxConnection,
              TProtocol(MPLEX_PROTOCOL): MplexConnection}
    if options.muxer == "mplex":
        muxers = dict(reversed(muxers.items()))
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


def check_swarm_ports_free(listen_addrs: Sequence[str]) -> None:
    """Raise OSError naming the first TCP swarm address another process listens on.

    py-libp2p's TCP listener binds with SO_REUSEPORT, so a second daemon would silently
    share the port; a probe bind without it fails when the port is taken.
    """
    import socket

    for text in listen_addrs:
        parts = _tcp_parts(text)
        # port 0 is always free; a non-number is refused by parse_swarm_addr, clearly
        if parts is None or parts[4] == "0" or not parts[4].isdigit():
            continue
        family = socket.AF_INET if parts[1] == "ip4" else socket.AF_INET6
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((parts[2], int(parts[4])))
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise OSError(f"swarm address {text} is already in use "
                              "(another p2pd running?)") from None
        finally:
            probe.close()
