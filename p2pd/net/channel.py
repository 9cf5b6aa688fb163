"""The trio edge of the connection upgrade: multistream-select and the Noise handshake over
a byte stream, then the secure channel the muxers run on.

:class:`ByteStream` gives any trio stream (a TCP socket, later a relayed stream) the
``read``/``write``/``close`` surface the upgrade uses, with bytes that arrived early (after
a negotiation message) handed out first. :func:`negotiate_out` / :func:`negotiate_in`
drive :mod:`p2pd.net.multistream`; :func:`noise_handshake` drives
:mod:`p2pd.net.noise_xx`; :class:`SecureChannel` seals and opens transport messages with
:class:`~p2pd.net.noise_wire.NoiseCipherPair` and is what Yamux and mplex read from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from .multistream import Dialer, Listener, MultistreamError
from .noise_wire import NoiseCipherPair, NoiseWireError
from .noise_xx import FrameReader, Handshake, HandshakeError, Result, frame
from .writelock import WriteLock

#: Most bytes asked of the socket per read.
RECV_SIZE = 256 * 1024


class ChannelClosed(ConnectionError):
    """The other side closed the connection (or it broke)."""


class ByteStream:
    """A trio stream with ``read``/``write``/``close`` and a pushback buffer."""

    def __init__(self, stream: trio.abc.Stream, remote: tuple | None = None,
                 local: tuple | None = None) -> None:
        self.stream = stream
        self.remote = remote
        self.local = local
        self._early = b""

    def push_back(self, data: bytes) -> None:
        self._early = data + self._early

    async def read(self, n: int = RECV_SIZE) -> bytes:
        if self._early:
            data, self._early = self._early[:n], self._early[n:]
            return data
        try:
            return await self.stream.receive_some(n)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ChannelClosed(str(exc) or "connection broken") from None

    async def write(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ChannelClosed(str(exc) or "connection broken") from None

    async def close(self) -> None:
        try:
            await self.stream.aclose()
        except Exception:
            pass


async def _negotiate(io, side) -> str:
    """Run one multistream-select side (a Dialer or Listener) over ``io`` (anything with
    read/write/push_back); bytes after the last negotiation message go back to ``io``."""
    await io.write(side.start())
    while not side.done:
        data = await io.read()
        if not data:
            raise MultistreamError("the peer closed the stream during negotiation")
        out = side.receive(data)
        if out:
            await io.write(out)
    if side.leftover:
        io.push_back(side.leftover)
    return side.protocol


async def negotiate_out(io, protocols: Sequence[str]) -> str:
    """Propose ``protocols`` in order on ``io``."""
    return await _negotiate(io, Dialer(protocols))


async def negotiate_in(io, supported, available: Callable[[], list[str]] | None = None) -> str:
    """Answer a dialer's proposals on ``io``; the protocol it settled on."""
    return await _negotiate(io, Listener(supported, available))


async def negotiate_in_lazily(io, supported,
                              available: Callable[[], list[str]] | None = None, *,
                              hold: bool = False) -> tuple[str, bytes]:
    """As :func:`negotiate_in`, but when the dialer sent data right behind its accepted
    proposal (a lazy dialer, which does not wait for our answer), our header and echo are
    not written here: they are returned, to go out with the handler's first write. With
    ``hold`` the echo of an accepted proposal is returned whatever the dialer sent: the
    caller sends it with the handler's first write, or before the handler first waits to
    read (a dialer waiting for it then gets it at once). Anything else (our header while
    the dialer is still proposing, ``na``) is answered at once, so no dialer is kept
    waiting on a proposal."""
    listener = Listener(supported, available)
    pending = listener.start()
    while not listener.done:
        data = await io.read()
        if not data:
            raise MultistreamError("the peer closed the stream during negotiation")
        pending += listener.receive(data)
        if listener.done and (hold or listener.leftover):
            break
        if pending:
            await io.write(pending)
            pending = b""
    if listener.leftover:
        io.push_back(listener.leftover)
    return listener.protocol, pending


async def noise_handshake(io: ByteStream, hs: Handshake) -> Result:
    """Run the three handshake messages over ``io``."""
    reader = FrameReader()

    async def next_message() -> bytes:
        while True:
            msg = reader.next()
            if msg is not None:
                return msg
            data = await io.read()
            if not data:
                raise HandshakeError("the peer closed the connection during the handshake")
            reader.feed(data)

    if hs.initiator:
        await io.write(frame(hs.write()))
        hs.read(await next_message())
        await io.write(frame(hs.write()))
    else:
        hs.read(await next_message())
        await io.write(frame(hs.write()))
        hs.read(await next_message())
    rest = reader.take_rest()
    if rest:
        io.push_back(rest)
    return hs.result


class SecureChannel:
    """A Noise-secured connection: what the muxers read from and write to."""

    def __init__(self, raw: ByteStream, result: Result, *, is_initiator: bool) -> None:
        self._raw = raw
        self._cipher = NoiseCipherPair(result.send_key, result.recv_key)
        self.remote_peer = result.remote_peer
        self.remote_public_key = result.remote_public_key
        self.remote_muxers = result.remote_muxers
        self.is_initiator = is_initiator
        self._pending = bytearray()
        self._send_lock = WriteLock()
        self._eof = False
        # transport bytes that came with the last handshake read
        self._early_cipher = getattr(raw, "_early", b"")
        if self._early_cipher:
            raw._early = b""

    # what MuxSession asks of its channel
    def get_remote_address(self):
        return self._raw.remote

    def get_transport_addresses(self):
        return []

    def get_connection_type(self):
        return None

    async def write(self, data: bytes) -> None:
        async with self._send_lock:  # the wire order must be the nonce order
            await self._raw.write(self._cipher.seal(data))

    async def _more(self) -> list[bytes] | None:
        if self._eof:
            return None
        if self._early_cipher:
            data, self._early_cipher = self._early_cipher, b""
        else:
            data = await self._raw.read(RECV_SIZE)
        if not data:
            self._eof = True
            return None
        try:
            return self._cipher.open(data)
        except NoiseWireError:
            self._eof = True
            raise

    async def read(self, n: int | None = None) -> bytes:
        """``read()``: everything decrypted so far (at least one message's worth), ``b""``
        at the end; ``read(n)``: exactly ``n`` bytes, fewer only at the end."""
        pending = self._pending
        if n is None or n < 0:
            if pending:
                data = bytes(pending)
                pending.clear()
                return data
            while True:
                pieces = await self._more()
                if pieces is None:
                    return b""
                if pieces:
                    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        while len(pending) < n:
            pieces = await self._more()
            if pieces is None:
                break
            for piece in pieces:
                pending += piece
        data = bytes(pending[:n])
        del pending[:n]
        return data

    def push_back(self, data: bytes) -> None:
        self._pending[:0] = data

    async def close(self) -> None:
        self._eof = True
        await self._raw.close()
