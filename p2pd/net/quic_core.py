"""QUIC v1 for libp2p (libp2p/specs quic/README.md), sans-IO, on aioquic's QuicConnection.

Nothing here touches a socket or a clock: :mod:`p2pd.net.quic` is the trio edge that owns
the UDP sockets and the timers and calls into this module with bytes and the time.

- :func:`quic_target` / :func:`quic_multiaddr`: ``/ip4|ip6/HOST/udp/PORT/quic-v1``.
- :class:`Libp2pQuicConnection`: aioquic's connection with two changes. The server asks
  for the client's certificate (libp2p authenticates both sides; aioquic only does this
  in tests, through ``tls.Context._request_client_certificate``), and the receive credit
  (MAX_STREAM_DATA, MAX_DATA) follows what the application *read*: aioquic's own doubles
  the window as data *arrives*, so a peer could fill our memory on a stream nobody reads.
- :func:`check_peer_certificate`: after the handshake, the peer's chain checked with
  :func:`p2pd.net.tlscert.verify_chain` (aioquic's own verification is off: libp2p
  certificates are self-signed); the peer id comes from the certificate's extension.
- :class:`DatagramRouter`: the demultiplexer of one UDP socket. A datagram goes to the
  connection its destination connection id names; an Initial of at least 1200 bytes from
  an unknown id starts a server connection (when the socket listens), within a bound on
  handshakes in progress; beyond ``retry_above`` of them new clients must prove their
  address with a Retry token first (RFC 9000 8.1). With an ``admission`` (the swarm's
  resource manager) a new client takes a pending-handshake slot and passes the per-IP,
  subnet and rate limits *before* a connection object exists or any TLS work is done:
  at its first Initial, or, once unvalidated clients hold their share of the slots, only
  after it answered a Retry (so spoofed sources, which never answer, cannot fill them).
  A client refused there gets a CONNECTION_CLOSE with CONNECTION_REFUSED in an Initial
  packet built without any state (at most 100 a second, always shorter than what came).
  An unsupported version gets a Version
  Negotiation; a short-header packet for a connection id we do not know is answered with a
  stateless reset (its token a keyed hash of the id, at most 100 a second, always shorter
  than what came); anything else (garbage, truncated headers) is dropped without an answer.
- Packet protection: once a key is set up (handshake and 1-RTT keys, and every key
  update) its AEAD and header protection objects are replaced by the native core's
  (:mod:`p2pd.native_quic`, OpenSSL's libcrypto with the key schedule kept per key) when
  it is built and ``QuicSettings.native_protection`` is on; Initial packets keep aioquic's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
from dataclasses import dataclass, field

from aioquic._crypto import CryptoError
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CIPHER_SUITES, CryptoPair, derive_key_iv_hp
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
    pull_quic_transport_parameters,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketPacer
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import Epoch, Group
from cryptography.hazmat.primitives.serialization import Encoding

from .. import native_quic
from ..errors import LimitExceeded, P2PDError
from .addrs import quic_multiaddr, quic_target  # noqa: F401  (the addresses live in addrs)
from .tlscert import TlsCertError, make_certificate, verify_chain

ALPN = "libp2p"
CID_LENGTH = 8
MIN_INITIAL = 1200
#: receive windows: how much a peer may send ahead of what the application read
STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 16 << 20
#: an error code for CONNECTION_CLOSE when the peer's certificate is refused:
#: CRYPTO_ERROR (0x100) + TLS alert bad_certificate (42)
BAD_CERTIFICATE = 0x100 + 42
#: the application closing the connection (libp2p: no error)
APP_CLOSE = 0


class QuicTransportError(P2PDError, ConnectionError):
    """A QUIC connection could not be made or was refused; the message says why."""


# -- addresses -------------------------------------------------------------------------------


# -- configuration and the connection ---------------------------------------------------------


@dataclass(slots=True)
class QuicSettings:
    """Transport parameters (defaults near go-libp2p's: 30 s idle, pings every 15 s)."""

    idle_timeout: float = 30.0
    keepalive: float = 15.0
    stream_window: int = STREAM_WINDOW
    connection_window: int = CONNECTION_WINDOW
    max_datagram_size: int = 1350
    #: datagrams this large once the handshake showed the peer takes them and the path
    #: is loopback (the kernel's loopback MTU is 64 KiB; aioquic has no path MTU
    #: discovery, so other paths keep ``max_datagram_size``); 0 turns it off
    loopback_datagram_size: int = 16384
    #: UDP segmentation and receive offload (Linux UDP_SEGMENT / UDP_GRO) when the kernel
    #: has them
    offload: bool = True
    #: inbound streams a peer may have open at once
    max_streams: int = 256
    #: server handshakes in progress on one socket; Initials beyond are dropped
    max_pending: int = 256
    #: handshakes in progress above which new clients must answer a Retry first
    retry_above: int = 64
    #: AEAD and header protection in the native core when it is built (else aioquic's)
    native_protection: bool = True


MIN_STATELESS_RESET = 21  # 1 + 4 unpredictable bytes + 16 of token
MAX_RESETS_PER_SECOND = 100
#: a stateless reset we send is this long at most (RFC 9000 recommends looking like a packet)
MAX_STATELESS_RESET = 43


class ResetTokens:
    """Stateless reset tokens as a keyed hash of the connection id (RFC 9000 10.3.2): the
    socket that forgot a connection can still answer its packets with the token its peer
    was given. The key is derived from the host key when one is given (so a restarted node
    still makes the tokens it gave out), else it lives as long as the process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)

    def token(self, cid: bytes) -> bytes:
        return hmac.new(self._key, cid, hashlib.sha256).digest()[:16]

    def reset_for(self, dcid: bytes, received: int) -> bytes | None:
        """A stateless reset for a packet of ``received`` bytes to ``dcid``: shorter than
        it (no loops between two endpoints that both forgot), else None."""
        size = min(received - 1, MAX_STATELESS_RESET)
        if size < MIN_STATELESS_RESET:
            return None
        head = bytearray(os.urandom(size - 16))
        head[0] = 0x40 | (head[0] & 0x3F)  # short header, fixed bit set
        return bytes(head) + self.token(dcid)


class Unpaced(QuicPacketPacer):
    """A pacer that never holds a packet back (loopback paths: see
    :meth:`Libp2pQuicConnection.use_loopback_path`)."""

    def next_send_time(self, now: float) -> float | None:
        return None


class Libp2pQuicConnection(QuicConnection):
    """aioquic's QuicConnection, mutual TLS and read-driven receive credit (see the
    module docstring). ``consumed(stream_id, n)`` says the application read ``n`` bytes."""

    def __init__(self, *, settings: QuicSettings, reset_tokens: ResetTokens | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        #: stateless reset tokens derived from our connection ids (so the socket can
        #: answer packets for connections it forgot); aioquic draws random ones
        self.reset_tokens = reset_tokens
        if reset_tokens is not None and self._host_cids[0].stateless_reset_token is not None:
            first = self._host_cids[0]
            first.stateless_reset_token = reset_tokens.token(first.cid)
        self._read_offsets: dict[int, int] = {}
        self._read_total = 0
        #: what the socket's router answers for a datagram of this connection
        self.routed = Routed(self)
        self._local_max_streams_bidi.value = self._local_max_streams_bidi.sent = (
            settings.max_streams)
        self._local_max_streams_uni.value = self._local_max_streams_uni.sent = 0

    _EPOCHS = {"initial": Epoch.INITIAL, "0rtt": Epoch.ZERO_RTT,
               "handshake": Epoch.HANDSHAKE, "1rtt": Epoch.ONE_RTT}

    def _log_key_updated(self, key_type: str, trigger: str) -> None:
        """aioquic calls this after every key setup and key update of the handshake and
        1-RTT packet spaces: the moment to put the native AEAD and header protection in."""
        super()._log_key_updated(key_type, trigger)
        if native_quic.AVAILABLE and self.settings.native_protection:
            role, epoch_name, _ = key_type.split("_", 2)
            pair = self._cryptos[self._EPOCHS[epoch_name]]
            sending = (role == "client") == self._is_client
            use_native_protection(pair.send if sending else pair.recv, trigger == "tls")

    def _parse_transport_parameters(self, data: bytes, from_session_ticket: bool = False) -> None:
        super()._parse_transport_parameters(data, from_session_ticket)
        if not from_session_ticket:
            params = pull_quic_transport_parameters(Buffer(data=data))
            # absent: the RFC default (65527); quic-go says 1452
            self.peer_max_udp_payload = params.max_udp_payload_size or 65527

    def use_loopback_path(self, size: int) -> None:
        """The path is loopback (once the handshake is confirmed): no pacing, and
        datagrams of up to ``size`` bytes (never above what the peer takes; 0: keep them).

        aioquic's pacer lets out at most a quarter of the congestion window (16 packets at
        most) per timer wakeup; on loopback, where there is no queue to spare, each wakeup
        then cost more than its packets (the wakeup, a system call, and as many wakeups at
        the peer): a stream to the go daemon (1452-byte packets) moved 14-20 MiB/s paced
        and 55-69 MiB/s unpaced, with a quarter of the CPU per byte on both sides. The
        congestion window still bounds what is in flight."""
        loss = self._loss
        if not isinstance(loss._pacer, Unpaced):
            loss._pacer = Unpaced(max_datagram_size=loss._pacer._max_datagram_size)
        size = min(size, getattr(self, "peer_max_udp_payload", 1200))
        if size <= self._max_datagram_size:
            return
        self._max_datagram_size = size
        loss._max_datagram_size = size
        loss._pacer._max_datagram_size = size
        loss._cc._max_datagram_size = size
        loss._cc.congestion_window = max(loss._cc.congestion_window, 10 * size)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if self._is_client:
            # aioquic offers a key share for every group it has (X448 and P-384 too): two
            # are enough for every libp2p peer (go's crypto/tls, js, rust) and cost less
            self.tls._supported_groups = [Group.X25519, Group.SECP256R1]
        else:
            self.tls._request_client_certificate = True

    def _replenish_connection_ids(self) -> None:
        before = len(self._host_cids)
        super()._replenish_connection_ids()
        if self.reset_tokens is not None:
            for issued in self._host_cids[before:]:
                issued.stateless_reset_token = self.reset_tokens.token(issued.cid)

    def consumed(self, stream_id: int, n: int) -> None:
        self._read_offsets[stream_id] = self._read_offsets.get(stream_id, 0) + n
        self._read_total += n

    def forget_stream(self, stream_id: int) -> None:
        self._read_offsets.pop(stream_id, None)

    def credit_due(self, stream_id: int) -> bool:
        """True when reading has freed enough window that the peer should hear of it."""
        stream = self._streams.get(stream_id)
        window = self.settings.stream_window
        if stream is not None and stream.max_stream_data_local:
            room = stream.max_stream_data_local - self._read_offsets.get(stream_id, 0)
            if room <= window // 2:
                return True
        limit = self._local_max_data
        return limit.value - self._read_total <= self.settings.connection_window // 2

    def peer_certificates(self) -> list[bytes]:
        """The DER certificates the peer presented (empty if none)."""
        tls = getattr(self, "tls", None)
        first = getattr(tls, "_peer_certificate", None)
        if first is None:
            return []
        rest = getattr(tls, "_peer_certificate_chain", [])
        return [c.public_bytes(Encoding.DER) for c in [first, *rest]]

    # -- aioquic hooks: flow-control credit from what was read ---------------------------
    def _write_stream_limits(self, builder, space, stream) -> None:
        if not stream.max_stream_data_local:
            return  # our own unidirectional stream: nothing to receive
        window = self.settings.stream_window
        target = self._read_offsets.get(stream.stream_id, 0) + window
        if target - stream.max_stream_data_local >= window // 2:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA, capacity=12,
                handler=self._on_max_stream_data_delivery, handler_args=(stream,))
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    def _write_connection_limits(self, builder, space) -> None:
        window = self.settings.connection_window
        max_data = self._local_max_data
        target = self._read_total + window
        if target - max_data.value >= window // 2:
            max_data.value = target
        for limit in (max_data, self._local_max_streams_bidi, self._local_max_streams_uni):
            if limit is not max_data and limit.sent - limit.used >= limit.value - limit.sent:
                continue  # MAX_STREAMS in batches, as aioquic does
            if limit.value != limit.sent:
                buf = builder.start_frame(
                    limit.frame_type, capacity=9,
                    handler=self._on_connection_limit_delivery, handler_args=(limit,))
                buf.push_uint_var(limit.value)
                limit.sent = limit.value


def use_native_protection(ctx, new_key: bool) -> None:
    """Replace the AEAD (and, for a new key rather than a key update, the header
    protection) of aioquic's CryptoContext ``ctx`` with the native core's, keyed from the
    context's secret exactly as aioquic keys its own."""
    key, iv, hp = derive_key_iv_hp(cipher_suite=ctx.cipher_suite, secret=ctx.secret,
                                   version=ctx.version)
    hp_name, aead_name = CIPHER_SUITES[ctx.cipher_suite]
    ctx.aead = native_quic.Aead(aead_name, key, iv, error=CryptoError)
    if new_key:
        ctx.hp = native_quic.HeaderProtection(hp_name, hp, error=CryptoError)


