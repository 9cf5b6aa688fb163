"""The Kademlia wire codec: round trips, bounds, and nothing but KadWireError on garbage."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.kad.wire import (
    MAX_ADDRS,
    MAX_PEERS,
    Connection,
    KadFrameDecoder,
    KadMessage,
    KadWireError,
    MessageType,
    PeerInfo,
    Record,
    decode_message,
    encode_message,
)
from p2pd.proto import kad_pb2 as pb

peers = st.lists(st.builds(PeerInfo, st.binary(min_size=1, max_size=40),
                           st.lists(st.binary(min_size=1, max_size=30), max_size=4),
                           st.sampled_from(list(Connection))), max_size=8)
messages = st.builds(KadMessage, st.sampled_from(list(MessageType)), st.binary(max_size=64),
                     st.none() | st.builds(Record, st.binary(max_size=40), st.binary(max_size=200),
                                           st.text(max_size=20)),
                     peers, peers)


def frames_of(data: bytes) -> list[bytes]:
    d = KadFrameDecoder()
    d.receive_data(data)
    out = []
    while (f := d.next_frame()) is not None:
        out.append(f)
    return out


@settings(max_examples=200, deadline=None)
@given(messages)
def test_round_trip(m):
    [frame] = frames_of(encode_message(m))
    assert decode_message(frame) == m


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_raises_only_kad_wire_errors(data):
    try:
        decode_message(data)
    except KadWireError:
        pass
    try:
        frames_of(data)
    except KadWireError:
        pass


def test_thousands_of_closer_peers_are_cut_to_the_bound():
    msg = pb.Message(type=pb.Message.FIND_NODE, key=b"k")
    for i in range(5000):
        msg.closerPeers.add(id=i.to_bytes(4, "big") + b"p", addrs=[b"\x04\x7f\x00\x00\x01"] * 50)
    m = decode_message(msg.SerializeToString())
    assert len(m.closer) == MAX_PEERS and all(len(p.addrs) == MAX_ADDRS for p in m.closer)


def test_unknown_type_and_oversized_parts_are_refused():
    with pytest.raises(KadWireError, match="unknown message type"):
        decode_message(pb.Message(type=42).SerializeToString())
    with pytest.raises(KadWireError, match="key of"):
        decode_message(pb.Message(type=1, key=b"k" * 5000).SerializeToString())
    d = KadFrameDecoder()
    d.receive_data(b"\xff\xff\xff\xff\x7f")
    with pytest.raises(KadWireError, match="exceeds"):
        d.next_frame()
