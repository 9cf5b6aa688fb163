"""The Bitswap codec: round trips of arbitrary messages, and nothing but BitswapWireError
on garbage, mutated messages or hostile framing."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec
from p2pd.exchange.wire import (
    BitswapFrameDecoder,
    BitswapMessage,
    BitswapWireError,
    WantEntry,
    decode_message,
    encode_message,
)

cids = st.builds(
    lambda data, codec, v0: CID.for_block(data, Codec.DAG_PB, 0) if v0
    else CID.for_block(data, codec),
    st.binary(max_size=32), st.sampled_from([Codec.RAW, Codec.DAG_PB]), st.booleans())
blocks = st.builds(
    lambda data, codec, v0: (CID.for_block(data, Codec.DAG_PB, 0) if v0
                             else CID.for_block(data, codec), data),
    st.binary(max_size=300), st.sampled_from([Codec.RAW, Codec.DAG_PB]), st.booleans())
wants = st.builds(WantEntry, cids, st.integers(-(2**31), 2**31 - 1), st.booleans(),
                  st.booleans(), st.booleans())
messages = st.builds(BitswapMessage, st.lists(wants, max_size=6), st.booleans(),
                     st.lists(blocks, max_size=4), st.lists(cids, max_size=4),
                     st.lists(cids, max_size=4), st.integers(0, 2**31 - 1))


def body(frame: bytes) -> bytes:
    d = BitswapFrameDecoder()
    d.receive_data(frame)
    return d.next_frame()


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg):
    back = decode_message(body(encode_message(msg)))
    assert back.full == msg.full and back.pending_bytes == msg.pending_bytes
    assert [(w.cid, w.priority, w.cancel, w.want_have, w.send_dont_have) for w in back.wants] \
        == [(w.cid, w.priority, w.cancel, w.want_have, w.send_dont_have) for w in msg.wants]
    assert back.blocks == msg.blocks
    assert back.haves == msg.haves and back.dont_haves == msg.dont_haves


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_the_wire_error(data):
    try:
        decode_message(data)
    except BitswapWireError:
        pass


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_mutated_messages_only_raise_the_wire_error(msg, data):
    raw = bytearray(body(encode_message(msg)))
    for _ in range(data.draw(st.integers(1, 8))):
        if not raw:
            break
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw))
    except BitswapWireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(1, 16), max_size=8))
def test_framing_never_fails_otherwise(data, cuts):
    d = BitswapFrameDecoder()
    pos = 0
    try:
        for n in cuts:
            d.receive_data(data[pos:pos + n])
            pos += n
            while d.next_frame() is not None:
                pass
        d.receive_data(b"")
        while d.next_frame() is not None:
            pass
    except BitswapWireError:
        pass
