"""Whatever bytes arrive on a hole-punch stream, the decoder returns a message or raises
DcutrWireError; the address filter takes any list of byte strings."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import dcutr


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
def test_decode_only_raises_its_error(data):
    try:
        msg = dcutr.decode(data)
    except dcutr.DcutrWireError:
        return
    assert msg.type in (dcutr.CONNECT, dcutr.SYNC) and len(msg.addrs) <= dcutr.MAX_ADDRS


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([dcutr.CONNECT, dcutr.SYNC]),
       st.lists(st.binary(min_size=1, max_size=40), max_size=dcutr.MAX_ADDRS))
def test_messages_round_trip(kind, addrs):
    framed = dcutr.HolePunch(kind, addrs).framed()
    body = framed[1:] if framed[0] < 0x80 else framed[2:]
    assert dcutr.decode(body) == dcutr.HolePunch(kind, addrs)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=50))
def test_the_address_filter_takes_anything(addrs):
    out = dcutr._direct_public(addrs)
    assert len(out) <= dcutr.MAX_ADDRS and set(out) <= set(addrs)
