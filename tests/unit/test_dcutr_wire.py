"""The hole-punch message codec and which addresses are worth a punch."""

import pytest
from multiaddr import Multiaddr

from p2pd.net import dcutr


def ma(text: str) -> bytes:
    return Multiaddr(text).to_bytes()


def test_connect_and_sync_decode_with_their_addresses():
    addrs = [ma("/ip4/203.0.113.7/tcp/4001"), ma("/ip6/2001:db8::1/tcp/4001")]
    framed = dcutr.HolePunch(dcutr.CONNECT, addrs).framed()
    assert dcutr.decode(framed[1:]) == dcutr.HolePunch(dcutr.CONNECT, addrs)
    assert dcutr.decode(dcutr.HolePunch(dcutr.SYNC).framed()[1:]).type == dcutr.SYNC


@pytest.mark.parametrize("data, says", [
    (b"\x08\x07", "unknown hole-punch message type 7"),
    (b"", "unknown hole-punch message type -1"),
    (b"\x08", "malformed"),
    (b"\x08\x64" + b"\x12\x01a" * (dcutr.MAX_ADDRS + 1), "more than"),
    (b"\x12" + b"\x00" * (dcutr.MAX_MESSAGE + 1), "limit"),
])
def test_bad_messages_are_refused_with_a_reason(data, says):
    with pytest.raises(dcutr.DcutrWireError, match=says):
        dcutr.decode(data)


def test_only_public_direct_addresses_are_punched_to():
    public = ma("/ip4/203.0.113.7/tcp/4001")
    keep = dcutr._direct_public([
        public, public,                                   # once
        ma("/ip4/198.18.0.2/tcp/4001"),                   # a home LAN
        ma("/ip4/127.0.0.1/tcp/4001"),                    # loopback
        ma("/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWGRUVh7aDRYmBpL6ZeB7TNVRyLTSPLeT6UmKzkDe3iEMf"
           "/p2p-circuit"),                                # relayed
        b"\xff\xff",                                       # not a multiaddr
    ])
    assert keep == [public]


@pytest.mark.parametrize("first, listening", [
    (b"\x13/multistream/1.0.0\n", True),                         # a listener: header, then waits
    (b"\x13/multistream/1.0.0\n\x0b/tls/1.0.0\n", False),        # a dialer: header and proposal
    (b"GET / HTTP/1.1\r\n", False),                              # not multistream
    (b"", False),                                                # closed at once
])
async def test_a_punch_server_side_tells_a_listener_from_a_simultaneous_open(first, listening):
    import trio
    import trio.testing

    from p2pd.net import swarm
    from p2pd.net.channel import ByteStream

    ours, theirs = trio.testing.memory_stream_pair()
    if first:
        await theirs.send_all(first)
    else:
        await theirs.aclose()
    raw = ByteStream(ours)
    with trio.fail_after(swarm.ROLE_WAIT + 2):
        assert await swarm._peer_is_listening(raw) is listening
    assert (await raw.read() if first else b"") == first  # all of it is put back
