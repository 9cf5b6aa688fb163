"""Whatever bytes arrive on an AutoNAT stream, the decoders either return a message or
raise AutonatWireError; nothing else escapes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import autonat_wire as w


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_only_raise_their_error(data):
    for decode in (w.decode_v1, w.decode_v2, w.decode_dial_back, w.decode_dial_back_response):
        try:
            decode(data)
        except w.AutonatWireError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=60), max_size=10), st.integers(0, 2**64 - 1))
def test_dial_requests_round_trip(addrs, nonce):
    assert w.decode_v2(w.encode_v2(w.DialRequest(addrs, nonce))) == w.DialRequest(addrs, nonce)
