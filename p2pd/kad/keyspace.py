"""The DHT key space: 256-bit keys (SHA-256 of the peer id or record key), XOR distance."""

from __future__ import annotations

from .. import native

KEY_BITS = 256


def key_for(raw: bytes) -> int:
    """The key of a peer id (its multihash bytes) or a record/content key, as an integer."""
    return int.from_bytes(native.sha256(raw), "big")


def distance(a: int, b: int) -> int:
    return a ^ b


def common_prefix_len(a: int, b: int) -> int:
    """Leading bits ``a`` and ``b`` share (256 when equal)."""
    return KEY_BITS - (a ^ b).bit_length()