def make_configuration(identity, settings: QuicSettings, *, is_client: bool,
                       certificate=None) -> QuicConfiguration:
    """aioquic configuration with our libp2p certificate (``certificate``: a pair from
    :func:`p2pd.net.tlscert.make_certificate`, made here if None)."""
    from cryptography import x509

    cert_der, cert_key = certificate or make_certificate(identity)
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        certificate=x509.load_der_x509_certificate(cert_der),
        private_key=cert_key,
        verify_mode=ssl.CERT_NONE,  # self-signed: check_peer_certificate decides
        idle_timeout=settings.idle_timeout,
        max_data=settings.connection_window,
        max_stream_data=settings.stream_window,
        max_datagram_size=settings.max_datagram_size,
        connection_id_length=CID_LENGTH,
    )


def check_peer_certificate(conn: Libp2pQuicConnection,
                           expected_peer: bytes | None) -> tuple[bytes, bytes]:
    """``(peer id, public key protobuf)`` from the peer's libp2p certificate after the
    handshake; :class:`TlsCertError` if it has none, a bad one, or names another peer."""
    if conn.tls.alpn_negotiated != ALPN:
        raise TlsCertError(f"ALPN {conn.tls.alpn_negotiated!r}, not {ALPN!r}")
    chain = conn.peer_certificates()
    if not chain:
        raise TlsCertError("the peer sent no certificate (libp2p needs mutual TLS)")
    return verify_chain(chain, expected_peer)


