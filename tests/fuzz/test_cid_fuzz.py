"""Hypothesis: CIDs round-trip in every base; decoders given anything raise only our errors."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.blocks import CID, Codec, Multibase, multibase
from p2pd.blocks import multihash as mhash
from p2pd.errors import InvalidCID, InvalidVarint
from p2pd.varint import decode_uvarint, encode_uvarint

codecs = st.sampled_from(list(Codec))
bases = st.sampled_from(list(Multibase))


@st.composite
def cids(draw: st.DrawFn) -> CID:
    kind = draw(st.sampled_from(["v0", "v1-sha256", "v1-identity"]))
    if kind == "v0":
        return CID.v0(draw(st.binary(min_size=32, max_size=32)))
    if kind == "v1-sha256":
        mh = mhash.encode(0x12, draw(st.binary(min_size=32, max_size=32)))
    else:
        mh = mhash.identity(draw(st.binary(max_size=mhash.MAX_IDENTITY_DIGEST)))
    return CID.v1(draw(codecs), mh)


@given(cids(), bases)
def test_cid_round_trips_through_text_in_every_base(cid: CID, base: Multibase):
    if cid.version == 0:
        text = cid.encode()
        assert text.startswith("Qm") and len(text) == 46
    else:
        text = cid.encode(base)
        assert text[0] == base.value
    assert CID.decode(text) == cid


@given(cids())
def test_cid_round_trips_through_bytes(cid: CID):
    data = bytes(cid)
    assert CID.decode(data) == cid
    assert CID.read(b"\x00" + data + b"tail", 1) == (cid, 1 + len(data))


@given(cids())
def test_v0_v1_conversion_keeps_the_multihash(cid: CID):
    v1 = cid.to_v1()
    assert v1.multihash == cid.multihash and v1.version == 1
    if cid.version == 0:
        assert v1.to_v0() == cid


@given(st.binary(max_size=300), codecs, st.sampled_from([0, 1]))
def test_for_block_names_the_block(data: bytes, codec: Codec, version: int):
    if version == 0:
        codec = Codec.DAG_PB
    cid = CID.for_block(data, codec, version)
    assert cid.verify(data)
    assert not cid.verify(data + b"\x00")


@given(st.binary(max_size=200), bases)
def test_multibase_round_trips_any_bytes(data: bytes, base: Multibase):
    text = multibase.encode(data, base)
    assert multibase.decode(text) == (base, data)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trips(value: int):
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + b"\xff") == (value, len(encoded))


# -- arbitrary input: parse or raise only our error ---------------------------------------
def _prefixed_text(alphabet: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda prefix, body: prefix + body,
        st.sampled_from([b.value for b in Multibase] + ["Qm", "", "z", "?"]),
        st.text(alphabet=alphabet, max_size=120),
    )


def _text_of(cid: CID, base: Multibase) -> str:
    return cid.encode(base) if cid.version else cid.encode()


def _mutate(text: str) -> st.SearchStrategy[str]:
    """Replace one character of a valid CID text (or append, at the end) with up to two."""
    return st.builds(
        lambda i, ch: text[:i] + ch + text[i + 1 :], st.integers(0, len(text)), st.text(max_size=2)
    )


texts = st.one_of(
    st.text(max_size=200),
    _prefixed_text("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/-_="),
    # Letters whose case mapping lands in the base32 alphabet or changes the length.
    _prefixed_text("abcdefghijklmnopqrstuvwxyz234567ıſﬀß"),
    st.builds(_text_of, cids(), bases).flatmap(_mutate),
)


@st.composite
def cid_like_bytes(draw: st.DrawFn) -> bytes:
    """Bytes near valid CIDs: a valid one mutated, truncated or extended."""
    data = bytearray(bytes(draw(cids())))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "cut", "add"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        else:
            data += draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


binaries = st.one_of(st.binary(max_size=300), cid_like_bytes())


@settings(max_examples=500)
@given(texts)
def test_cid_decode_of_any_text_parses_or_raises_invalid_cid(text: str):
    try:
        cid = CID.decode(text)
    except InvalidCID as exc:
        assert str(exc)
    else:
        # Strict decoding: whatever parses is the one canonical spelling in its base.
        if cid.version == 0:
            assert cid.encode() == text
        else:
            assert cid.encode(Multibase(text[0])) == text


@settings(max_examples=500)
@given(binaries)
def test_cid_decode_of_any_bytes_parses_or_raises_invalid_cid(data: bytes):
    try:
        cid = CID.decode(data)
    except InvalidCID as exc:
        assert str(exc)
    else:
        assert bytes(cid) == data


@settings(max_examples=500)
@given(binaries, st.integers(0, 8))
def test_cid_read_at_any_offset_parses_or_raises_invalid_cid(data: bytes, offset: int):
    try:
        cid, end = CID.read(data, offset)
    except InvalidCID:
        return
    assert data[offset:end] == bytes(cid)


@settings(max_examples=500)
@given(texts)
def test_multibase_decode_of_any_text_parses_or_raises_invalid_cid(text: str):
    try:
        base, data = multibase.decode(text)
    except InvalidCID as exc:
        assert str(exc)
    else:
        assert multibase.encode(data, base) == text


@given(binaries)
def test_multihash_decode_of_any_bytes_parses_or_raises_invalid_cid(data: bytes):
    try:
        code, digest, end = mhash.decode(data)
    except InvalidCID:
        return
    assert mhash.encode(code, digest) == data[:end]


@settings(max_examples=500)
@given(st.binary(max_size=12), st.integers(0, 3))
def test_decode_uvarint_of_any_bytes_parses_or_raises_invalid_varint(data: bytes, offset: int):
    try:
        value, end = decode_uvarint(data, offset)
    except InvalidVarint as exc:
        assert str(exc)
    else:
        assert encode_uvarint(value) == data[offset:end]
