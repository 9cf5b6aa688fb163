"""A small, strict CBOR codec (RFC 8949) for the DAG-CBOR maps IPNS records carry.

Decodes unsigned and negative integers, byte and text strings, arrays, maps, false,
true and null, with definite lengths only; rejects indefinite lengths, tags, floats,
non-minimal integer encodings and duplicate map keys, as DAG-CBOR requires. Input is
untrusted: nesting depth, item counts and string lengths are bounded by the input's
own size, and every problem raises :class:`CBORError` naming it.

Encoding writes DAG-CBOR's canonical form: map keys sorted by length, then bytewise.
"""

from __future__ import annotations

from ..errors import P2PDError

MAX_DEPTH = 16


class CBORError(P2PDError, ValueError):
    pass


def decode(data: bytes) -> object:
    value, pos = _item(memoryview(data), 0, 0)
    if pos != len(data):
        raise CBORError(f"{len(data) - pos} bytes after the CBOR item")
    return value


def _head(buf: memoryview, pos: int) -> tuple[int, int, int]:
    if pos >= len(buf):
        raise CBORError("truncated CBOR item")
    first = buf[pos]
    major, info = first >> 5, first & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        raise CBORError(f"unsupported additional information {info} (indefinite or reserved)")
    size = 1 << (info - 24)
    if pos + size > len(buf):
        raise CBORError("truncated CBOR length")
    value = int.from_bytes(buf[pos : pos + size], "big")
    minimum = {1: 24, 2: 1 << 8, 4: 1 << 16, 8: 1 << 32}[size]
    if value < minimum:
        raise CBORError("non-minimal CBOR integer encoding")
    return major, value, pos + size


def _item(buf: memoryview, pos: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise CBORError(f"CBOR nested deeper than {MAX_DEPTH}")
    if pos < len(buf) and buf[pos] >> 5 == 7:
        simple = {0xF4: False, 0xF5: True, 0xF6: None}
        if buf[pos] in simple:
            return simple[buf[pos]], pos + 1
        raise CBORError("CBOR floats and other simple values are not supported")
    major, arg, pos = _head(buf, pos)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        end = pos + arg
        if end > len(buf):
            raise CBORError("CBOR string runs past the end")
        raw = bytes(buf[pos:end])
        if major == 2:
            return raw, end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CBORError("CBOR text string is not UTF-8") from None
    if major == 4:
        if arg > len(buf) - pos:
            raise CBORError("CBOR array longer than the input")
        out = []
        for _ in range(arg):
            value, pos = _item(buf, pos, depth + 1)
            out.append(value)
        return out, pos
    if major == 5:
        if 2 * arg > len(buf) - pos:
            raise CBORError("CBOR map longer than the input")
        out: dict = {}
        for _ in range(arg):
            key, pos = _item(buf, pos, depth + 1)
            if not isinstance(key, str | bytes | int):
                raise CBORError("CBOR map key must be a string or an integer")
            if key in out:
                raise CBORError(f"duplicate CBOR map key {key!r}")
            out[key], pos = _item(buf, pos, depth + 1)
        return out, pos
    raise CBORError("CBOR tags are not supported here")  # major 6


def _head_bytes(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise CBORError("integer too large for CBOR")


def encode(value: object) -> bytes:
    if value is False:
        return b"\xf4"
    if value is True:
        return b"\xf5"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return _head_bytes(0, value) if value >= 0 else _head_bytes(1, -1 - value)
    if isinstance(value, bytes):
        return _head_bytes(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return _head_bytes(3, len(raw)) + raw
    if isinstance(value, list | tuple):
        return _head_bytes(4, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted(((encode(k), encode(v)) for k, v in value.items()),
                       key=lambda kv: (len(kv[0]), kv[0]))
        return _head_bytes(5, len(items)) + b"".join(k + v for k, v in items)
    raise CBORError(f"cannot encode {type(value).__name__} as CBOR")
