"""CIDs: known vectors from kubo and the specs, and every malformed input refused as InvalidCID."""

import pytest

from p2pd.blocks import CID, Codec, HashCode, Multibase
from p2pd.blocks import multihash as mhash
from p2pd.errors import InvalidCID
from p2pd.varint import encode_uvarint

V0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
V1 = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO_RAW = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
# libp2p/specs peer-ids: the same RSA peer id as a bare multihash and as a CIDv1 (libp2p-key).
PEER_B58 = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
PEER_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"

SHA256_MH = CID.decode(V0).multihash


def v1_bytes(codec: int = Codec.RAW, mh: bytes = SHA256_MH, version: int = 1) -> bytes:
    return encode_uvarint(version) + encode_uvarint(codec) + mh


# -- known vectors --------------------------------------------------------------------------
def test_v0_and_v1_of_the_same_node_convert_both_ways():
    v0 = CID.decode(V0)
    v1 = CID.decode(V1)
    assert (v0.version, v0.codec) == (0, Codec.DAG_PB)
    assert (v1.version, v1.codec) == (1, Codec.DAG_PB)
    assert v0.multihash == v1.multihash
    assert str(v0.to_v1()) == V1
    assert str(v1.to_v0()) == V0
    assert v0.to_v1() == v1 and v0 != v1


def test_raw_cid_of_hello():
    cid = CID.for_block(b"hello")
    assert str(cid) == HELLO_RAW
    assert CID.decode(HELLO_RAW) == cid
    assert cid.verify(b"hello") and not cid.verify(b"hellO")
    assert cid.hash_code is HashCode.SHA2_256
    assert cid.digest.hex() == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_dag_pb_v0_for_block():
    # The empty UnixFS directory node: kubo's well-known QmUNLL... CID.
    cid = CID.for_block(b"\x0a\x02\x08\x01", Codec.DAG_PB, 0)
    assert str(cid) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def test_libp2p_key_cid_of_a_peer_id():
    mh = CID.decode(PEER_B58).multihash  # a peer id is a bare sha2-256 multihash here
    cid = CID.v1(Codec.LIBP2P_KEY, mh)
    assert str(cid) == PEER_CID
    parsed = CID.decode(PEER_CID)
    assert parsed.codec is Codec.LIBP2P_KEY and parsed.multihash == mh


def test_identity_cid():
    cid = CID.v1(Codec.RAW, mhash.identity(b"abc"))
    assert bytes(cid) == b"\x01\x55\x00\x03abc"
    assert cid.verify(b"abc") and not cid.verify(b"abd")
    assert CID.decode(str(cid)) == cid


@pytest.mark.parametrize("base", list(Multibase))
def test_v1_round_trips_in_every_base(base: Multibase):
    cid = CID.decode(V1)
    text = cid.encode(base)
    assert text[0] == base.value
    assert CID.decode(text) == cid


def test_binary_forms():
    v0 = CID.decode(V0)
    assert bytes(v0) == v0.multihash and len(bytes(v0)) == 34
    assert CID.decode(bytes(v0)) == v0
    v1 = CID.decode(V1)
    assert bytes(v1)[:2] == b"\x01\x70"
    assert CID.decode(bytes(v1)) == v1
    assert CID.decode(bytearray(bytes(v1))) == v1
    assert CID.decode(memoryview(bytes(v1))) == v1


def test_read_parses_one_embedded_cid_and_returns_where_it_ends():
    v1 = bytes(CID.decode(V1))
    v0 = bytes(CID.decode(V0))
    data = b"\xff" + v1 + v0 + b"tail"
    cid, end = CID.read(data, 1)
    assert cid == CID.decode(V1) and end == 1 + len(v1)
    cid, end = CID.read(data, end)
    assert cid == CID.decode(V0) and data[end:] == b"tail"


def test_cids_are_hashable_values():
    assert {CID.decode(V1), CID.decode(V1), CID.decode(V0)} == {CID.decode(V1), CID.decode(V0)}
    assert repr(CID.decode(V1)) == f"CID({V1!r})"
    assert CID.decode(CID.decode(V1)) == CID.decode(V1)


def test_v0_is_written_only_in_base58btc():
    v0 = CID.decode(V0)
    assert v0.encode(Multibase.BASE58BTC) == V0
    with pytest.raises(InvalidCID, match="base58btc"):
        v0.encode(Multibase.BASE32)


def test_only_dag_pb_sha256_has_a_v0_form():
    with pytest.raises(InvalidCID, match="v0 form"):
        CID.for_block(b"x").to_v0()
    with pytest.raises(InvalidCID, match="dag-pb"):
        CID.for_block(b"x", Codec.RAW, 0)
    with pytest.raises(InvalidCID, match="version 2"):
        CID.for_block(b"x", Codec.RAW, 2)
    with pytest.raises(InvalidCID, match="32-byte"):
        CID.v0(b"\x00" * 31)


