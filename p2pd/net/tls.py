"""libp2p TLS 1.3 (``/tls/1.0.0``, libp2p/specs tls/tls.md) over a byte stream: the
handshake and the secure channel the muxers run on.

OpenSSL (pyOpenSSL) does the TLS with memory BIOs, so the socket stays trio's: ciphertext
is moved between the BIOs and a :class:`~p2pd.net.channel.ByteStream` (or a WebSocket
stream) by this module. Python's :mod:`ssl` cannot be used: it will not accept a
self-signed client certificate without a CA. OpenSSL's own chain verification is turned
off by a verify callback that accepts whatever comes, and the chain is checked afterwards
with :func:`p2pd.net.tlscert.verify_chain` (the libp2p extension, the host key's
signature, the dialed peer id); a failure ends the connection before a byte of application
data is used. Both sides require a certificate; only TLS 1.3 is offered or accepted; no
SNI is sent.

ALPN carries the early muxer negotiation (connections/inlined-muxer-negotiation.md): the
client offers its muxers in order of preference then ``"libp2p"``; the server picks the
first offered one it supports and aborts when there is none. When a muxer is chosen, the
channel's ``muxer`` names it and the multistream muxer negotiation is skipped; with
``"libp2p"`` (or no ALPN) ``muxer`` is None and the muxer is negotiated as usual.

:class:`TlsChannel` has the surface of :class:`~p2pd.net.channel.SecureChannel`
(``read``/``write``/``push_back``/``close``, ``remote_peer``, ``remote_public_key``,
``is_initiator``), so Yamux and mplex run on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from OpenSSL import SSL

from ..errors import P2PDError
from . import tlscert
from .channel import RECV_SIZE, ChannelClosed
from .writelock import WriteLock

TLS = "/tls/1.0.0"
ALPN_LIBP2P = b"libp2p"
#: most plaintext taken from OpenSSL per call (one TLS record is at most 16 KiB)
RECORD = 16 * 1024


class TlsError(P2PDError, ConnectionError):
    """The TLS handshake or a TLS record failed; the message says what happened."""


def _accept_any(conn, cert, errno, depth, ok) -> bool:
    """OpenSSL's chain check would refuse a self-signed certificate; ours runs after."""
    return True


