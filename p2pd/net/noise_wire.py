"""Noise transport messages after the handshake, sans-IO (libp2p noise spec, "Wire Format").

Once the XX handshake is done each side holds two ChaCha20-Poly1305 cipher states (one per
direction): a 32-byte key and a 64-bit counter used as the nonce (4 zero bytes, then the
counter little-endian, Noise spec 12.3). Every transport message is a 2-byte big-endian
length and that many bytes of ciphertext (plaintext + 16-byte tag), so a message carries at
most 65,519 plaintext bytes.

:class:`NoiseCipherPair` seals outgoing bytes into as many full-size messages as they need
and opens whatever arrives, in any cut: it keeps the partial message and returns the
plaintexts of all complete ones. A message that fails authentication (forged, truncated,
reordered, replayed) raises :class:`NoiseWireError`; after that the connection is unusable
and must be closed. Nothing here does I/O.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import P2PDError

#: Most ciphertext bytes in one transport message (the 2-byte length's limit).
MAX_MESSAGE = 65535
TAG = 16
#: Most plaintext bytes in one transport message.
MAX_PLAINTEXT = MAX_MESSAGE - TAG
#: Noise forbids the nonce 2^64 - 1; a connection must end before it.
MAX_NONCE = (1 << 64) - 2

_nonce = struct.Struct("<4xQ").pack


class NoiseWireError(P2PDError):
    """A transport message failed authentication or the nonce space is used up."""


class NoiseCipherPair:
    """The two transport-phase cipher states of one connection."""

    __slots__ = ("_seal", "_open", "_send_n", "_recv_n", "_buf")

    def __init__(self, send_key: bytes, recv_key: bytes, send_nonce: int = 0,
                 recv_nonce: int = 0) -> None:
        if len(send_key) != 32 or len(recv_key) != 32:
            raise ValueError("Noise cipher keys are 32 bytes")
        self._seal = ChaCha20Poly1305(send_key).encrypt
        self._open = ChaCha20Poly1305(recv_key).decrypt
        self._send_n = send_nonce
        self._recv_n = recv_nonce
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of a partial message waiting for the rest."""
        return len(self._buf)

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` as wire bytes: length-prefixed messages of at most ``MAX_PLAINTEXT``."""
        view = memoryview(data).cast("B")
        total = len(view)
        if total <= MAX_PLAINTEXT:
            return self._seal_one(view)
        parts = []
        for start in range(0, total, MAX_PLAINTEXT):
            parts.append(self._seal_one(view[start:start + MAX_PLAINTEXT]))
        return b"".join(parts)

    def _seal_one(self, chunk: memoryview) -> bytes:
        n = self._send_n
        if n > MAX_NONCE:
            raise NoiseWireError("Noise send nonce space exhausted")
        self._send_n = n + 1
        sealed = self._seal(_nonce(n), chunk, None)
        return len(sealed).to_bytes(2, "big") + sealed

    def open(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Feed received wire bytes; the plaintexts of all messages now complete, in order."""
        buf = self._buf
        buf += data
        have = len(buf)
        pos = 0
        out: list[bytes] = []
        if have < 2:
            return out
        view = memoryview(buf)
        try:
            while have - pos >= 2:
                size = (buf[pos] << 8) | buf[pos + 1]
                end = pos + 2 + size
                if end > have:
                    break
                if size < TAG:
                    raise NoiseWireError(f"Noise message of {size} bytes is shorter than its tag")
                n = self._recv_n
                if n > MAX_NONCE:
                    raise NoiseWireError("Noise receive nonce space exhausted")
                try:
                    plain = self._open(_nonce(n), view[pos + 2:end], None)
                except InvalidTag:
                    raise NoiseWireError("Noise message failed authentication") from None
                self._recv_n = n + 1
                out.append(plain)
                pos = end
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out