# -- batching for UDP segmentation offload -------------------------------------------------------

#: what one sendmsg with UDP_SEGMENT may carry (Linux: 64 segments, 64 KiB of payload)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000


def gso_batches(datagrams, max_segments: int = GSO_MAX_SEGMENTS,
                max_bytes: int = GSO_MAX_BYTES) -> list[tuple[list[bytes], tuple, int]]:
    """Group consecutive datagrams for one ``sendmsg`` each with UDP_SEGMENT: the same
    destination, the same size (the last of a group may be shorter), at most
    ``max_segments`` and ``max_bytes``. ``[(payloads, addr, segment size)]``, in order."""
    out: list[tuple[list[bytes], tuple, int]] = []
    group: list[bytes] = []
    group_addr, segment, total = None, 0, 0
    for data, addr in datagrams:
        size = len(data)
        if (group and addr == group_addr and size <= segment
                and len(group) < max_segments and total + size <= max_bytes
                and len(group[-1]) == segment):
            group.append(data)
            total += size
            continue
        if group:
            out.append((group, group_addr, segment))
        group, group_addr, segment, total = [data], addr, size, size
    if group:
        out.append((group, group_addr, segment))
    return out


# -- the datagram router ------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Routed:
    """What :meth:`DatagramRouter.route` decided for one datagram (frozen: a connection
    keeps the one that routes a datagram to it)."""

    conn: Libp2pQuicConnection | None = None
    #: a server connection made for this datagram (the edge starts driving it)
    new: bool = False
    #: datagrams to send back at once (Version Negotiation, Retry, a stateless reset)
    replies: list[bytes] = field(default_factory=list)
    #: the datagram is the peer's stateless reset of ``conn``: the connection is gone
    reset: bool = False
    #: the new connection's reservation with the admission (released by its owner)
    scope: object = None