# -- malformed input: always InvalidCID, always with a reason -------------------------------
BAD_BYTES = [
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(b"\x01", "truncated", id="one-byte"),
    pytest.param(v1_bytes(version=2), "unsupported CID version 2", id="version-2"),
    pytest.param(v1_bytes(version=3), "unsupported CID version 3", id="version-3"),
    pytest.param(v1_bytes(version=0), "unsupported CID version 0", id="version-0-v1-form"),
    pytest.param(b"\x81\x00\x55" + SHA256_MH, "not minimally encoded", id="non-minimal-version"),
    pytest.param(v1_bytes(codec=0x71), "unsupported multicodec 0x71", id="unknown-codec"),
    pytest.param(b"\x01\xd5\x00" + SHA256_MH, "not minimally encoded", id="non-minimal-codec"),
    pytest.param(
        v1_bytes(mh=b"\x13\x40" + b"\x00" * 64),
        "unsupported multihash function 0x13",
        id="unknown-hash-sha512",
    ),
    pytest.param(
        v1_bytes(mh=b"\x12\x1f" + b"\x00" * 31), "32-byte digest, got 31", id="short-digest"
    ),
    pytest.param(
        v1_bytes(mh=b"\x12\x21" + b"\x00" * 33), "32-byte digest, got 33", id="long-digest"
    ),
    pytest.param(v1_bytes()[:-1], "truncated multihash", id="truncated-digest"),
    pytest.param(v1_bytes()[:3], "truncated varint", id="truncated-after-hash-code"),
    pytest.param(v1_bytes()[:2], "malformed multihash", id="truncated-before-multihash"),
    pytest.param(SHA256_MH[:-1], "truncated CIDv0", id="truncated-v0"),
    pytest.param(v1_bytes() + b"\x00", "1 unexpected bytes after the CID", id="trailing-v1"),
    pytest.param(SHA256_MH + b"\x00\x00", "2 unexpected bytes after the CID", id="trailing-v0"),
    pytest.param(
        v1_bytes(mh=b"\x00\x81\x01" + b"a" * 129), "identity multihash of 129 bytes", id="too-long"
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_BYTES)
def test_malformed_binary_cid_raises_invalid_cid(data: bytes, message: str):
    with pytest.raises(InvalidCID, match=message):
        CID.decode(data)


def _flip_last(text: str, alphabet: str) -> str:
    last = text[-1]
    return text[:-1] + alphabet[(alphabet.index(last) + 1) % len(alphabet)]


BAD_TEXT = [
    pytest.param("", "empty CID string", id="empty"),
    pytest.param("b", "truncated", id="prefix-only"),
    pytest.param("z" + V0, "must not carry a multibase prefix", id="v0-with-multibase-prefix"),
    pytest.param("b" + CID.decode(V0).multihash.hex(), "invalid CID", id="v0-bytes-as-bad-base32"),
    pytest.param("f" + SHA256_MH.hex(), "must not carry a multibase prefix", id="v0-in-base16"),
    pytest.param(V1[:-3], "invalid CID", id="truncated-text"),
    pytest.param(V1 + "aa", "invalid CID", id="trailing-text"),
    pytest.param(V1[:10] + "0" + V1[11:], "invalid base32", id="bad-base32-char"),
    pytest.param(V1[:10] + "A" + V1[11:], "mixes upper and lower case", id="mixed-case"),
    pytest.param(
        _flip_last(HELLO_RAW, "abcdefghijklmnopqrstuvwxyz234567"),
        "not canonical",
        id="non-canonical-base32",
    ),
    pytest.param("x" + V1[1:], "unknown multibase prefix 'x'", id="unknown-base"),
    pytest.param("Qm" + "0" * 44, "base58btc character '0'", id="bad-v0-char"),
    pytest.param("Qm" + "z" * 44, "not a valid CIDv0", id="v0-wrong-length"),
    pytest.param("QmBadCid", r"invalid CID 'QmBadCid': not a valid base58btc CIDv0", id="short-v0"),
    pytest.param(V0 + "x", "not a valid base58btc CIDv0", id="long-v0"),
    pytest.param("b" + "a" * 3000, "too long", id="too-long"),
    pytest.param("f" + v1_bytes(codec=0x71).hex(), "unsupported multicodec", id="unknown-codec"),
    pytest.param("f" + v1_bytes(version=2).hex(), "unsupported CID version 2", id="wrong-version"),
    pytest.param(
        "f" + v1_bytes(mh=b"\x13\x40" + b"\x00" * 64).hex(),
        "unsupported multihash function",
        id="unknown-hash",
    ),
    pytest.param(
        "f" + v1_bytes(mh=b"\x12\x10" + b"\x00" * 16).hex(), "32-byte digest", id="digest-length"
    ),
    pytest.param(" " + V1, "unknown multibase prefix", id="leading-space"),
    pytest.param(V1 + "\n", "invalid CID", id="trailing-newline"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TEXT)
def test_malformed_text_cid_raises_invalid_cid(text: str, message: str):
    with pytest.raises(InvalidCID, match=message):
        CID.decode(text)


@pytest.mark.parametrize("value", [None, 42, 1.5, ["b"], object()])
def test_non_cid_types_raise_invalid_cid(value):
    with pytest.raises(InvalidCID, match="cannot read a CID from"):
        CID.decode(value)


def test_v1_constructor_validates_the_multihash():
    with pytest.raises(InvalidCID, match="unsupported multicodec"):
        CID.v1(0x71, SHA256_MH)
    with pytest.raises(InvalidCID, match="unexpected bytes after the multihash"):
        CID.v1(Codec.RAW, SHA256_MH + b"\x00")


def test_invalid_cid_is_a_value_error_for_generic_callers():
    assert issubclass(InvalidCID, ValueError)
