"""Noise (``/noise``): py-libp2p's XX handshake, then our transport-phase channel.

The handshake (XX_25519_ChaChaPoly_SHA256, identity payload signed with the libp2p key and
checked by :func:`p2pd.native.verify`) is py-libp2p's. What follows it is ours:
:class:`NoiseChannel` takes the two cipher states the handshake produced and moves bytes with
:class:`~p2pd.net.noise_wire.NoiseCipherPair` — reading whatever the socket has (up to
``RECV_SIZE`` at a time) and opening every complete message in it, and sealing a whole write
into full-size messages sent with one socket call. py-libp2p read each message with two
exact reads and copied it through a ``BytesIO``; on a 256 MiB upload that receive path,
not the cipher, was what limited us (docs/decisions.md).
"""

from __future__ import annotations

import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.security.base_session import BaseSession
from libp2p.security.noise.transport import Transport as _PyNoiseTransport

from .noise_wire import NoiseCipherPair, NoiseWireError

#: Most bytes asked of the socket per read.
RECV_SIZE = 256 * 1024


class NoiseChannel(BaseSession):
    """A secured connection (py-libp2p ``ISecureConn``) after a Noise handshake."""

    def __init__(self, cipher: NoiseCipherPair, raw_conn, *, local_peer=None,
                 local_private_key=None, remote_peer=None, remote_permanent_pubkey=None,
                 is_initiator: bool = False) -> None:
        super().__init__(
            local_peer=local_peer,
            local_private_key=local_private_key,
            remote_peer=remote_peer,
            remote_permanent_pubkey=remote_permanent_pubkey,
            is_initiator=is_initiator,
        )
        self._cipher = cipher
        self._raw = raw_conn
        self._pending = bytearray()  # opened plaintext not yet read
        self._send_lock = trio.Lock()
        self._eof = False

    @classmethod
    def after_handshake(cls, handshaken, raw_conn) -> NoiseChannel:
        """Take over from py-libp2p's ``SecureSession`` right after the handshake."""
        protocol = handshaken.conn.noise_state.noise_protocol
        send, recv = protocol.cipher_state_encrypt, protocol.cipher_state_decrypt
        cipher = NoiseCipherPair(bytes(send.k), bytes(recv.k), send.n, recv.n)
        return cls(cipher, raw_conn, local_peer=handshaken.local_peer,
                   local_private_key=handshaken.local_private_key,
                   remote_peer=handshaken.remote_peer,
                   remote_permanent_pubkey=handshaken.remote_permanent_pubkey,
                   is_initiator=handshaken.is_initiator)

    # -- ISecureConn / IRawConnection ---------------------------------------------------
    def get_remote_address(self):
        return self._raw.get_remote_address()

    def get_transport_addresses(self):
        return self._raw.get_transport_addresses()

    def get_connection_type(self):
        return self._raw.get_connection_type()

    async def write(self, data: bytes) -> None:
        # Seal and send under one lock: the wire order must be the nonce order.
        async with self._send_lock:
            await self._raw.write(self._cipher.seal(data))

    async def _more(self) -> list[bytes] | None:
        """The plaintexts of the next socket read; ``None`` at the end of the connection."""
        if self._eof:
            return None
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
        """``read()``: everything decrypted so far (waiting for at least one message);
        ``read(n)``: exactly ``n`` bytes, fewer only at the end of the connection."""
        if n == 0:
            return b""
        pending = self._pending
        if n is None or n < 0:
            if pending:
                data = bytes(pending)
                pending.clear()
                return data
            while True:
                pieces = await self._more()
                if pieces is None:
                    raise ConnectionClosedError("Connection closed")
                if pieces:
                    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        while len(pending) < n:
            pieces = await self._more()
            if pieces is None:
                if pending:
                    break
                raise ConnectionClosedError("Connection closed")
            for piece in pieces:
                pending += piece
        data = bytes(pending[:n])
        del pending[:n]
        return data

    async def close(self) -> None:
        self._eof = True
        await self._raw.close()


class NoiseTransport(_PyNoiseTransport):
    """py-libp2p's Noise handshake, handing over to :class:`NoiseChannel`."""

    async def secure_inbound(self, conn):
        return NoiseChannel.after_handshake(await super().secure_inbound(conn), conn)

    async def secure_outbound(self, conn, peer_id):
        return NoiseChannel.after_handshake(await super().secure_outbound(conn, peer_id), conn)
