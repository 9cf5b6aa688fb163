"""Unsigned LEB128 varints as multiformats use them (unsigned-varint spec).

At most 9 bytes (63 bits) and minimally encoded: a trailing 0x00 continuation
byte is refused, as the spec requires, so every value has one encoding.
"""

from .errors import InvalidVarint

MAX_VARINT_BYTES = 9


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63."""
    if value < 0 or value >= 1 << 63:
        raise InvalidVarint(f"varint value out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset_after)``."""
    value = 0
    shift = 0
    end = len(data)
    pos = offset
    while True:
        if pos >= end:
            raise InvalidVarint("truncated varint")
        if pos - offset >= MAX_VARINT_BYTES:
            raise InvalidVarint("varint longer than 9 bytes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - offset > 1:
                raise InvalidVarint("varint is not minimally encoded")
            return value, pos
        shift += 7
