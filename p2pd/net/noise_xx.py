"""The libp2p Noise handshake (``/noise``), sans-IO: Noise_XX_25519_ChaChaPoly_SHA256.

Written from the Noise Protocol Framework (revision 34: sections 5 and 7.5, pattern XX)
and the libp2p noise spec. Three messages, each a 2-byte big-endian length and its bytes::

    -> e                      initiator's payload: empty
    <- e, ee, s, es           responder's identity payload
    -> s, se                  initiator's identity payload

An identity payload (``NoiseHandshakePayload``: ``identity_key`` 1, ``identity_sig`` 2,
``extensions`` 4 with ``stream_muxers`` 2) carries the libp2p public key and its
signature over ``"noise-libp2p-static-key:" + the Noise static key``; the peer id comes
from that key. A dialer that knows whom it dialed refuses any other peer.

:class:`Handshake` does the cryptography and nothing else: the caller moves the messages
(:func:`frame`, :class:`FrameReader`) and, when ``done``, takes the two transport keys for
:class:`~p2pd.net.noise_wire.NoiseCipherPair`. Every failure (a forged or cut message, a
bad signature, a low-order Diffie-Hellman key, the wrong peer) is a
:class:`HandshakeError`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import P2PDError
from ..peerkeys import PeerKeyError, peer_id_from_public_key, verify_signature
from ..protobuf import field_bytes, iter_fields

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
DHLEN = 32
TAG = 16
#: Largest handshake message (the 2-byte length's limit).
MAX_MESSAGE = 65535


class HandshakeError(P2PDError):
    """The Noise handshake failed; the connection must be closed."""


# -- the identity payload ----------------------------------------------------------------


@dataclass(slots=True)
class Payload:
    identity_key: bytes = b""
    identity_sig: bytes = b""
    stream_muxers: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        out = field_bytes(1, self.identity_key) + field_bytes(2, self.identity_sig)
        if self.stream_muxers:
            out += field_bytes(4, b"".join(field_bytes(2, m.encode())
                                           for m in self.stream_muxers))
        return out


def decode_payload(data: bytes) -> Payload:
    """A NoiseHandshakePayload; unknown fields are skipped (the spec allows new ones)."""
    p = Payload()
    try:
        for num, wire, value in iter_fields(data):
            if wire != 2:
                continue
            if num == 1:
                p.identity_key = value
            elif num == 2:
                p.identity_sig = value
            elif num == 4:
                for enum, ewire, evalue in iter_fields(value):
                    if enum == 2 and ewire == 2:
                        if len(p.stream_muxers) >= 16:
                            raise ValueError("more than 16 muxers")
                        p.stream_muxers.append(evalue.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise HandshakeError(f"malformed handshake payload: {exc}") from None
    return p


# -- framing ------------------------------------------------------------------------------


def frame(message: bytes) -> bytes:
    if len(message) > MAX_MESSAGE:
        raise HandshakeError("handshake message too long")
    return struct.pack(">H", len(message)) + message


class FrameReader:
    """Whole 2-byte-length-prefixed messages out of arbitrary cuts."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> bytes | None:
        if len(self.buf) < 2:
            return None
        n = struct.unpack_from(">H", self.buf)[0]
        if len(self.buf) < 2 + n:
            return None
        msg = bytes(self.buf[2 : 2 + n])
        del self.buf[: 2 + n]
        return msg

    def take_rest(self) -> bytes:
        rest = bytes(self.buf)
        self.buf.clear()
        return rest


# -- the symmetric state (Noise section 5.2) ------------------------------------------------


