"""The swarm's decoders on hostile bytes: multistream-select, the Noise handshake and its
payload, identify and binary multiaddrs raise only their own errors, whatever arrives."""

import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import identify as idproto
from p2pd.net.multistream import Dialer, Listener, MultistreamError, encode
from p2pd.net.noise_xx import Handshake, HandshakeError, decode_payload
from p2pd.net.swarm import split_multiaddr, tcp_target

chunks = st.lists(st.binary(max_size=64), max_size=8)
protocol_ids = st.text(min_size=1, max_size=20).filter(lambda t: "\n" not in t)
#: what a listener may serve: "na" (the refusal) and "ls" (the listing) are the protocol's own
served_ids = protocol_ids.filter(lambda t: t not in ("na", "ls"))


@given(chunks)
def test_listener_raises_only_multistream_errors(pieces):
    li = Listener({"/a"})
    try:
        for p in pieces:
            li.receive(p)
    except MultistreamError:
        pass


@given(st.lists(protocol_ids, min_size=1, max_size=4), chunks)
def test_dialer_raises_only_multistream_errors(protos, pieces):
    d = Dialer(protos)
    d.start()
    try:
        d.receive(encode("/multistream/1.0.0"))
        for p in pieces:
            d.receive(p)
    except MultistreamError:
        pass


@given(st.lists(served_ids, min_size=1, max_size=5), st.integers(1, 7))
def test_negotiation_in_any_cut_agrees(protos, cut):
    supported = set(protos[-1:])
    d, li = Dialer(protos), Listener(supported)
    a, b = d.start(), li.start()
    for _ in range(20):
        for i in range(0, len(a), cut):
            b += li.receive(a[i : i + cut])
        a = b""
        for i in range(0, len(b), cut):
            a += d.receive(b[i : i + cut])
        b = b""
        if d.done:
            break
    assert d.protocol == li.protocol == next(p for p in protos if p in supported)


def test_proposing_na_is_refused_not_agreed():
    """hypothesis found a dialer proposing "na" take the listener's refusal ("na") for
    its agreement; the listener never serves it."""
    d, li = Dialer(["na"]), Listener({"na"})
    a = d.start()
    b = li.start() + li.receive(a)
    try:
        d.receive(b)
    except MultistreamError:
        pass
    assert d.protocol is None and li.protocol is None


@given(st.binary(max_size=300))
def test_noise_payload_decoder_raises_only_handshake_errors(data):
    try:
        decode_payload(data)
    except HandshakeError:
        pass


_sk = nacl.signing.SigningKey(bytes(32))
_pub = b"\x08\x01\x12\x20" + bytes(_sk.verify_key)


@settings(max_examples=60)
@given(st.binary(max_size=400), st.booleans())
def test_noise_handshake_raises_only_handshake_errors(data, initiator):
    hs = Handshake(initiator, _pub, lambda d: _sk.sign(d).signature)
    try:
        if initiator:
            hs.write()
        hs.read(data)
    except HandshakeError:
        pass


@given(st.binary(max_size=500))
def test_identify_decoder_raises_only_identify_errors(data):
    try:
        idproto.decode(data)
    except idproto.IdentifyError:
        pass


@given(st.binary(max_size=80))
def test_multiaddr_split_raises_only_value_errors(data):
    try:
        split_multiaddr(data)
    except ValueError:
        pass
    tcp_target(data)  # never raises: None for anything it does not dial
