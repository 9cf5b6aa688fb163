"""Our swarm: TCP listening and dialing, the connection upgrade, streams, identify, ping and
connection events, on trio, without py-libp2p's swarm.

Upgrade (both directions): multistream-select of a security protocol among
``security`` in order of preference (``/tls/1.0.0``, then ``/noise``; plaintext never),
then its handshake (TLS 1.3, :mod:`p2pd.net.tls`, or Noise XX, :mod:`p2pd.net.noise_xx`),
multistream-select of a muxer (Yamux first, mplex for older peers; ``muxers`` orders
them) unless TLS's ALPN already settled it, then our Yamux or mplex session. The whole upgrade runs
under ``handshake_timeout``, and at most ``max_pending_inbound`` inbound upgrades run at
once (more are closed at accept), so a peer that connects and never speaks costs a bounded
slot for a bounded time.

Dialing (:meth:`Swarm.dial`): one dial per peer at a time (concurrent callers share it);
a peer's addresses are tried in order with a happy-eyeballs stagger (the next address
starts when the previous one failed or after ``dial_stagger``, never a fixed wait once one
succeeded); the first connection up wins and the others are cancelled; ``dial_timeout``
bounds the whole dial; an address that failed is skipped for a backoff that doubles per
failure (5 s up to 5 min). With ``reuse_port`` (off by default, see :class:`SwarmOptions`),
outbound TCP connections leave from the listen port (SO_REUSEADDR + SO_REUSEPORT) as
go-libp2p's do, so the NAT mapping peers observe is one they can dial back; an ephemeral
port is used when that bind fails (the same 4-tuple in use).

Streams: ``new_stream`` negotiates a protocol with multistream-select on a fresh muxed
stream; inbound streams are negotiated against the handlers set with
``set_stream_handler`` and handed to them. Identify runs on every new connection (its
result fills the peer store: protocols, listen addresses, agent, public key) and identify
push goes to connected peers when our protocols change. Connection events go to the
listeners as they happen (``peer_connected`` on a peer's first connection,
``peer_identified`` when identify finished, ``peer_disconnected`` when its last one
closed): no polling, no sleeps.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from ..framing import FrameDecoder
from ..varint import decode_uvarint, encode_uvarint
from . import identify as idproto
from . import multistream as ms
from .addrs import AddressManager
from .bandwidth import TokenBucket
from .channel import (
    ByteStream,
    SecureChannel,
    negotiate_in,
    negotiate_in_lazily,
    negotiate_out,
    noise_handshake,
)
from .multistream import MultistreamError
from .muxerrors import MuxedStreamReset
from .muxsession import MuxStream
from .noise_xx import Handshake, HandshakeError
from .rcmgr import ConnScope, LimitExceeded, Limits, ResourceManager, StreamScope

log = logging.getLogger(__name__)

NOISE = "/noise"
TLS = "/tls/1.0.0"
YAMUX = "/yamux/1.0.0"
MPLEX = "/mplex/6.7.0"
PING = "/ipfs/ping/1.0.0"
PING_SIZE = 32
RECV_BUFFER = 256 * 1024

P_IP4, P_IP6, P_TCP, P_DNS, P_DNS4, P_DNS6, P_P2P = 0x04, 0x29, 0x06, 0x35, 0x36, 0x37, 0x01A5
P_WS = 0x01DD
P_QUIC_V1 = 0x01CD
WS_SUFFIX = b"\xdd\x03"  # /ws
WS_MAX_MESSAGE = 4 << 20


class DialError(ConnectionError):
    """No connection to the peer; the message lists what each address did."""


class StreamError(ConnectionError):
    """A stream could not be opened or negotiated."""


class StreamReset(ConnectionError):
    """The stream was reset (by the peer, or its connection died)."""


@dataclass(slots=True)
class Identity:
    """Who we are: the libp2p PublicKey protobuf, its peer id and a signer; ``reset_key``, if
    given, is derived from the private key, so QUIC's stateless resets still match the tokens
    peers were given before a restart (None: a key per process)."""

    public_key: bytes
    peer_id: bytes
    sign: Callable[[bytes], bytes]
    reset_key: bytes | None = None


@dataclass(slots=True)
class SwarmOptions:
    muxers: Sequence[str] = (YAMUX, MPLEX)
    #: security protocols, most preferred first (``TLS``, ``NOISE``)
    security: Sequence[str] = (TLS, NOISE)
    agent_version: str = "p2pd"
    handshake_timeout: float = 10.0
    negotiate_timeout: float = 10.0
    dial_timeout: float = 10.0
    dial_stagger: float = 0.25
    backoff_base: float = 5.0
    backoff_max: float = 300.0
    max_pending_inbound: int = 64
    max_conns_per_peer: int = 8
    #: streams one connection may carry at once; an inbound one beyond is reset
    max_streams_per_conn: int = 512
    stream_backlog: int = 256
    #: Listen with SO_REUSEPORT and dial from the listen port (what TCP hole punching needs).
    #: Off by default: with SO_REUSEPORT on a /tcp/0 listener the kernel may hand another
    #: process of the same user the same port (seen in the test suite: a js peer dialing
    #: one daemon stalled on a port two daemons shared). Hole punching turns it on.
    reuse_port: bool = False
    identify_push_delay: float = 0.05
    #: how long both connections of a simultaneous dial live before one is closed
    simultaneous_grace: float = 1.0
    #: the resource manager's limits (p2pd/net/rcmgr.py); None: its defaults with the three
    #: limits above (pending handshakes, connections per peer, streams per connection)
    limits: Limits | None = None


# -- multiaddrs (binary) ---------------------------------------------------------------------


def split_multiaddr(addr: bytes) -> list[tuple[int, bytes]]:
    """``[(protocol code, value bytes)]`` of a binary multiaddr (the codes we dial)."""
    out, pos = [], 0
    sizes = {P_IP4: 4, P_IP6: 16, P_TCP: 2, 0x0111: 2, 0x01CC: 0, 0x01DD: 0, 0x01DE: 0,
             0x0122: 0, 0x01CD: 0, 0x0114: 0, 0x01D1: 0, 0x0190: 0}
    while pos < len(addr):
        code, pos = decode_uvarint(addr, pos)
        if code in sizes:
            n = sizes[code]
        else:  # a length-prefixed value (dns*, p2p, unix, ...)
            n, pos = decode_uvarint(addr, pos)
        if pos + n > len(addr):
            raise ValueError("truncated multiaddr")
        out.append((code, addr[pos : pos + n]))
        pos += n
    return out


def tcp_target(addr: bytes) -> tuple[str, int, int] | None:
    """``(host, port, family)`` of a ``/ip4|ip6|dns*/.../tcp/PORT[/p2p/ID]`` address, else
    None (a transport this swarm does not dial)."""
    target = dial_target(addr)
    if target is None or target[3]:
        return None
    return target[:3]


def dial_target(addr: bytes) -> tuple[str, int, int, bool] | None:
    """``(host, port, family, websocket)`` of a TCP or ``.../tcp/PORT/ws`` address."""
    try:
        parts = split_multiaddr(addr)
    except ValueError:
        return None
    if len(parts) < 2 or parts[1][0] != P_TCP:
        return None
    rest = [c for c, _ in parts[2:]]
    ws = bool(rest) and rest[0] == P_WS
    if ws:
        rest = rest[1:]
    if any(c != P_P2P for c in rest):
        return None
    (code, value), port = parts[0], struct.unpack(">H", parts[1][1])[0]
    if code == P_IP4:
        return str(ipaddress.IPv4Address(value)), port, socket.AF_INET, ws
    if code == P_IP6:
        return str(ipaddress.IPv6Address(value)), port, socket.AF_INET6, ws
    if code in (P_DNS, P_DNS4, P_DNS6):
        family = {P_DNS4: socket.AF_INET, P_DNS6: socket.AF_INET6}.get(code, socket.AF_UNSPEC)
        return value.decode(errors="replace"), port, family, ws
    return None


P_CIRCUIT = 0x0122


def _is_circuit(addr: bytes) -> bool:
    try:
        return any(code == P_CIRCUIT for code, _ in split_multiaddr(addr))
    except ValueError:
        return False


#: how long a hole punch's server side waits for the other side's first proposal
ROLE_WAIT = 1.0
_MS_HEADER = ms.encode(ms.HEADER)


async def _peer_is_listening(raw: ByteStream) -> bool:
    """A hole punch dialed as the handshake's server (DCUtR's A side): True when the other
    end turns out to be a listener rather than the other half of a simultaneous open, so we
    must be the client after all. A dialer sends the multistream header and its first
    proposal together; a listener sends the header alone and waits. (With a full-cone router
    on the other side, our SYN can reach its listening socket before its own SYN leaves: two
    servers would wait on each other.) What was read is put back for the handshake."""
    got = b""
    with trio.move_on_after(ROLE_WAIT):
        while len(got) <= len(_MS_HEADER):
            data = await raw.read()
            if not data:
                break
            got += data
            if not _MS_HEADER.startswith(got[: len(_MS_HEADER)]):
                break  # not multistream: the handshake will say what is wrong
    raw.push_back(got)
    return got == _MS_HEADER


def tcp_multiaddr(host: str, port: int, ws: bool = False) -> bytes:
    """``/ip4|ip6/HOST/tcp/PORT[/ws]`` in binary form."""
    ip = ipaddress.ip_address(host.split("%")[0])
    code = b"\x04" if ip.version == 4 else b"\x29"
    return code + ip.packed + b"\x06" + struct.pack(">H", port) + (WS_SUFFIX if ws else b"")


def strip_p2p(addr: bytes) -> bytes:
    try:
        parts = split_multiaddr(addr)
    except ValueError:
        return addr
    if parts and parts[-1][0] == P_P2P:
        cut = len(addr) - len(parts[-1][1]) - len(encode_uvarint(len(parts[-1][1]))) - 2
        return addr[:cut]
    return addr


# -- streams and connections ----------------------------------------------------------------


class Traffic:
    """Bytes and streams per negotiated protocol and bytes per peer, counted as they
    pass: plain ints in dicts (a few per read or write), read as they are by the metrics
    collector and ``p2pd stats bw``. ``upload``/``download``: the node-wide caps
    (``[limits] max_upload_rate``/``max_download_rate``; p2pd/net/bandwidth.py)."""

    __slots__ = ("bytes_in", "bytes_out", "streams", "peer_in", "peer_out", "upload",
                 "download", "max_peers")

    def __init__(self, max_peers: int = 4096) -> None:
        #: peers counted apart; past this the longest-known one is folded into ``b""``
        #: (a flood of new peer ids costs a bounded table)
        self.max_peers = max_peers
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        #: ``(protocol, "inbound"|"outbound")`` -> streams negotiated
        self.streams: dict[tuple[str, str], int] = {}
        self.peer_in: dict[bytes, int] = {}
        self.peer_out: dict[bytes, int] = {}
        self.upload: TokenBucket | None = None
        self.download: TokenBucket | None = None

    def opened(self, protocol: str, direction: str) -> None:
        key = (protocol, direction)
        self.streams[key] = self.streams.get(key, 0) + 1

    def count(self, protocol: str, peer: bytes, n: int, inbound: bool) -> None:
        by_proto, by_peer = ((self.bytes_in, self.peer_in) if inbound
                             else (self.bytes_out, self.peer_out))
        by_proto[protocol] = by_proto.get(protocol, 0) + n
        if peer not in by_peer and len(self.peer_in) + len(self.peer_out) > 2 * self.max_peers:
            self._fold_oldest_peer()
        by_peer[peer] = by_peer.get(peer, 0) + n

    def _fold_oldest_peer(self) -> None:
        for table in (self.peer_in, self.peer_out):
            for old in table:
                if old != b"":
                    table[b""] = table.get(b"", 0) + table.pop(old)
                    break


class Stream:
    """A negotiated stream: ``read()`` gives what arrived (``b""`` at the peer's end),
    ``write``, ``close`` (half-close), ``reset``."""

    __slots__ = ("conn", "_mux", "protocol", "_early", "_lazy", "_lazy_out", "_flushing")

    def __init__(self, conn: Connection, mux, protocol: str | None = None) -> None:
        self.conn = conn
        self._mux = mux
        self.protocol = protocol
        self._early = b""
        #: lazy negotiation (a protocol the peer said it speaks): the multistream header
        #: and proposal go out with the first write, the answer is checked on first read
        self._lazy: ms.Dialer | None = None
        self._lazy_out = b""
        #: set while a reader sends the held negotiation bytes: a writer in another task
        #: waits for them, so they stay first on the stream
        self._flushing: trio.Event | None = None

    async def _send_pending(self) -> None:
        out, self._lazy_out = self._lazy_out, b""
        done = self._flushing = trio.Event()
        try:
            # shielded: a reader cancelled here (one watching for the peer going away while
            # another task answers) must not lose the bytes that go first on the stream
            with trio.CancelScope(shield=True):
                await self._mux.write(out)
        except Exception as exc:
            if isinstance(exc, trio.Cancelled):
                raise
            raise StreamReset(str(exc) or "stream reset") from None
        finally:
            self._flushing = None
            done.set()

    async def _finish_lazy(self) -> None:
        """Read the listener's answer to a lazy proposal; what follows it is kept."""
        dialer = self._lazy
        if self._lazy_out:  # a protocol where the dialer reads first
            await self._send_pending()
        while not dialer.done:
            try:
                data = await self._mux.read(-1)
            except EOFError:
                data = b""
            except Exception as exc:
                if isinstance(exc, MuxedStreamReset) or self._mux.reset_received:
                    raise StreamReset(str(exc) or "stream reset") from None
                raise
            if not data:
                raise StreamReset(f"the peer closed the stream before accepting {self.protocol}")
            try:
                dialer.receive(data)
            except MultistreamError as exc:
                with trio.CancelScope(shield=True):
                    await self._mux.reset()
                raise StreamReset(f"{self.protocol}: {exc}") from None
        self._lazy = None
        if dialer.leftover:
            self._early = dialer.leftover + self._early

    @property
    def remote_peer(self) -> bytes:
        return self.conn.peer

    def get_protocol(self) -> str | None:
        return self.protocol

    def push_back(self, data: bytes) -> None:
        self._early = data + self._early

    def on_remote_end(self, callback) -> bool:
        """Have ``callback()`` run once the peer closes its side or resets the stream,
        without reading (see :meth:`MuxStream.on_remote_end`); False if this stream's
        muxer cannot tell (the caller then watches with a read)."""
        watch = getattr(self._mux, "on_remote_end", None)
        if watch is None:
            return False
        watch(callback)
        return True

    async def read(self, n: int | None = None) -> bytes:
        if self._lazy is not None:
            await self._finish_lazy()
        elif self._lazy_out and not self._early:  # our held echo: before we wait for the peer
            has_data = getattr(self._mux, "has_data", None)
            if has_data is None or not has_data():
                await self._send_pending()
        if self._early:
            if n is None or n < 0 or n >= len(self._early):
                data, self._early = self._early, b""
            else:
                data, self._early = self._early[:n], self._early[n:]
            return await self._counted(data)
        try:
            data = await self._mux.read(-1 if n is None else n)
        except EOFError:
            return b""
        except Exception as exc:
            if isinstance(exc, MuxedStreamReset) or self._mux.reset_received:
                raise StreamReset(str(exc) or "stream reset") from None
            raise
        return await self._counted(data)

    async def _counted(self, data: bytes) -> bytes:
        """``data`` read, added to the protocol's and the peer's inbound bytes (once it
        is negotiated), after the download cap's wait if there is one: not reading on
        meanwhile leaves the muxer's window to slow the sender."""
        traffic = self.conn.traffic
        if traffic is not None and self.protocol is not None:
            traffic.count(self.protocol, self.conn.peer, len(data), True)
            if traffic.download is not None and data:
                delay = traffic.download.take(len(data), trio.current_time())
                if delay > 0:
                    await trio.sleep(delay)
        return data

    async def _counted_out(self, traffic: Traffic, n: int) -> None:
        """``n`` bytes about to be written, added to the protocol's and the peer's
        outbound bytes, after the upload cap's wait if there is one."""
        traffic.count(self.protocol, self.conn.peer, n, False)
        if traffic.upload is not None:
            delay = traffic.upload.take(n, trio.current_time())
            if delay > 0:
                await trio.sleep(delay)

    async def write(self, data: bytes) -> None:
        if self._flushing is not None:
            await self._flushing.wait()
        traffic = self.conn.traffic
        if traffic is not None and self.protocol is not None:
            cap = traffic.upload
            if cap is not None and len(data) > cap.burst:  # in pieces the cap lets through
                view = memoryview(data)
                step = int(cap.burst)
                for i in range(0, len(view), step):
                    await self.write(bytes(view[i:i + step]))
                return
            await self._counted_out(traffic, len(data))
        if self._lazy_out:
            data, self._lazy_out = self._lazy_out + bytes(data), b""
        try:
            await self._mux.write(data)
        except Exception as exc:
            if isinstance(exc, trio.Cancelled):
                raise
            raise StreamReset(str(exc) or "stream reset") from None

    async def write_and_close(self, data: bytes) -> None:
        """``write(data)`` and ``close()``; on Yamux the data and the FIN share a frame."""
        if self._flushing is not None:
            await self._flushing.wait()
        both = getattr(self._mux, "write_and_close", None)
        traffic = self.conn.traffic
        cap = traffic.upload if traffic is not None else None
        if both is None or (cap is not None and len(data) > cap.burst):
            await self.write(data)
            await self.close()
            return
        if traffic is not None and self.protocol is not None:
            await self._counted_out(traffic, len(data))
        if self._lazy_out:
            data, self._lazy_out = self._lazy_out + bytes(data), b""
        try:
            await both(data)
        except Exception as exc:
            if isinstance(exc, trio.Cancelled):
                raise
            raise StreamReset(str(exc) or "stream reset") from None

    async def close(self) -> None:
        """Half-close: the peer reads its end after what we wrote; we may still read."""
        if self._flushing is not None:
            await self._flushing.wait()
        if self._lazy_out:  # nothing written: the proposal still goes first
            await self._send_pending()
        await self._mux.close()

    close_write = close

    async def reset(self) -> None:
        await self._mux.reset()


@dataclass(eq=False, slots=True)
class Connection:
    peer: bytes
    remote_public_key: bytes
    direction: str  # "inbound" | "outbound"
    remote_addr: bytes  # binary multiaddr
    local_addr: bytes
    muxer: str
    session: object
    transport: str = "tcp"
    security: str = NOISE
    opened_at: float = field(default_factory=time.time)
    identified: trio.Event = field(default_factory=trio.Event)
    gone: trio.Event = field(default_factory=trio.Event)
    closed: bool = False
    observed_addr: bytes = b""
    traffic: Traffic | None = None
    #: the swarm's resource manager and this connection's reservation (set on register)
    resources: ResourceManager | None = None
    scope: ConnScope | None = None
    #: outbound streams' reservations, given back once their stream is closed
    out_streams: list = field(default_factory=list)

    def _stream_scope(self) -> StreamScope | None:
        rm = self.resources
        if rm is None:
            return None
        held = self.out_streams
        if held:  # streams without a done hook (QUIC): give back those that ended meanwhile
            live = []
            for mux, scope in held:
                if mux.closed or self.closed:
                    scope.done()
                else:
                    live.append((mux, scope))
            held[:] = live
        try:
            return rm.open_stream(self.peer, "outbound")
        except LimitExceeded as exc:
            raise StreamError(str(exc)) from None

    def release_streams(self) -> None:
        for _, scope in self.out_streams:
            scope.done()
        self.out_streams.clear()

    async def open_stream(self, protocols: Sequence[str], timeout: float, *,
                          lazy: bool = False) -> Stream:
        """A new stream speaking the first of ``protocols`` the peer accepts. ``lazy`` (one
        protocol the peer said it speaks, as go's host does): no round trip here, the
        proposal goes out with the first write and a refusal shows on the first read."""
        scope = self._stream_scope()
        try:
            mux = await self.session.open_stream()
        except Exception as exc:
            if scope is not None:
                scope.done()
            raise StreamError(f"no new stream on the connection: {exc}") from None
        if scope is not None:
            if isinstance(mux, MuxStream):  # Yamux, mplex: given back when the stream goes
                mux.on_done = scope.done
            else:
                self.out_streams.append((mux, scope))
        stream = Stream(self, mux)
        if lazy and len(protocols) == 1:
            stream.protocol = protocols[0]
            stream._lazy = ms.Dialer(protocols)
            stream._lazy_out = stream._lazy.start()
            if scope is not None:
                await self._set_protocol(scope, stream)
            if self.traffic is not None:
                self.traffic.opened(stream.protocol, "outbound")
            return stream
        try:
            with trio.fail_after(timeout):
                stream.protocol = await negotiate_out(stream, protocols)
            if scope is not None:
                await self._set_protocol(scope, stream)
            if self.traffic is not None:
                self.traffic.opened(stream.protocol, "outbound")
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await stream.reset()
            if isinstance(exc, trio.TooSlowError):
                raise StreamError("protocol negotiation timed out") from None
            if isinstance(exc, (MultistreamError, StreamReset)):
                raise StreamError(str(exc)) from None
            raise
        return stream

    @staticmethod
    async def _set_protocol(scope: StreamScope, stream: Stream) -> None:
        """The outbound per-protocol limit, once the protocol is known; past it the stream
        is reset and the opener gets a StreamError naming the limit."""
        try:
            scope.set_protocol(stream.protocol)
        except LimitExceeded as exc:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise StreamError(str(exc)) from None

    async def close(self) -> None:
        self.closed = True
        await self.session.close()


# -- the peer store ------------------------------------------------------------------------


class PeerStore:
    """What we know of peers (addresses, protocols, keys, agents), bounded."""

    def __init__(self, max_peers: int = 10_000, max_addrs: int = 32) -> None:
        self.addrs: dict[bytes, dict[bytes, None]] = {}
        #: each peer's own word on where it listens (its latest identify), apart from what
        #: others told us of it (a DHT answer, a provider record, an earlier run)
        self.listen: dict[bytes, list[bytes]] = {}
        self.protocols: dict[bytes, list[str]] = {}
        self.keys: dict[bytes, bytes] = {}
        self.agents: dict[bytes, str] = {}
        self.max_peers = max_peers
        self.max_addrs = max_addrs

    def add_addrs(self, peer: bytes, addrs: Sequence[bytes]) -> None:
        known = self.addrs.get(peer)
        if known is None:
            if len(self.addrs) >= self.max_peers:
                oldest = next(iter(self.addrs))
                self.forget(oldest)
            known = self.addrs[peer] = {}
        for a in addrs:
            a = strip_p2p(bytes(a))
            if a and a not in known:
                known[a] = None
                while len(known) > self.max_addrs:
                    del known[next(iter(known))]

    def forget(self, peer: bytes) -> None:
        for table in (self.addrs, self.listen, self.protocols, self.keys, self.agents):
            table.pop(peer, None)

    def peer_addrs(self, peer: bytes) -> list[bytes]:
        return list(self.addrs.get(peer, ()))


# -- the swarm --------------------------------------------------------------------------------

Handler = Callable[[Stream], Awaitable[None]]


class Swarm:
    def __init__(self, identity: Identity, options: SwarmOptions | None = None,
                 addresses: AddressManager | None = None) -> None:
        self.identity = identity
        self.me = identity.peer_id
        self.options = options or SwarmOptions()
        self.handlers: dict[str, Handler] = {}
        self.conns: dict[bytes, list[Connection]] = {}
        self.traffic = Traffic()
        #: connections opened since start, by ``(direction, transport)``
        self.conns_opened: dict[tuple[str, str], int] = {}
        self.peerstore = PeerStore()
        self.listeners: list = []
        self.listen_addrs: list[bytes] = []  # bound, binary
        #: what we tell each peer of our addresses; its listen list is ours
        self.addresses = addresses or AddressManager()
        self.addresses.on_change.append(self._schedule_push)  # new addresses: tell peers
        self.addresses.listen = self.listen_addrs
        #: transports beyond TCP/WebSocket (the circuit relay): ``handles(addr)`` and
        #: ``async dial(peer, addr) -> Connection``
        self.transports: list = []
        self._listen_ports: dict[int, int] = {}  # family -> port we listen on
        self._dialing: dict[bytes, trio.Event] = {}
        self._dial_result: dict[bytes, Connection | BaseException] = {}
        self._backoff: dict[bytes, tuple[float, int]] = {}
        o = self.options
        #: every connection and stream reserves here first (p2pd/net/rcmgr.py)
        self.rcmgr = ResourceManager(o.limits if o.limits is not None else Limits(
            max_pending_inbound=o.max_pending_inbound, max_conns_per_peer=o.max_conns_per_peer,
            max_streams_per_conn=o.max_streams_per_conn))
        self._nursery: trio.Nursery | None = None
        self._push_scheduled = False
        self._tls_security = None
        self.handlers[idproto.ID] = self._serve_identify
        self.handlers[idproto.PUSH] = self._serve_identify_push
        self.handlers[PING] = self._serve_ping

    @property
    def _pending_inbound(self) -> int:
        return self.rcmgr.pending

    def _admit(self, host: str | None, what: str) -> ConnScope | None:
        """The resource manager's scope for a new inbound connection from ``host``, or None
        (refused, counted, logged at debug): the caller closes it before any handshake."""
        try:
            return self.rcmgr.open_inbound(host, trio.current_time())
        except LimitExceeded as exc:
            log.debug("inbound %s from %s refused: %s", what, host, exc)
            return None

    # -- lifetime ----------------------------------------------------------------------
    async def run(self, listen: Sequence[bytes] = (), *, task_status=trio.TASK_STATUS_IGNORED):
        """Listen on ``listen`` (binary TCP multiaddrs) and serve until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for addr in listen:
                    target = dial_target(addr)
                    other = next((t for t in self.transports
                                  if getattr(t, "listens", None) and t.listens(addr)), None)
                    if target is None and other is not None:  # QUIC
                        self.listen_addrs.append(await other.listen(addr, nursery))
                        continue
                    if target is None:  # WebTransport, WebRTC, ...: not a transport of ours
                        log.warning("not listening on %s: not a transport this node has "
                                    "(TCP, WebSocket, and QUIC when on)", _text_addr(addr))
                        continue
                    if target[3]:
                        await self._listen_ws(nursery, target)
                        continue
                    listener = await self._bind(addr)
                    nursery.start_soon(self._accept_loop, listener)
                task_status.started(list(self.listen_addrs))
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    for conns in list(self.conns.values()):
                        for conn in list(conns):
                            await conn.close()
                self._nursery = None

    async def _bind(self, addr: bytes) -> trio.SocketListener:
        target = tcp_target(addr)
        if target is None:
            raise ValueError("only /ip4|ip6/.../tcp/PORT listen addresses are supported")
        host, port, family = target
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.options.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            await sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.listen(256)
        bound_port = sock.getsockname()[1]
        self._listen_ports.setdefault(family, bound_port)
        self.listen_addrs.append(tcp_multiaddr(host, bound_port))
        return trio.SocketListener(sock)

    async def _listen_ws(self, nursery: trio.Nursery, target) -> None:
        from trio_websocket import serve_websocket

        host, port, _family, _ = target
        server = await nursery.start(partial(
            serve_websocket, self._ws_request, host, port, None, handler_nursery=nursery,
            max_message_size=WS_MAX_MESSAGE, receive_buffer_size=RECV_BUFFER,
            connect_timeout=self.options.handshake_timeout))
        self.listen_addrs.append(tcp_multiaddr(host, server.port, ws=True))

    async def _ws_request(self, request) -> None:
        """One WebSocket client: the same upgrade as TCP over its binary messages; the
        handler lives as long as the connection (trio-websocket closes it on return)."""
        remote = getattr(request, "remote", None)
        scope = self._admit(getattr(remote, "address", None), "websocket")
        if scope is None:
            await request.reject(503)
            return
        try:
            ws = await request.accept()
        except Exception:
            scope.done()
            return
        conn = await self._inbound(WsByteStream(ws), scope, transport="ws")
        if conn is not None:
            await conn.gone.wait()

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: back off, keep listening
                    log.warning("accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                try:
                    host = stream.socket.getpeername()[0]
                except OSError:
                    host = None
                scope = self._admit(host, "connection")
                if scope is None:  # over a limit: closed before the security handshake
                    await stream.aclose()
                    continue
                self._nursery.start_soon(self._inbound, stream, scope)

    # -- the upgrade ---------------------------------------------------------------------
    def _handshake(self, initiator: bool, expected: bytes | None) -> Handshake:
        ident = self.identity
        return Handshake(initiator, ident.public_key, ident.sign, expected_peer=expected)

    def _tls(self):
        """Our TLS certificate and contexts, made on the first TLS connection."""
        if self._tls_security is None:
            from .tls import TlsSecurity

            self._tls_security = TlsSecurity(self.identity, self.options.muxers)
        return self._tls_security

    async def _upgrade(self, raw: ByteStream, initiator: bool, expected: bytes | None):
        muxers = list(self.options.muxers)
        security = [p for p in self.options.security if p in (TLS, NOISE)]
        if initiator:
            proto = await negotiate_out(raw, security)
        else:
            proto = await negotiate_in(raw, set(security), lambda: security)
        muxer = None
        if proto == TLS:
            secure = await self._tls().handshake(raw, initiator, expected)
            muxer = secure.muxer  # early muxer negotiation through ALPN
        else:
            result = await noise_handshake(raw, self._handshake(initiator, expected))
            secure = SecureChannel(raw, result, is_initiator=initiator)
        if muxer is None and initiator:
            muxer = await negotiate_out(secure, muxers)
        elif muxer is None:
            muxer = await negotiate_in(secure, set(muxers), lambda: muxers)
        if secure.remote_peer == self.me:
            raise HandshakeError("dialed ourselves")
        return secure, muxer

    def _session(self, secure: SecureChannel, muxer: str, peer: bytes):
        if muxer == YAMUX:
            from .yamux import YamuxConnection

            return YamuxConnection(secure, peer.hex()[:16], secure.is_initiator,
                                   backlog=self.options.stream_backlog,
                                   memory=self.rcmgr.memory.for_peer(peer))
        from .mplex import MplexConnection

        return MplexConnection(secure, peer.hex()[:16], secure.is_initiator,
                               backlog=self.options.stream_backlog,
                               memory=self.rcmgr.memory.for_peer(peer))

    async def accept_stream(self, raw, remote_addr: bytes, local_addr: bytes,
                            transport: str) -> Connection | None:
        """Upgrade a byte stream another transport accepted (a relayed connection: the
        stop stream) as an inbound connection, within the pending-handshake limit (the
        relay's IP is not the peer's: no per-IP limits)."""
        scope = self._admit(None, transport)
        if scope is None:
            await raw.close()
            return None
        return await self._inbound(raw, scope, transport, (remote_addr, local_addr))

    async def dial_stream(self, raw, peer: bytes, remote_addr: bytes, local_addr: bytes,
                          transport: str) -> Connection:
        """Upgrade a byte stream another transport dialed (the hop stream after CONNECT)
        as an outbound connection to ``peer``; the caller's dial registers it."""
        with trio.fail_after(self.options.handshake_timeout):
            secure, muxer = await self._upgrade(raw, True, peer)
        return Connection(peer, secure.remote_public_key, "outbound", remote_addr, local_addr,
                          muxer, self._session(secure, muxer, peer), transport=transport)

    async def _inbound(self, raw, scope: ConnScope, transport: str = "tcp",
                       addrs: tuple[bytes, bytes] | None = None) -> Connection | None:
        """Upgrade one accepted connection (``raw``: a trio SocketStream, or a ByteStream
        already) and register it; the pending-handshake slot taken at accept is freed."""
        upgraded = False
        try:
            if addrs is None and not isinstance(raw, (ByteStream, WsByteStream)):
                raw = ByteStream(raw, raw.socket.getpeername(), raw.socket.getsockname())
            remote, local = addrs if addrs is not None else (raw.remote, raw.local)
            with trio.move_on_after(self.options.handshake_timeout) as timer:
                try:
                    secure, muxer = await self._upgrade(raw, False, None)
                except Exception as exc:  # whatever a stranger sends: that connection ends
                    log.debug("inbound upgrade from %s failed: %r", remote, exc)
                    scope.done()  # the slot is free once the peer sees the close
                    await raw.close()
                    return None
            if timer.cancelled_caught:
                log.debug("inbound upgrade from %s timed out", remote)
                scope.done()
                await raw.close()
                return None
            upgraded = True
        finally:
            if not upgraded:
                scope.done()
        ws = transport == "ws"
        if addrs is None:
            remote, local = _addr_of(remote, ws), _addr_of(local, ws)
        conn = Connection(secure.remote_peer, secure.remote_public_key, "inbound",
                          remote, local,
                          muxer, self._session(secure, muxer, secure.remote_peer),
                          transport=transport, security=getattr(secure, "security", NOISE))
        try:
            scope.set_peer(conn.peer)
        except LimitExceeded as exc:
            log.info("peer %s: closing a new connection: %s", conn.peer.hex()[:16], exc)
            await secure.close()
            return None
        self._register(conn, scope)
        return conn

    def adopt_inbound(self, conn: Connection, scope: ConnScope | None = None) -> bool:
        """Register an inbound connection another transport authenticated (QUIC), within
        the resource manager's limits; False (the caller closes it) beyond. ``scope``: the
        reservation the transport took before the handshake (its pending slot is freed
        here and the per-peer limit applies), else one is taken now."""
        if self._nursery is None:
            if scope is not None:
                scope.done()
            return False
        try:
            if scope is None:
                scope = self.rcmgr.open_inbound(_ip_text(conn.remote_addr),
                                                trio.current_time(), handshake=False)
            scope.set_peer(conn.peer)
        except LimitExceeded as exc:
            log.info("peer %s: closing a new %s connection: %s", conn.peer.hex()[:16],
                     conn.transport, exc)
            return False
        self._register(conn, scope)
        return True

    async def _tcp_connect(self, host: str, port: int, family: int, *,
                           ephemeral: bool = False) -> trio.SocketStream:
        if family == socket.AF_UNSPEC or not _is_ip(host):
            infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"{host} resolves to nothing")
            family, _, _, _, sockaddr = infos[0]
            host = sockaddr[0]
        reuse = self.options.reuse_port and not ephemeral
        local_port = self._listen_ports.get(family) if reuse else None
        for bind_port in ([local_port, None] if local_port else [None]):
            sock = trio.socket.socket(family, socket.SOCK_STREAM)
            try:
                if bind_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    await sock.bind(("0.0.0.0" if family == socket.AF_INET else "::", bind_port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await sock.connect((host, port))
                return trio.SocketStream(sock)
            except OSError as exc:
                sock.close()
                if bind_port and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                    continue  # that 4-tuple is taken: an ephemeral port then
                raise
            except BaseException:
                sock.close()
                raise
        raise OSError("unreachable")

    def _dialable(self, addr: bytes) -> bool:
        return dial_target(addr) is not None or any(t.handles(addr) for t in self.transports)

    async def _dial_one(self, peer: bytes, addr: bytes, initiator: bool = True, *,
                        again: bool = False) -> Connection:
        """One connection to ``peer`` at ``addr``. With ``again`` (an ordinary dial, not a
        hole punch) a dial that left from the listen port and failed in the handshake is
        tried once more from an ephemeral port: two peers dialling each other from their
        listen ports at once (a DHT lookup each way) can have their SYNs cross, and TCP's
        simultaneous open makes the two dials one connection on which both speak first."""
        try:
            return await self._dial_one_from(peer, addr, initiator, False)
        except Exception as exc:
            if not (again and getattr(exc, "from_listen_port", False)):
                raise
            log.debug("dial to %s from the listen port failed (%s); again from another",
                      _show(addr), exc)
            return await self._dial_one_from(peer, addr, initiator, True)

    async def _dial_one_from(self, peer: bytes, addr: bytes, initiator: bool,
                             ephemeral: bool) -> Connection:
        for transport in self.transports:
            if transport.handles(addr):
                return await transport.dial(peer, addr)
        target = dial_target(addr)
        if target is None:
            raise DialError("not a TCP or WebSocket address")
        host, port, family, ws = target
        with trio.fail_after(self.options.handshake_timeout):
            if ws:
                raw = await self._ws_connect(host, port)
            else:
                stream = await self._tcp_connect(host, port, family, ephemeral=ephemeral)
                raw = ByteStream(stream, stream.socket.getpeername(),
                                 stream.socket.getsockname())
            try:
                if not initiator:
                    initiator = await _peer_is_listening(raw)
                secure, muxer = await self._upgrade(raw, initiator, peer)
                if secure.remote_peer != peer:  # a hole punch's server side checks here
                    raise HandshakeError("peer id mismatch")
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    await raw.close()
                if isinstance(exc, Exception) and not ws and isinstance(raw.local, tuple):
                    # (a failed upgrade of a TCP dial that left from our listen port)
                    exc.from_listen_port = raw.local[1] == self._listen_ports.get(family)
                raise
        return Connection(peer, secure.remote_public_key, "outbound",
                          _addr_of(raw.remote, ws), _addr_of(raw.local, ws),
                          muxer, self._session(secure, muxer, peer),
                          transport="ws" if ws else "tcp",
                          security=getattr(secure, "security", NOISE))

    async def _ws_connect(self, host: str, port: int) -> WsByteStream:
        from trio_websocket import connect_websocket

        ws = await connect_websocket(self._nursery, host, port, "/", use_ssl=False,
                                     max_message_size=WS_MAX_MESSAGE,
                                     receive_buffer_size=RECV_BUFFER)
        return WsByteStream(ws)

    # -- dialing ---------------------------------------------------------------------------
    def connection(self, peer: bytes) -> Connection | None:
        """The newest live connection to ``peer``, a direct one before a relayed one."""
        live = [c for c in self.conns.get(peer, ()) if not c.closed]
        direct = [c for c in live if c.transport != "relay"]
        return (direct or live)[-1] if live else None

    async def dial_direct(self, peer: bytes, addrs: Sequence[bytes], *, initiator: bool,
                          timeout: float) -> Connection:
        """A new direct connection to ``peer`` at one of ``addrs`` (all tried at once), even
        if one exists: a hole punch. ``initiator=False`` runs the handshake as the server
        (DCUtR's B side of a TCP simultaneous open)."""
        won: list[Connection] = []
        errors: list[str] = []

        async def attempt(addr: bytes) -> None:
            try:
                conn = await self._dial_one(peer, addr, initiator)
            except Exception as exc:
                errors.append(f"{_show(addr)}: {exc or type(exc).__name__}")
                return
            if won:
                await conn.session.close()
                return
            won.append(conn)
            nursery.cancel_scope.cancel()

        scope = self._dial_scope(peer)
        try:
            with trio.move_on_after(timeout):
                async with trio.open_nursery() as nursery:
                    for addr in addrs:
                        if self._dialable(addr) and not _is_circuit(addr):
                            nursery.start_soon(attempt, addr)
        except BaseException:
            scope.done()
            raise
        if not won:
            scope.done()
            raise DialError(f"no direct connection to {peer.hex()[:16]}: "
                            + ("; ".join(errors) or "timed out"))
        self._register(won[0], scope)
        return won[0]

    def _dial_scope(self, peer: bytes) -> ConnScope:
        try:
            return self.rcmgr.open_outbound()
        except LimitExceeded as exc:
            raise DialError(f"not dialing {peer.hex()[:16]}: {exc}") from None

    async def dial(self, peer: bytes, addrs: Sequence[bytes] = (), *,
                   timeout: float | None = None) -> Connection:
        """A connection to ``peer`` (an existing one if there is one)."""
        if peer == self.me:
            raise DialError("cannot dial ourselves")
        conn = self.connection(peer)
        if conn is not None:
            return conn
        if addrs:
            self.peerstore.add_addrs(peer, addrs)
        pending = self._dialing.get(peer)
        if pending is None:
            pending = self._dialing[peer] = trio.Event()
            try:
                result = await self._dial_addrs(peer, timeout or self.options.dial_timeout)
                self._dial_result[peer] = result
            except BaseException as exc:
                self._dial_result[peer] = exc
                raise
            finally:
                del self._dialing[peer]
                pending.set()
            return result
        await pending.wait()
        result = self._dial_result.get(peer)
        if isinstance(result, Connection) and not result.closed:
            return result
        conn = self.connection(peer)
        if conn is not None:
            return conn
        raise DialError(f"dial to {peer.hex()[:16]} failed: {result}")

    async def _dial_addrs(self, peer: bytes, timeout: float) -> Connection:
        now = trio.current_time()
        candidates, skipped = [], 0
        for a in self.peerstore.peer_addrs(peer):
            if not self._dialable(a):
                continue
            until, _ = self._backoff.get(a, (0.0, 0))
            if until > now:
                skipped += 1
                continue
            candidates.append(a)
        # QUIC first when a peer offers it (one round trip less, no head-of-line blocking);
        # the stagger still starts TCP if QUIC does not answer
        candidates.sort(key=lambda a: 0 if _is_quic(a) else 1)
        if not candidates:
            why = f"{skipped} in backoff after failures" if skipped else "none dialable"
            raise DialError(f"no address to dial for {peer.hex()[:16]} ({why})")
        errors: list[str] = []
        won: list[Connection] = []

        async def attempt(addr: bytes, failed: trio.Event) -> None:
            try:
                conn = await self._dial_one(peer, addr, again=True)
            except Exception as exc:  # refused, timed out, or a peer that broke the upgrade
                errors.append(f"{_show(addr)}: {exc or type(exc).__name__}")
                self._failed(addr)
                failed.set()
                return
            self._backoff.pop(addr, None)
            if won:  # another address got there first
                await conn.session.close()
                return
            won.append(conn)
            nursery.cancel_scope.cancel()

        scope = self._dial_scope(peer)
        try:
            with trio.move_on_after(timeout) as overall:
                async with trio.open_nursery() as nursery:
                    for addr in candidates:
                        failed = trio.Event()
                        nursery.start_soon(attempt, addr, failed)
                        with trio.move_on_after(self.options.dial_stagger):
                            await failed.wait()
                        if won:
                            break
        except BaseException:
            scope.done()
            raise
        if won:
            self._register(won[0], scope)
            return won[0]
        scope.done()
        if overall.cancelled_caught:
            errors.append(f"timed out after {timeout:g} s")
        raise DialError(f"failed to dial {peer.hex()[:16]}: " + "; ".join(errors))

    def _failed(self, addr: bytes) -> None:
        _, failures = self._backoff.get(addr, (0.0, 0))
        delay = min(self.options.backoff_base * (2 ** failures), self.options.backoff_max)
        self._backoff[addr] = (trio.current_time() + delay, failures + 1)

    def clear_backoff(self, peer: bytes) -> None:
        for a in self.peerstore.peer_addrs(peer):
            self._backoff.pop(a, None)

    # -- connections -------------------------------------------------------------------------
    def _register(self, conn: Connection, scope: ConnScope | None = None) -> None:
        """``scope``: the connection's reservation (None: counted now, whatever the limits
        say; the dials reserve before they start)."""
        if scope is None:
            scope = self.rcmgr.adopt(conn.direction, conn.peer)
        elif scope.peer is None:
            scope.set_peer(conn.peer, enforce=False)
        conn.scope, conn.resources = scope, self.rcmgr
        conns = self.conns.setdefault(conn.peer, [])
        first = not conns
        conns.append(conn)
        conn.traffic = self.traffic
        key = (conn.direction, conn.transport)
        self.conns_opened[key] = self.conns_opened.get(key, 0) + 1
        self.peerstore.keys[conn.peer] = conn.remote_public_key
        if conn.direction == "outbound":
            self.peerstore.add_addrs(conn.peer, [conn.remote_addr])
        conn.session.on_close = lambda: self._unregister(conn)
        self._nursery.start_soon(self._run_connection, conn)
        if first:
            self._emit("peer_connected", conn.peer)
        elif len({c.direction for c in conns if c.transport != "relay"}) == 2:
            self._nursery.start_soon(self._keep_one, conn.peer)

    async def _keep_one(self, peer: bytes) -> None:
        """Both sides dialed at once: after a moment (identify and the first streams run on
        whichever connection they started on), both close the same one, the connection
        dialed by the peer with the larger id, so one connection is kept."""
        await trio.sleep(self.options.simultaneous_grace)
        conns = [c for c in self.conns.get(peer, ()) if not c.closed and c.transport != "relay"]
        if len(conns) < 2:
            return
        we_dial_kept = self.me < peer
        keep = "outbound" if we_dial_kept else "inbound"
        kept = [c for c in conns if c.direction == keep]
        if not kept:
            return
        for c in conns:
            if c.direction != keep:
                await c.close()

    def _unregister(self, conn: Connection) -> None:
        conn.closed = True
        conn.identified.set()
        conn.gone.set()
        if conn.scope is not None:
            conn.scope.done()
            conn.release_streams()
        conns = self.conns.get(conn.peer)
        if conns is None or conn not in conns:
            return
        conns.remove(conn)
        if not conns:
            del self.conns[conn.peer]
            self._emit("peer_disconnected", conn.peer)

    def _emit(self, event: str, peer: bytes, *args) -> None:
        for listener in list(self.listeners):
            method = getattr(listener, event, None)
            if method is None:
                continue
            try:
                method(peer, *args)
            except Exception:
                log.exception("connection listener %r failed on %s", listener, event)

    async def _run_connection(self, conn: Connection) -> None:
        """The connection's reader, identify and inbound streams; nothing a peer does here
        reaches the swarm's nursery (a failure ends that connection only)."""
        try:
            await self._serve_connection(conn)
        except Exception:
            log.warning("connection to %s failed unexpectedly", conn.peer.hex()[:16],
                        exc_info=True)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await conn.session.close()
                except Exception:
                    pass
            self._unregister(conn)

    async def _serve_connection(self, conn: Connection) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.session.start)
            await conn.session.event_started.wait()
            nursery.start_soon(self._identify, conn)
            while True:
                try:
                    mux = await conn.session.accept_stream()
                except Exception:
                    break
                limit = self.rcmgr.limits.max_streams_per_conn
                if len(conn.session.streams) > limit:
                    self.rcmgr.refuse("max_streams_per_conn", "")
                    log.debug("peer %s: over %d streams on one connection, resetting one",
                              conn.peer.hex()[:16], limit)
                    nursery.start_soon(mux.reset)
                    continue
                try:
                    scope = self.rcmgr.open_stream(conn.peer, "inbound")
                except LimitExceeded as exc:  # reset: the opener sees a reset stream
                    log.debug("peer %s: inbound stream reset: %s", conn.peer.hex()[:16], exc)
                    nursery.start_soon(mux.reset)
                    continue
                nursery.start_soon(self._inbound_stream, conn, mux, scope)
            nursery.cancel_scope.cancel()

    async def _inbound_stream(self, conn: Connection, mux, scope: StreamScope) -> None:
        try:
            await self._serve_stream(conn, mux, scope)
        finally:
            scope.done()

    async def _serve_stream(self, conn: Connection, mux, scope: StreamScope) -> None:
        stream = Stream(conn, mux)
        handlers = self.handlers
        try:
            # a plain scope, not fail_after (a generator context manager): once per stream
            with trio.CancelScope(
                    deadline=trio.current_time() + self.options.negotiate_timeout) as timer:
                proto, answer = await negotiate_in_lazily(
                    stream, handlers.__contains__, lambda: list(handlers),
                    hold=isinstance(mux, MuxStream))
            if timer.cancelled_caught:
                raise trio.TooSlowError
            # our echo goes with the handler's first write (one frame with its answer), or
            # before the handler first waits to read
            stream._lazy_out = answer
            scope.set_protocol(proto)
        except Exception as exc:  # too slow, not multistream, reset, over a limit: that one
            log.debug("inbound stream from %s: %r", conn.peer.hex()[:16], exc)
            await stream.reset()
            return
        stream.protocol = proto
        self.traffic.opened(proto, "inbound")
        handler = handlers.get(proto)
        if handler is None:  # removed meanwhile
            await stream.reset()
            return
        try:
            await handler(stream)
        except Exception:
            log.debug("handler for %s failed", proto, exc_info=True)
            await stream.reset()

    async def disconnect(self, peer: bytes) -> None:
        for conn in list(self.conns.get(peer, ())):
            await conn.close()

    # -- streams -------------------------------------------------------------------------------
    def set_stream_handler(self, protocol: str, handler: Handler) -> None:
        self.handlers[protocol] = handler
        self._schedule_push()

    def remove_stream_handler(self, protocol: str) -> None:
        if self.handlers.pop(protocol, None) is not None:
            self._schedule_push()

    async def new_stream(self, peer: bytes, protocols: Sequence[str],
                         timeout: float | None = None) -> Stream:
        timeout = timeout or self.options.dial_timeout
        with trio.fail_after(timeout):
            conn = await self.dial(peer, timeout=timeout)
            return await conn.open_stream(protocols, self.options.negotiate_timeout)

    # -- identify ------------------------------------------------------------------------------
    def _identify_message(self, conn: Connection | None) -> idproto.Identify:
        addrs = self.addresses.for_peer(conn.remote_addr if conn is not None else None)
        return idproto.Identify(
            public_key=self.identity.public_key,
            listen_addrs=list(addrs),
            protocols=sorted(self.handlers),
            observed_addr=conn.remote_addr if conn is not None else b"",
            protocol_version=idproto.PROTOCOL_VERSION,
            agent_version=self.options.agent_version,
        )

    async def _serve_identify(self, stream: Stream) -> None:
        await stream.write_and_close(self._identify_message(stream.conn).framed())

    async def _read_identify(self, stream: Stream) -> idproto.Identify:
        with FrameDecoder(idproto.MAX_MESSAGE,
                          memory=self.rcmgr.memory.for_buffers(stream.conn.peer)) as decoder:
            while True:
                frame = decoder.next_frame()
                if frame is not None:
                    return idproto.decode(frame)
                data = await stream.read()
                if not data:
                    raise idproto.IdentifyError("the stream ended before the identify message")
                decoder.receive_data(data)

    def _take_identify(self, conn: Connection, msg: idproto.Identify) -> None:
        peer = conn.peer
        if msg.public_key and msg.public_key != conn.remote_public_key:
            raise idproto.IdentifyError("identify names a key other than the handshake's")
        self.peerstore.protocols[peer] = msg.protocols
        if msg.agent_version:
            self.peerstore.agents[peer] = msg.agent_version[:256]
        addrs = [a for a in msg.listen_addrs if tcp_target(a) is not None or a]
        self.peerstore.add_addrs(peer, addrs)
        if addrs:
            self.peerstore.listen[peer] = [strip_p2p(bytes(a)) for a in addrs][
                :self.peerstore.max_addrs]
        else:
            self.peerstore.listen.pop(peer, None)
        if msg.observed_addr:
            conn.observed_addr = msg.observed_addr
            if conn.transport != "relay":  # over a relay it names the relay's side
                self.addresses.observe(msg.observed_addr, conn.remote_addr, conn.local_addr)

    async def _identify(self, conn: Connection) -> None:
        try:
            with trio.fail_after(self.options.negotiate_timeout * 2):
                stream = await conn.open_stream([idproto.ID], self.options.negotiate_timeout)
                try:
                    msg = await self._read_identify(stream)
                finally:
                    await stream.close()
            self._take_identify(conn, msg)
        except Exception as exc:  # a peer without identify, or a broken message
            log.debug("identify of %s failed: %r", conn.peer.hex()[:16], exc)
            conn.identified.set()
            return
        conn.identified.set()
        self._emit("peer_identified", conn.peer, list(msg.protocols))

    async def _serve_identify_push(self, stream: Stream) -> None:
        try:
            msg = await self._read_identify(stream)
            self._take_identify(stream.conn, msg)
        except Exception as exc:
            log.debug("identify push from %s refused: %r", stream.conn.peer.hex()[:16], exc)
            await stream.reset()
            return
        await stream.close()
        self._emit("peer_identified", stream.conn.peer, list(msg.protocols))

    def _schedule_push(self) -> None:
        if self._nursery is None or self._push_scheduled:
            return
        self._push_scheduled = True
        self._nursery.start_soon(self._push_all)

    async def _push_all(self) -> None:
        await trio.sleep(self.options.identify_push_delay)  # one push for a burst of changes
        self._push_scheduled = False
        async with trio.open_nursery() as nursery:
            for peer in list(self.conns):
                conn = self.connection(peer)
                if conn is not None and idproto.PUSH in self.peerstore.protocols.get(peer, ()):
                    nursery.start_soon(self._push_one, conn)

    async def _push_one(self, conn: Connection) -> None:
        try:
            with trio.fail_after(self.options.negotiate_timeout):
                stream = await conn.open_stream([idproto.PUSH], self.options.negotiate_timeout)
                await stream.write(self._identify_message(conn).framed())
                await stream.close()
        except Exception as exc:
            log.debug("identify push to %s failed: %r", conn.peer.hex()[:16], exc)

    # -- ping ------------------------------------------------------------------------------------
    async def _serve_ping(self, stream: Stream) -> None:
        pending = b""
        for _ in range(10_000):  # a bound on one stream's pings
            data = await stream.read()
            if not data:
                break
            pending += data
            while len(pending) >= PING_SIZE:
                await stream.write(pending[:PING_SIZE])
                pending = pending[PING_SIZE:]
        await stream.close()

    async def ping(self, peer: bytes, count: int = 1, timeout: float = 10.0) -> list[float]:
        import os

        with trio.fail_after(timeout):
            stream = await self.new_stream(peer, [PING], timeout)
            rtts = []
            try:
                for _ in range(count):
                    payload = os.urandom(PING_SIZE)
                    start = trio.current_time()
                    await stream.write(payload)
                    got = b""
                    while len(got) < PING_SIZE:
                        data = await stream.read()
                        if not data:
                            raise StreamError("the peer closed the ping stream")
                        got += data
                    if got[:PING_SIZE] != payload:
                        raise StreamError("the ping came back different")
                    rtts.append(trio.current_time() - start)
            finally:
                await stream.close()
        return rtts


class WsByteStream:
    """A WebSocket connection (binary messages) as the byte stream the upgrade runs on."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.remote = (ws.remote.address, ws.remote.port) if hasattr(ws.remote, "port") else None
        self.local = (ws.local.address, ws.local.port) if hasattr(ws.local, "port") else None
        self._early = b""

    def push_back(self, data: bytes) -> None:
        self._early = data + self._early

    async def read(self, n: int = 256 * 1024) -> bytes:
        from trio_websocket import ConnectionClosed

        while not self._early:
            try:
                msg = await self.ws.get_message()
            except ConnectionClosed:
                return b""
            self._early = msg.encode() if isinstance(msg, str) else bytes(msg)
        data, self._early = self._early[:n], self._early[n:]
        return data

    async def write(self, data: bytes) -> None:
        from trio_websocket import ConnectionClosed

        try:
            await self.ws.send_message(bytes(data))
        except ConnectionClosed as exc:
            raise ConnectionError(f"websocket closed: {exc}") from None

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(2):
                try:
                    await self.ws.aclose()
                except Exception:
                    pass


def _addr_of(endpoint, ws: bool) -> bytes:
    if not endpoint:
        return b""
    try:
        return tcp_multiaddr(str(endpoint[0]), int(endpoint[1]), ws)
    except ValueError:
        return b""


def _text_addr(addr: bytes) -> str:
    from ..maddr import text

    return text(addr)


def _is_quic(addr: bytes) -> bool:
    try:
        return any(code == P_QUIC_V1 for code, _ in split_multiaddr(addr))
    except ValueError:
        return False


def _ip_text(addr: bytes) -> str | None:
    """The IP of a binary ``/ip4|ip6/...`` multiaddr, else None."""
    try:
        code, value = split_multiaddr(addr)[0]
    except (ValueError, IndexError):
        return None
    if code == P_IP4 and len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if code == P_IP6 and len(value) == 16:
        return str(ipaddress.IPv6Address(value))
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _show(addr: bytes) -> str:
    target = tcp_target(addr)
    if target is None:
        return addr.hex()
    host, port, _ = target
    return f"{host}:{port}"