def _hkdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(ck, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    return out1, out2


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack("<Q", n)


class _Symmetric:
    def __init__(self) -> None:
        self.h = PROTOCOL_NAME  # exactly HASHLEN bytes: used as is
        self.ck = self.h
        self.k: ChaCha20Poly1305 | None = None
        self.n = 0
        self.mix_hash(b"")  # the empty prologue

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, key = _hkdf(self.ck, ikm)
        self.k, self.n = ChaCha20Poly1305(key), 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self.k is None:
            out = plaintext
        else:
            out = self.k.encrypt(_nonce(self.n), plaintext, self.h)
            self.n += 1
        self.mix_hash(out)
        return out

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self.k is None:
            out = ciphertext
        else:
            try:
                out = self.k.decrypt(_nonce(self.n), ciphertext, self.h)
            except InvalidTag:
                raise HandshakeError("handshake message failed authentication") from None
            self.n += 1
        self.mix_hash(ciphertext)
        return out

    def split(self) -> tuple[bytes, bytes]:
        return _hkdf(self.ck, b"")


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise HandshakeError("peer sent an invalid Diffie-Hellman key") from None


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


# -- the handshake ----------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    remote_peer: bytes
    remote_public_key: bytes  # the libp2p PublicKey protobuf
    remote_muxers: list[str]
    send_key: bytes
    recv_key: bytes


class Handshake:
    """One side of the XX handshake.

    Initiator: ``write()`` (message 1), ``read(m2)``, ``write()`` (message 3), then
    ``result``. Responder: ``read(m1)``, ``write()`` (message 2), ``read(m3)``, ``result``.
    ``identity_key`` is our libp2p PublicKey protobuf and ``sign`` signs with its private
    key; ``muxers`` are announced in the extensions; ``expected_peer`` (dialer) must be
    the peer the responder proves to be.
    """

    def __init__(self, initiator: bool, identity_key: bytes, sign: Callable[[bytes], bytes], *,
                 muxers: Sequence[str] = (), expected_peer: bytes | None = None,
                 static_key: X25519PrivateKey | None = None,
                 ephemeral_key: X25519PrivateKey | None = None) -> None:
        self.initiator = initiator
        self.sym = _Symmetric()
        self.s = static_key or X25519PrivateKey.generate()
        self.e = ephemeral_key or X25519PrivateKey.generate()
        self.re: bytes | None = None
        self.rs: bytes | None = None
        self.expected_peer = expected_peer
        self._payload = Payload(identity_key, sign(SIGNATURE_PREFIX + _public(self.s)),
                                list(muxers)).encode()
        self._step = 0  # messages handled so far
        self._remote: Payload | None = None
        self.result: Result | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def _expect(self, step: int, writing: bool) -> None:
        mine = (step % 2 == 0) == self.initiator
        if self._step != step or mine != writing or self.done:
            raise HandshakeError("handshake message out of order")

    def write(self) -> bytes:
        """Our next handshake message (unframed)."""
        sym = self.sym
        if self._step == 0:
            self._expect(0, True)
            e = _public(self.e)
            sym.mix_hash(e)
            out = e + sym.encrypt_and_hash(b"")
        elif self._step == 1:
            self._expect(1, True)
            e = _public(self.e)
            sym.mix_hash(e)
            sym.mix_key(_dh(self.e, self.re))  # ee
            s = sym.encrypt_and_hash(_public(self.s))
            sym.mix_key(_dh(self.s, self.re))  # es
            out = e + s + sym.encrypt_and_hash(self._payload)
        else:
            self._expect(2, True)
            s = sym.encrypt_and_hash(_public(self.s))
            sym.mix_key(_dh(self.s, self.re))  # se
            out = s + sym.encrypt_and_hash(self._payload)
            self._finish()
        self._step += 1
        return out

    def read(self, message: bytes) -> None:
        """The peer's next handshake message (unframed)."""
        sym = self.sym
        if self._step == 0:
            self._expect(0, False)
            if len(message) < DHLEN:
                raise HandshakeError("first handshake message too short")
            self.re = message[:DHLEN]
            sym.mix_hash(self.re)
            sym.decrypt_and_hash(message[DHLEN:])  # the initiator's payload: ignored
        elif self._step == 1:
            self._expect(1, False)
            if len(message) < DHLEN + DHLEN + TAG + TAG:
                raise HandshakeError("second handshake message too short")
            self.re = message[:DHLEN]
            sym.mix_hash(self.re)
            sym.mix_key(_dh(self.e, self.re))  # ee
            self.rs = sym.decrypt_and_hash(message[DHLEN : DHLEN * 2 + TAG])
            sym.mix_key(_dh(self.e, self.rs))  # es
            self._remote = self._check(sym.decrypt_and_hash(message[DHLEN * 2 + TAG :]))
        else:
            self._expect(2, False)
            if len(message) < DHLEN + TAG + TAG:
                raise HandshakeError("third handshake message too short")
            self.rs = sym.decrypt_and_hash(message[: DHLEN + TAG])
            sym.mix_key(_dh(self.e, self.rs))  # se
            self._remote = self._check(sym.decrypt_and_hash(message[DHLEN + TAG :]))
            self._finish()
        self._step += 1

    def _check(self, raw: bytes) -> Payload:
        payload = decode_payload(raw)
        if not payload.identity_key:
            raise HandshakeError("the peer sent no identity key")
        try:
            ok = verify_signature(payload.identity_key, SIGNATURE_PREFIX + self.rs,
                                  payload.identity_sig)
        except PeerKeyError as exc:
            raise HandshakeError(f"unusable identity key: {exc}") from None
        if not ok:
            raise HandshakeError("the identity signature does not verify")
        peer = peer_id_from_public_key(payload.identity_key)
        if self.expected_peer is not None and peer != self.expected_peer:
            raise HandshakeError("the peer is not the one dialed (peer id mismatch)")
        return payload

    def _finish(self) -> None:
        k1, k2 = self.sym.split()
        send, recv = (k1, k2) if self.initiator else (k2, k1)
        remote = self._remote
        self.result = Result(peer_id_from_public_key(remote.identity_key), remote.identity_key,
                             remote.stream_muxers, send, recv)


__all__ = ["Handshake", "HandshakeError", "Payload", "Result", "decode_payload", "frame",
           "FrameReader"]