def _drain(ssl: SSL.Connection, hint: int = RECORD) -> bytes:
    """All ciphertext OpenSSL has queued for the peer."""
    out = []
    size = max(hint + hint // 512 + 256, 4096)
    while True:
        try:
            out.append(ssl.bio_read(size))
        except SSL.WantReadError:
            break
    return out[0] if len(out) == 1 else b"".join(out)


def _der(cert) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.to_cryptography().public_bytes(Encoding.DER)


class TlsSecurity:
    """Our certificate and the client and server OpenSSL contexts, made once per node;
    :meth:`handshake` secures one connection."""

    def __init__(self, identity, muxers: Sequence[str], *, certificate=None) -> None:
        """``certificate`` (``(DER, key)``) replaces ours: tests present bad ones."""
        from cryptography import x509

        self.muxers = list(muxers)
        cert_der, self._cert_key = certificate or tlscert.make_certificate(identity)
        self._cert = x509.load_der_x509_certificate(cert_der)
        self._client = self._context(server=False)
        self._server = self._context(server=True)
        self._alpn = [m.encode() for m in self.muxers] + [ALPN_LIBP2P]

    def _context(self, server: bool) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate(self._cert)
        ctx.use_privatekey(self._cert_key)
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if server:
            supported = {m.encode() for m in self.muxers} | {ALPN_LIBP2P}

            def select(conn, offered: list[bytes]) -> bytes:
                for proto in offered:  # the client's order of preference
                    if proto in supported:
                        return proto
                return b""  # no overlap: abort the handshake, as the spec says

            ctx.set_alpn_select_callback(select)
        return ctx

    async def handshake(self, raw, initiator: bool,
                        expected_peer: bytes | None = None) -> TlsChannel:
        """Run the handshake over ``raw`` (``read``/``write``/``close``) and check the
        peer's certificate; :class:`TlsError` or :class:`~p2pd.net.tlscert.TlsCertError`
        when it fails (the caller closes ``raw``)."""
        ssl = SSL.Connection(self._client if initiator else self._server, None)
        if initiator:
            ssl.set_alpn_protos(self._alpn)
            ssl.set_connect_state()
        else:
            ssl.set_accept_state()
        while True:
            try:
                ssl.do_handshake()
                done = True
            except SSL.WantReadError:
                done = False
            except SSL.Error as exc:
                alert = _drain(ssl)
                if alert:  # tell the peer why (a TLS alert), as far as it listens
                    try:
                        await raw.write(alert)
                    except (ChannelClosed, ConnectionError):
                        pass
                raise TlsError(f"TLS handshake failed: {_ssl_reason(exc)}") from None
            out = _drain(ssl)
            if out:
                await raw.write(out)
            if done:
                break
            data = await raw.read(RECV_SIZE)
            if not data:
                raise TlsError("the peer closed the connection during the TLS handshake")
            ssl.bio_write(data)
        if ssl.get_protocol_version_name() != "TLSv1.3":  # min_proto_version makes it so
            raise TlsError(f"the peer negotiated {ssl.get_protocol_version_name()}")
        leaf = ssl.get_peer_certificate()
        chain = ssl.get_peer_cert_chain() or []
        if leaf is None:
            raise TlsError("the peer sent no certificate")
        certs = [_der(c) for c in chain]
        if not initiator:  # OpenSSL leaves the client's leaf out of its chain
            certs.insert(0, _der(leaf))
        peer, public_key = tlscert.verify_chain(certs, expected_peer)
        alpn = ssl.get_alpn_proto_negotiated().decode("ascii", "replace")
        muxer = alpn if alpn in self.muxers else None
        return TlsChannel(raw, ssl, peer, public_key, initiator, muxer)


def _ssl_reason(exc: SSL.Error) -> str:
    try:
        return "; ".join(str(e[2]) for e in exc.args[0]) or type(exc).__name__
    except (IndexError, TypeError):
        return str(exc) or type(exc).__name__


class TlsChannel:
    """A TLS-secured connection: what the muxers read from and write to."""

    security = TLS

    def __init__(self, raw, ssl: SSL.Connection, peer: bytes, public_key: bytes,
                 is_initiator: bool, muxer: str | None) -> None:
        self._raw = raw
        self._ssl = ssl
        self.remote_peer = peer
        self.remote_public_key = public_key
        self.is_initiator = is_initiator
        #: the muxer ALPN settled on, or None (negotiate it with multistream)
        self.muxer = muxer
        self.remote_muxers: list[str] = []
        self._pending = bytearray()
        self._out: list[bytes] = []
        self._send_lock = WriteLock()
        self._eof = False
        self._closed = False

    # what MuxSession asks of its channel
    def get_remote_address(self):
        return self._raw.remote

    def get_transport_addresses(self):
        return []

    def get_connection_type(self):
        return None

    async def _flush(self) -> None:
        """Send what is queued, in the order it was encrypted (callers hold the lock)."""
        while self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            await self._raw.write(data)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ChannelClosed("the TLS channel is closed")
        try:
            self._ssl.sendall(data)
        except SSL.Error as exc:
            raise TlsError(f"TLS write failed: {_ssl_reason(exc)}") from None
        self._out.append(_drain(self._ssl, len(data)))  # no await since the encryption
        async with self._send_lock:
            await self._flush()

    async def _more(self) -> bytes | None:
        """Decrypted bytes (at least one), or None at the end of the channel."""
        ssl = self._ssl
        while not self._eof:
            chunks = []
            try:
                while True:
                    chunks.append(ssl.recv(RECORD))
            except SSL.WantReadError:
                pass
            except (SSL.ZeroReturnError, SSL.SysCallError):  # close_notify, or EOF
                self._eof = True
            except SSL.Error as exc:
                self._eof = True
                raise TlsError(f"TLS record refused: {_ssl_reason(exc)}") from None
            reply = _drain(ssl, 0)  # a key update answered while reading
            if reply:
                self._out.append(reply)
                if not self._send_lock.locked():
                    async with self._send_lock:
                        await self._flush()
            if chunks:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._eof:
                break
            data = await self._raw.read(RECV_SIZE)
            if not data:
                self._eof = True
                break
            ssl.bio_write(data)
        return None

    async def read(self, n: int | None = None) -> bytes:
        """``read()``: what was decrypted so far (at least one byte), ``b""`` at the end;
        ``read(n)``: exactly ``n`` bytes, fewer only at the end."""
        pending = self._pending
        if n is None or n < 0:
            if pending:
                data = bytes(pending)
                pending.clear()
                return data
            data = await self._more()
            return b"" if data is None else data
        while len(pending) < n:
            data = await self._more()
            if data is None:
                break
            pending += data
        data = bytes(pending[:n])
        del pending[:n]
        return data

    def push_back(self, data: bytes) -> None:
        self._pending[:0] = data

    async def close(self) -> None:
        """Send close_notify when no write is under way, then close the stream."""
        if self._closed:
            return
        self._closed = True
        self._eof = True
        if not self._send_lock.locked():
            try:
                self._ssl.shutdown()
                self._out.append(_drain(self._ssl, 0))
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    async with self._send_lock:
                        await self._flush()
            except Exception:
                pass
        await self._raw.close()
