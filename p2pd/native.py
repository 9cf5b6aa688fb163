"""TEMPORARY stand-in until the native core lands: the API contract, in pure Python.

The native-core work replaces this file wholesale and keeps these names and
signatures (plus whatever it adds).
"""

import hashlib
from collections.abc import Sequence

Buffer = bytes | bytearray | memoryview
BACKEND = "fallback"


def sha256(data: Buffer) -> bytes:
    """SHA-256 of one buffer."""
    return hashlib.sha256(data).digest()


def sha256_many(bufs: Sequence[Buffer]) -> list[bytes]:
    """SHA-256 of each buffer, in one call."""
    return [hashlib.sha256(b).digest() for b in bufs]


def sha256_chunks(data: Buffer, chunk_size: int) -> list[bytes]:
    """Digest of each consecutive ``chunk_size`` slice of ``data`` (the last may be short).

    Empty ``data`` gives an empty list.
    """
    mv = memoryview(data)
    return [hashlib.sha256(mv[i : i + chunk_size]).digest() for i in range(0, len(mv), chunk_size)]


def sha256_mismatches(digests: Sequence[bytes], blocks: Sequence[Buffer]) -> list[int]:
    """Indices ``i`` where ``sha256(blocks[i]) != digests[i]``."""
    return [i for i, (d, b) in enumerate(zip(digests, blocks, strict=True)) if hashlib.sha256(b).digest() != d]
