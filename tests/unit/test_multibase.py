"""Multibase: the spec's test vectors for every base we support, and strict decoding."""

import pytest

from p2pd.blocks import multibase
from p2pd.blocks.multibase import Multibase
from p2pd.errors import InvalidCID

# github.com/multiformats/multibase tests/test2.csv, test4.csv, test5.csv (base36 from the
# current spec revision), restricted to the bases p2pd supports.
VECTORS: dict[bytes, dict[Multibase, str]] = {
    b"yes mani !": {
        Multibase.BASE16: "f796573206d616e692021",
        Multibase.BASE16UPPER: "F796573206D616E692021",
        Multibase.BASE32: "bpfsxgidnmfxgsibb",
        Multibase.BASE32UPPER: "BPFSXGIDNMFXGSIBB",
        Multibase.BASE36: "k2lcpzo5yikidynfl",
        Multibase.BASE58BTC: "z7paNL19xttacUY",
        Multibase.BASE64: "meWVzIG1hbmkgIQ",
        Multibase.BASE64URL: "ueWVzIG1hbmkgIQ",
    },
    b"\x00yes mani !": {
        Multibase.BASE16: "f00796573206d616e692021",
        Multibase.BASE16UPPER: "F00796573206D616E692021",
        Multibase.BASE32: "bab4wk4zanvqw42jaee",
        Multibase.BASE32UPPER: "BAB4WK4ZANVQW42JAEE",
        Multibase.BASE36: "k02lcpzo5yikidynfl",
        Multibase.BASE58BTC: "z17paNL19xttacUY",
        Multibase.BASE64: "mAHllcyBtYW5pICE",
        Multibase.BASE64URL: "uAHllcyBtYW5pICE",
    },
    b"\x00\x00yes mani !": {
        Multibase.BASE16: "f0000796573206d616e692021",
        Multibase.BASE16UPPER: "F0000796573206D616E692021",
        Multibase.BASE32: "baaahszltebwwc3tjeaqq",
        Multibase.BASE32UPPER: "BAAAHSZLTEBWWC3TJEAQQ",
        Multibase.BASE36: "k002lcpzo5yikidynfl",
        Multibase.BASE58BTC: "z117paNL19xttacUY",
        Multibase.BASE64: "mAAB5ZXMgbWFuaSAh",
        Multibase.BASE64URL: "uAAB5ZXMgbWFuaSAh",
    },
}

CASES = [(data, base, text) for data, row in VECTORS.items() for base, text in row.items()]


def test_every_supported_base_has_a_vector():
    for row in VECTORS.values():
        assert set(row) == set(Multibase)


@pytest.mark.parametrize(("data", "base", "text"), CASES)
def test_spec_vector_encodes(data: bytes, base: Multibase, text: str):
    assert multibase.encode(data, base) == text


@pytest.mark.parametrize(("data", "base", "text"), CASES)
def test_spec_vector_decodes(data: bytes, base: Multibase, text: str):
    assert multibase.decode(text) == (base, data)


@pytest.mark.parametrize("base", list(Multibase))
def test_empty_bytes_round_trip(base: Multibase):
    assert multibase.decode(multibase.encode(b"", base)) == (base, b"")


def test_base64url_uses_the_url_alphabet():
    data = b"\xfb\xff\xfe"
    assert multibase.encode(data, Multibase.BASE64) == "m+//+"
    assert multibase.encode(data, Multibase.BASE64URL) == "u-__-"
    with pytest.raises(InvalidCID):
        multibase.decode("u+//+")
    with pytest.raises(InvalidCID):
        multibase.decode("m-__-")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty multibase string"),
        ("?abc", "unknown multibase prefix '?'"),
        ("Zabc", "unknown multibase prefix 'Z'"),  # base58flickr: not supported
        ("bpfsxgid0mfxgsibb", "base32"),  # '0' is not in the base32 alphabet
        ("bmf", "not canonical"),  # b"a" is "bme"; "f" sets a trailing bit
        ("bpfsxgidnmfxgsib", "base32"),  # impossible length
        ("bpfsxgiDnmfxgsibb", "mixes upper and lower case"),
        ("Bpfsxgidnmfxgsibb", "lower-case"),
        ("bpfsxgidnmfxgsibb====", "base32"),  # padding is not part of base32 (unpadded)
        ("f79657", "base16"),  # odd length
        ("f7965 73", "base16"),
        ("f79x6", "base16"),
        ("F796573206d616e692021", "letter case"),
        ("f796573206D616E692021", "letter case"),
        ("k2LCPZO5yikidynfl", "lower case"),
        ("k2lcpzo5yiki-ynfl", "base36 character"),
        ("z7paNL19xtt0cUY", "base58btc character '0'"),  # 0 is not in base58
        ("z7paNL19xttIcUY", "base58btc character 'I'"),
        ("meWVzIG1hbmkgIQ==", "base64"),  # padded
        ("meWVzIG1hbmkgIR", "not canonical"),  # trailing bits set
        ("meWVzI*1hbmkgIQ", "base64"),
        ("me", "base64"),  # impossible length
        ("ueWVzIG1hbmkgIQé", "base64url"),
    ],
)
def test_malformed_text_raises_invalid_cid_with_a_reason(text: str, message: str):
    with pytest.raises(InvalidCID, match=message):
        multibase.decode(text)


def test_non_text_input_is_refused():
    with pytest.raises(InvalidCID, match="must be text"):
        multibase.decode(b"bpfsxgidnmfxgsibb")  # type: ignore[arg-type]
