"""The Python face of QUIC packet protection in C (``p2pd._quic_native``, native/quic_protect.c
on OpenSSL's libcrypto); the only module that touches it.

:class:`Aead` and :class:`HeaderProtection` have the methods aioquic's objects of the same
job have (``encrypt``/``decrypt``, ``apply``/``remove``), so the QUIC core can put them in
its crypto contexts (p2pd.net.quic_core). What they save is per packet: the key schedule is
set once per key instead of at every call, and header protection is one C call instead of
a cipher update and a Python loop over the bytes.

``AVAILABLE`` is False when the module was not built (no OpenSSL headers at install time)
or ``P2PD_NATIVE=0``; then aioquic's own Python protection runs, and tests prove both
produce the same packets.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("p2pd.native")

try:
    if os.environ.get("P2PD_NATIVE") == "0":
        raise ImportError("disabled by P2PD_NATIVE=0")
    from p2pd._quic_native import ffi as _ffi
    from p2pd._quic_native import lib as _lib
except ImportError as exc:  # pragma: no cover - exercised by the fallback test run
    _ffi = _lib = None
    log.info("native QUIC packet protection unavailable (%s): aioquic's Python runs", exc)

AVAILABLE = _lib is not None

#: TLS 1.3 cipher suite AEAD names (aioquic's spelling) -> our cipher numbers
CIPHERS = {b"aes-128-gcm": 0, b"aes-256-gcm": 1, b"chacha20-poly1305": 2}
HP_CIPHERS = {b"aes-128-ecb": 0, b"aes-256-ecb": 1, b"chacha20": 2}
TAG = 16
#: packets up to this size go through the thread's scratch buffer (no allocation per
#: packet, and none per key: a connection sets up eight contexts)
SCRATCH = 65536 + 64
_local = threading.local()


def _out(size: int):
    if size > SCRATCH:
        return _ffi.new("uint8_t[]", size)
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = _ffi.new("uint8_t[]", SCRATCH)
    return buf


class Aead:
    """AEAD of one key (RFC 9001 5.3); ``error`` is raised when a packet fails to open."""

    __slots__ = ("_ctx", "_error")

    def __init__(self, cipher_name: bytes, key: bytes, iv: bytes,
                 error: type[Exception] = ValueError) -> None:
        if _lib is None:
            raise RuntimeError("native QUIC packet protection is not built")
        cipher = CIPHERS.get(cipher_name)
        if cipher is None or len(iv) != 12:
            raise ValueError(f"unsupported AEAD {cipher_name!r} or iv length {len(iv)}")
        ctx = _lib.p2pd_quic_aead_new(cipher, key, len(key), iv)
        if ctx == _ffi.NULL:
            raise ValueError(f"{cipher_name.decode()} refused a {len(key)}-byte key")
        self._ctx = _ffi.gc(ctx, _lib.p2pd_quic_aead_free)
        self._error = error

    def encrypt(self, data: bytes, associated_data: bytes, packet_number: int) -> bytes:
        out = _out(len(data) + TAG)
        n = _lib.p2pd_quic_seal(self._ctx, packet_number, associated_data,
                                len(associated_data), data, len(data), out)
        if n < 0:
            raise self._error("AEAD seal failed")
        return _ffi.buffer(out, n)[:]

    def decrypt(self, data: bytes, associated_data: bytes, packet_number: int) -> bytes:
        out = _out(max(len(data), TAG))
        n = _lib.p2pd_quic_open(self._ctx, packet_number, associated_data,
                                len(associated_data), data, len(data), out)
        if n < 0:
            raise self._error("packet authentication failed")
        return _ffi.buffer(out, n)[:]


class HeaderProtection:
    """Header protection of one key (RFC 9001 5.4)."""

    __slots__ = ("_ctx", "_pn", "_error")

    def __init__(self, cipher_name: bytes, key: bytes,
                 error: type[Exception] = ValueError) -> None:
        if _lib is None:
            raise RuntimeError("native QUIC packet protection is not built")
        cipher = HP_CIPHERS.get(cipher_name)
        if cipher is None:
            raise ValueError(f"unsupported header protection {cipher_name!r}")
        ctx = _lib.p2pd_quic_hp_new(cipher, key, len(key))
        if ctx == _ffi.NULL:
            raise ValueError(f"{cipher_name.decode()} refused a {len(key)}-byte key")
        self._ctx = _ffi.gc(ctx, _lib.p2pd_quic_hp_free)
        self._pn = _ffi.new("uint32_t *")
        self._error = error

    def apply(self, plain_header: bytes, protected_payload: bytes) -> bytes:
        out = _out(len(plain_header) + len(protected_payload))
        n = _lib.p2pd_quic_hp_apply(self._ctx, plain_header, len(plain_header),
                                    protected_payload, len(protected_payload), out)
        if n < 0:
            raise self._error("packet too short for header protection")
        return _ffi.buffer(out, n)[:]

    def remove(self, packet: bytes, pn_offset: int) -> tuple[bytes, int]:
        if pn_offset + 4 > SCRATCH:
            raise self._error("packet number offset out of range")
        out = _out(pn_offset + 4)
        n = _lib.p2pd_quic_hp_remove(self._ctx, packet, len(packet), pn_offset, out, self._pn)
        if n < 0:
            raise self._error("Packet is too short to sample")
        return _ffi.buffer(out, n)[:], self._pn[0]
