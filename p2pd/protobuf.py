"""The few protobuf wire rules the hand-written codecs need (identify, the Noise payload).

:func:`iter_fields` walks a message and refuses anything malformed with ``ValueError``;
:func:`field_bytes` and :func:`field_varint` write one field. Messages with generated
classes (the daemon protocol, kad, Bitswap) use protobuf itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from .varint import decode_uvarint, encode_uvarint


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` per field: varints as ints, the rest as bytes."""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = decode_uvarint(data, pos)
        num, wire = tag >> 3, tag & 7
        if num == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = decode_uvarint(data, pos)
        elif wire == 2:
            n, pos = decode_uvarint(data, pos)
            if pos + n > end:
                raise ValueError("a field runs past the end")
            value, pos = bytes(data[pos : pos + n]), pos + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > end:
                raise ValueError("a field runs past the end")
            value, pos = bytes(data[pos : pos + n]), pos + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield num, wire, value


def field_bytes(num: int, value: bytes) -> bytes:
    return encode_uvarint(num << 3 | 2) + encode_uvarint(len(value)) + value


def field_varint(num: int, value: int) -> bytes:
    return encode_uvarint(num << 3) + encode_uvarint(value)
