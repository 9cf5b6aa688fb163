"""The pubsub RPC codec: round trips, and nothing but PubsubWireError on garbage or
mutated RPCs; signature checks never raise anything but SignatureError."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.gossip.wire import (
    RPC,
    Control,
    Message,
    Prune,
    PubsubFrameDecoder,
    PubsubWireError,
    SignatureError,
    decode_rpc,
    encode_rpc,
    verify,
)

topics = st.text(max_size=20)
ids = st.lists(st.binary(min_size=1, max_size=40), max_size=5)
messages = st.builds(Message, topics, st.binary(max_size=100), st.binary(max_size=40),
                     st.binary(max_size=8), st.binary(max_size=64), st.binary(max_size=40))
controls = st.builds(Control, st.lists(st.tuples(topics, ids), max_size=3), ids,
                     st.lists(topics, max_size=3),
                     st.lists(st.builds(Prune, topics, ids, st.none() | st.integers(0, 10**6)),
                              max_size=3))
rpcs = st.builds(RPC, st.lists(st.tuples(st.booleans(), topics), max_size=4),
                 st.lists(messages, max_size=4), controls)


def body(frame: bytes) -> bytes:
    d = PubsubFrameDecoder()
    d.receive_data(frame)
    return d.next_frame()


@settings(max_examples=300, deadline=None)
@given(rpcs)
def test_round_trip(rpc):
    back = decode_rpc(body(encode_rpc(rpc)))
    assert back.subscriptions == rpc.subscriptions
    assert back.messages == rpc.messages
    assert back.control.ihave == [(t, i) for t, i in rpc.control.ihave if True]
    assert back.control.graft == rpc.control.graft
    assert [(p.topic, p.peers, p.backoff) for p in back.control.prune] == \
        [(p.topic, p.peers, p.backoff) for p in rpc.control.prune]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_the_wire_error(data):
    try:
        rpc = decode_rpc(data)
    except PubsubWireError:
        return
    for m in rpc.messages:  # whatever parses, signature checks fail cleanly
        try:
            verify(m)
        except SignatureError:
            pass


@settings(max_examples=300, deadline=None)
@given(rpcs, st.data())
def test_mutated_rpcs_only_raise_the_wire_error(rpc, data):
    raw = bytearray(body(encode_rpc(rpc)))
    for _ in range(data.draw(st.integers(1, 8))):
        if not raw:
            break
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_rpc(bytes(raw))
    except PubsubWireError:
        pass
