"""Whatever a peer puts in an identify's observed address (and whatever remote address a
connection has), the address manager neither raises nor announces what it should not."""

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net.addrs import AddressManager, classify, split_ip

IFACES = [ipaddress.ip_interface(i) for i in ("127.0.0.1/8", "198.18.1.2/24", "::1/128")]

ip4 = st.binary(min_size=4, max_size=4).map(lambda r: b"\x04" + r)
tcp = st.binary(min_size=2, max_size=2).map(lambda r: b"\x06" + r)
addrs = st.one_of(st.binary(max_size=40), st.tuples(ip4, tcp).map(b"".join))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(addrs, addrs, addrs), max_size=30), addrs)
def test_observe_and_for_peer_never_raise(observations, remote):
    m = AddressManager(interfaces=lambda: IFACES, threshold=2)
    m.listen = [b"\x04\x00\x00\x00\x00\x06\x0f\xa1"]  # /ip4/0.0.0.0/tcp/4001
    for observed, observer, local in observations:
        m.observe(observed, observer, local)
    for candidate in m.candidates():
        ip = split_ip(candidate)
        assert ip is not None and classify(ip[0]) == "public"
    for addr in m.for_peer(remote):
        ip = split_ip(addr)
        assert ip is not None
        if classify(split_ip(remote)[0] if split_ip(remote) else ip[0]) != "loopback":
            assert classify(ip[0]) != "loopback"
