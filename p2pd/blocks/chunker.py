"""Chunk sizes: kubo's ``--chunker size-N`` and its bounds.

Apart from the importer so that ``p2pd add`` through a daemon (which imports nothing
of the importer: the daemon does the work) can check its flag.
"""

DEFAULT_CHUNK_SIZE = 262_144
#: Largest chunk we make: kubo refuses chunkers above 1 MiB (blocks must cross Bitswap).
MAX_CHUNK_SIZE = 1 << 20


def parse_chunker(spec: str) -> int:
    """Chunk size from kubo's ``--chunker`` syntax; only ``size-N`` is supported."""
    if not spec.startswith("size-"):
        raise ValueError(f"unsupported chunker {spec!r}: only 'size-N' (fixed size) is implemented")
    try:
        size = int(spec[5:])
    except ValueError:
        raise ValueError(f"chunker {spec!r}: N in 'size-N' must be a number of bytes") from None
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunker {spec!r}: size must be 1..{MAX_CHUNK_SIZE} bytes")
    return size
