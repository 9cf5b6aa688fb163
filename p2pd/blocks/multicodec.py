"""The multicodec codes p2pd knows (table: github.com/multiformats/multicodec)."""

import enum


class Codec(enum.IntEnum):
    """Content codecs a CIDv1 may name."""

    RAW = 0x55
    DAG_PB = 0x70
    LIBP2P_KEY = 0x72


class HashCode(enum.IntEnum):
    """Multihash function codes."""

    IDENTITY = 0x00
    SHA2_256 = 0x12
