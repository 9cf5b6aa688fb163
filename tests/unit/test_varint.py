"""Unsigned varints: the unsigned-varint spec's examples and every refusal."""

import pytest

from p2pd.errors import InvalidVarint
from p2pd.varint import decode_uvarint, encode_uvarint

# (value, encoding) from github.com/multiformats/unsigned-varint
VECTORS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (255, b"\xff\x01"),
    (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"),
    (2**63 - 1, b"\xff" * 8 + b"\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VECTORS)
def test_spec_vectors_encode_and_decode(value: int, encoded: bytes):
    assert encode_uvarint(value) == encoded
    assert decode_uvarint(encoded) == (value, len(encoded))


def test_decode_at_an_offset_returns_the_offset_after():
    data = b"xx\xac\x02rest"
    assert decode_uvarint(data, 2) == (300, 4)
    assert decode_uvarint(memoryview(data), 2) == (300, 4)
    assert decode_uvarint(bytearray(data), 2) == (300, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\xff\xff", "truncated"),
        (b"\x80" * 9 + b"\x01", "longer than 9 bytes"),
        (b"\xff" * 9 + b"\x01", "longer than 9 bytes"),
        (b"\x80\x00", "not minimally encoded"),
        (b"\x81\x00", "not minimally encoded"),
        (b"\xff\x80\x00", "not minimally encoded"),
    ],
)
def test_malformed_varints_are_refused(data: bytes, message: str):
    with pytest.raises(InvalidVarint, match=message):
        decode_uvarint(data)


def test_truncated_at_offset_is_refused():
    with pytest.raises(InvalidVarint, match="truncated"):
        decode_uvarint(b"\x01", 1)


@pytest.mark.parametrize("value", [-1, 2**63, 2**70])
def test_out_of_range_values_cannot_be_encoded(value: int):
    with pytest.raises(InvalidVarint, match="out of range"):
        encode_uvarint(value)


def test_invalid_varint_is_a_value_error_for_generic_callers():
    assert issubclass(InvalidVarint, ValueError)