def encode_refusal(header, reason: str) -> bytes:
    """An Initial packet carrying CONNECTION_CLOSE (CONNECTION_REFUSED, ``reason``) for the
    client whose Initial had ``header``, built without a connection: the Initial keys come
    from the client's destination connection id alone (RFC 9001 5.2)."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
    builder = QuicPacketBuilder(host_cid=os.urandom(CID_LENGTH), peer_cid=header.source_cid,
                                version=header.version, is_client=False,
                                max_datagram_size=MIN_INITIAL)
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    phrase = reason.encode()[:100]
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=16 + len(phrase))
    buf.push_uint_var(QuicErrorCode.CONNECTION_REFUSED)
    buf.push_uint_var(QuicFrameType.PADDING)  # no frame caused it
    buf.push_uint_var(len(phrase))
    buf.push_bytes(phrase)
    datagrams, _ = builder.flush()
    return datagrams[0]


class DatagramRouter:
    """The connection-id table of one UDP socket (see the module docstring)."""

    def __init__(self, server_config: QuicConfiguration | None, settings: QuicSettings,
                 *, retry_secret_handler: QuicRetryTokenHandler | None = None,
                 reset_key: bytes | None = None, admission=None) -> None:
        self.server_config = server_config
        self.settings = settings
        #: the resource manager new clients are admitted by (``needs_validation()``,
        #: ``open_inbound(host, now, validated=...)`` raising LimitExceeded), or None
        self.admission = admission
        #: clients refused by it (answered with CONNECTION_REFUSED while the budget lasts)
        self.refused = 0
        self.conns: dict[bytes, Libp2pQuicConnection] = {}
        #: server connections whose handshake has not finished
        self.pending: set[Libp2pQuicConnection] = set()
        self._retry = retry_secret_handler or QuicRetryTokenHandler()
        self.reset_tokens = ResetTokens(reset_key)
        self.dropped = 0
        #: Retry packets sent (new clients above ``retry_above`` handshakes in progress)
        self.retries_sent = 0
        #: stateless resets sent, and the budget left in the current second
        self.resets_sent = 0
        self._reset_budget = (0.0, MAX_RESETS_PER_SECOND)
        #: the peers' reset tokens -> connection, rebuilt when stale (a new connection, or
        #: a second old: tokens also come in NEW_CONNECTION_ID frames)
        self._peer_tokens: dict[bytes, Libp2pQuicConnection] = {}
        self._tokens_at: float | None = None

    # -- the table ------------------------------------------------------------------------
    def add_cid(self, cid: bytes, conn: Libp2pQuicConnection) -> None:
        self.conns[cid] = conn

    def remove_cid(self, cid: bytes) -> None:
        self.conns.pop(cid, None)

    def forget(self, conn: Libp2pQuicConnection) -> None:
        self.pending.discard(conn)
        for cid in [c for c, v in self.conns.items() if v is conn]:
            del self.conns[cid]

    def established(self, conn: Libp2pQuicConnection) -> None:
        self.pending.discard(conn)
        self._tokens_at = None  # its peer's token is known now

    def _reset_of(self, data: bytes, now: float) -> Libp2pQuicConnection | None:
        """The connection whose peer sent ``data`` as a stateless reset, if any."""
        if len(data) < MIN_STATELESS_RESET:
            return None
        if self._tokens_at is None or now - self._tokens_at >= 1.0:
            self._peer_tokens = {}
            for conn in set(self.conns.values()):
                for cid in (conn._peer_cid, *conn._peer_cid_available):
                    if cid.stateless_reset_token:
                        self._peer_tokens[cid.stateless_reset_token] = conn
            self._tokens_at = now
        return self._peer_tokens.get(data[-16:])

    def client(self, settings: QuicSettings, config: QuicConfiguration) -> Libp2pQuicConnection:
        conn = Libp2pQuicConnection(configuration=config, settings=settings,
                                    reset_tokens=self.reset_tokens)
        self.conns[conn.host_cid] = conn
        return conn

    def _spend_reset(self, now: float) -> bool:
        second, left = self._reset_budget
        if now - second >= 1.0:
            second, left = now, MAX_RESETS_PER_SECOND
        if left <= 0:
            self._reset_budget = (second, left)
            return False
        self._reset_budget = (second, left - 1)
        return True

    # -- one datagram -----------------------------------------------------------------------
    def route(self, data: bytes, addr, now: float) -> Routed:
        if data and not data[0] & 0x80:
            # a short header (nearly every packet): our connection ids are CID_LENGTH
            # bytes right after the first byte; the connection checks the rest as it
            # decrypts. Parsing the whole header here took ~3 us a packet
            conn = self.conns.get(data[1 : 1 + CID_LENGTH])
            if conn is not None:
                return conn.routed
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            self.dropped += 1
            return Routed()
        conn = self.conns.get(header.destination_cid)
        if conn is not None:
            return conn.routed
        config = self.server_config
        if header.packet_type == QuicPacketType.ONE_RTT:
            # a peer that lost our connection says so with a stateless reset (its
            # connection id is random: it matches no connection, RFC 9000 10.3.1)
            reset_of = self._reset_of(data, now)
            if reset_of is not None:
                self.forget(reset_of)
                return Routed(reset_of, reset=True)
            # a packet for a connection we do not have (forgotten, or never ours): a
            # stateless reset tells a peer that lost us; at most so many a second
            self.dropped += 1
            reset = self.reset_tokens.reset_for(header.destination_cid, len(data))
            if reset is not None and self._spend_reset(now):
                self.resets_sent += 1
                return Routed(replies=[reset])
            return Routed()
        if config is None:
            self.dropped += 1  # a long-header packet for nobody, to a client socket
            return Routed()
        if (header.version is not None
                and header.packet_type != QuicPacketType.VERSION_NEGOTIATION
                and header.version not in config.supported_versions):
            if len(data) < MIN_INITIAL:
                self.dropped += 1
                return Routed()
            return Routed(replies=[encode_quic_version_negotiation(
                source_cid=header.destination_cid, destination_cid=header.source_cid,
                supported_versions=config.supported_versions)])
        if header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL:
            self.dropped += 1
            return Routed()
        if len(self.pending) >= self.settings.max_pending:
            self.dropped += 1
            return Routed()
        original_dcid, retry_scid = header.destination_cid, None
        admission = self.admission
        validated = False
        if len(self.pending) >= self.settings.retry_above or (
                admission is not None and admission.needs_validation()):
            if not header.token:
                scid = os.urandom(CID_LENGTH)
                token = self._retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=scid, now=now)
                self.retries_sent += 1
                return Routed(replies=[encode_quic_retry(
                    version=header.version, source_cid=scid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid, retry_token=token)])
            try:
                original_dcid = self._retry.validate_token(
                    address=addr, destination_cid=header.destination_cid,
                    token=header.token, now=now)
            except ValueError:
                self.dropped += 1
                return Routed()
            retry_scid = header.destination_cid
            validated = True
        scope = None
        if admission is not None:
            try:
                scope = admission.open_inbound(addr[0], now, validated=validated)
            except LimitExceeded as exc:
                self.refused += 1
                if not self._spend_reset(now):
                    return Routed()
                return Routed(replies=[encode_refusal(header, str(exc))])
        try:
            conn = Libp2pQuicConnection(
                configuration=config, settings=self.settings, reset_tokens=self.reset_tokens,
                original_destination_connection_id=original_dcid,
                retry_source_connection_id=retry_scid)
        except BaseException:
            if scope is not None:
                scope.done()
            raise
        self.conns[header.destination_cid] = conn
        self.conns[conn.host_cid] = conn
        self.pending.add(conn)
        return Routed(conn, new=True, scope=scope)
