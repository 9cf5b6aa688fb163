"""What we tell whom of our addresses (p2pd.net.addrs), with a made-up machine."""

import ipaddress

from multiaddr import Multiaddr

from p2pd.net.addrs import ACTIVATION_THRESHOLD, AddressManager, classify, dialable_from_here


def b(text: str) -> bytes:
    return Multiaddr(text).to_bytes()


def t(addrs: list[bytes]) -> list[str]:
    return [str(Multiaddr(a)) for a in addrs]


IFACES = [ipaddress.ip_interface(i) for i in (
    "127.0.0.1/8", "198.18.1.2/24", "203.0.113.7/24", "169.254.3.3/16", "::1/128",
    "fe80::1/64", "fd00::5/64")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(listen=("/ip4/0.0.0.0/tcp/4001",), **kw) -> AddressManager:
    m = AddressManager(interfaces=lambda: IFACES, **kw)
    m.listen = [b(a) for a in listen]
    return m


def test_classify():
    assert classify(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert classify(ipaddress.ip_address("192.168.1.1")) == "private"
    assert classify(ipaddress.ip_address("100.64.0.9")) == "private"
    assert classify(ipaddress.ip_address("198.18.4.4")) == "private"
    assert classify(ipaddress.ip_address("fd12::1")) == "private"
    assert classify(ipaddress.ip_address("169.254.1.1")) == "unusable"
    assert classify(ipaddress.ip_address("fe80::2")) == "unusable"
    assert classify(ipaddress.ip_address("0.0.0.0")) == "unusable"
    assert classify(ipaddress.ip_address("203.0.113.9")) == "public"
    assert classify(ipaddress.ip_address("8.8.8.8")) == "public"
    assert classify(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"


def test_unspecified_expands_to_interfaces_without_link_local():
    m = manager(("/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/ip4/0.0.0.0/tcp/4002/ws"))
    assert t(m.local()) == [
        "/ip4/127.0.0.1/tcp/4001", "/ip4/198.18.1.2/tcp/4001", "/ip4/203.0.113.7/tcp/4001",
        "/ip6/::1/tcp/4001", "/ip6/fd00::5/tcp/4001",
        "/ip4/127.0.0.1/tcp/4002/ws", "/ip4/198.18.1.2/tcp/4002/ws",
        "/ip4/203.0.113.7/tcp/4002/ws"]
    assert not any("0.0.0.0" in a or "/::/" in a or "169.254" in a or "fe80" in a
                   for a in t(m.local()))


def test_each_peer_hears_what_it_can_dial():
    m = manager()
    everything = t(m.local())
    assert t(m.for_peer(b("/ip4/127.0.0.1/tcp/5555"))) == everything
    assert t(m.for_peer(b("/ip4/198.18.1.77/tcp/5555"))) == [
        "/ip4/198.18.1.2/tcp/4001", "/ip4/203.0.113.7/tcp/4001"]
    # a private peer on another LAN, a public one, one we know nothing of
    for remote in (b("/ip4/198.18.9.9/tcp/1"), b("/ip4/192.0.2.5/tcp/1"), None):
        assert t(m.for_peer(remote)) == ["/ip4/203.0.113.7/tcp/4001"]
    assert t(m.public()) == ["/ip4/203.0.113.7/tcp/4001"]


def test_confirmed_and_relay_addresses_go_to_strangers_not_to_the_lan():
    m = manager(("/ip4/198.18.1.2/tcp/4001",))
    ext = b("/ip4/192.0.2.50/tcp/31000")
    relay = b("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGRUVh7nQhbMsUwrxTjtDXMwTbb9AbX6sTuWLwVeFuCxG"
              "/p2p-circuit")
    m.confirm(ext)
    m.set_relay([relay])
    stranger = m.for_peer(b("/ip4/192.0.2.9/tcp/1"))
    assert stranger == [ext, relay]
    assert m.for_peer(b("/ip4/198.18.1.3/tcp/1")) == [b("/ip4/198.18.1.2/tcp/4001"), ext]
    m.unconfirm(ext)
    assert m.for_peer(b("/ip4/192.0.2.9/tcp/1")) == [relay]


def test_announce_replaces_listen_and_filter_applies_to_all():
    m = manager(announce=[b("/ip4/192.0.2.77/tcp/1234"), b("/ip4/198.18.1.2/tcp/4001")])
    assert t(m.public()) == ["/ip4/192.0.2.77/tcp/1234"]
    m.filter_out = lambda addrs: [a for a in addrs if b"\x04\xc0" not in a]
    assert m.public() == []


def observe_from(m, n, observed="/ip4/192.0.2.50/tcp/4001", local="/ip4/198.18.1.2/tcp/4001",
                 first=1):
    for i in range(first, first + n):
        m.observe(b(observed), b(f"/ip4/203.0.113.{i}/tcp/4001"), b(local))


def test_an_observed_address_becomes_a_candidate_after_enough_distinct_observers():
    clock = Clock()
    m = manager(("/ip4/0.0.0.0/tcp/4001",), clock=clock)
    observe_from(m, ACTIVATION_THRESHOLD - 1)
    assert m.candidates() == []
    # the same observer again does not count twice
    observe_from(m, 1, first=1)
    assert m.candidates() == []
    observe_from(m, 1, first=50)
    assert t(m.candidates()) == ["/ip4/192.0.2.50/tcp/4001"]
    assert b("/ip4/192.0.2.50/tcp/4001") not in m.public()  # not before AutoNAT says so
    m.confirm(m.candidates()[0])
    assert b("/ip4/192.0.2.50/tcp/4001") in m.public()
    assert m.candidates() == []


def test_observations_expire():
    clock = Clock()
    m = manager(clock=clock)
    observe_from(m, ACTIVATION_THRESHOLD)
    assert m.candidates()
    clock.now += m.ttl + 1
    assert m.candidates() == []


def test_observations_that_say_nothing_are_ignored():
    m = manager()
    good = b("/ip4/192.0.2.50/tcp/4001")
    # a LAN or loopback observer
    assert not m.observe(good, b("/ip4/198.18.1.9/tcp/1"), b("/ip4/198.18.1.2/tcp/4001"))
    assert not m.observe(good, b("/ip4/127.0.0.1/tcp/1"), b("/ip4/127.0.0.1/tcp/4001"))
    # a connection from an ephemeral port, not a listen port
    assert not m.observe(good, b("/ip4/203.0.113.1/tcp/1"), b("/ip4/198.18.1.2/tcp/45000"))
    # an observed private address, a mismatched transport, garbage
    assert not m.observe(b("/ip4/10.1.1.1/tcp/4001"), b("/ip4/203.0.113.1/tcp/1"),
                         b("/ip4/198.18.1.2/tcp/4001"))
    assert not m.observe(b("/ip4/192.0.2.50/udp/4001"), b("/ip4/203.0.113.1/tcp/1"),
                         b("/ip4/198.18.1.2/tcp/4001"))
    assert not m.observe(b"\xff\xff", b"", b"\x04")
    assert m.observe(good, b("/ip4/203.0.113.1/tcp/1"), b("/ip4/198.18.1.2/tcp/4001"))


def test_ipv6_observers_count_by_56():
    m = manager(("/ip6/::/tcp/4001",), threshold=2)
    seen = b("/ip6/2001:db8:1::5/tcp/4001")
    m.observe(seen, b("/ip6/2001:db8:aa:11::1/tcp/1"), b("/ip6/fd00::5/tcp/4001"))
    m.observe(seen, b("/ip6/2001:db8:aa:22::1/tcp/1"), b("/ip6/fd00::5/tcp/4001"))
    assert m.candidates() == []  # one /56
    m.observe(seen, b("/ip6/2001:db8:bb::1/tcp/1"), b("/ip6/fd00::5/tcp/4001"))
    assert m.candidates() == [seen]


def test_a_flood_of_distinct_observed_addresses_stays_bounded():
    m = manager()
    for port in range(1, 1000):
        m.observe(b(f"/ip4/192.0.2.50/tcp/{port}"), b("/ip4/203.0.113.1/tcp/1"),
                  b("/ip4/198.18.1.2/tcp/4001"))
    assert len(m._observed) <= 128


def test_announce_changes_are_reported_once_each():
    m = AddressManager(interfaces=lambda: IFACES)
    calls = []
    m.on_change.append(lambda: calls.append(1))
    relay = b("/ip4/203.0.113.9/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ"
              "/p2p-circuit")
    m.set_relay([relay])
    m.set_relay([relay])  # the same: nothing to tell
    m.confirm(b("/ip4/203.0.113.7/tcp/4001"))
    m.confirm(b("/ip4/203.0.113.7/tcp/4001"), "upnp")  # known already
    m.unconfirm(b("/ip4/203.0.113.7/tcp/4001"))
    m.unconfirm(b("/ip4/203.0.113.7/tcp/4001"))
    assert len(calls) == 3


def test_local_is_asked_at_every_identify_and_follows_every_change():
    """local() is remembered between changes (IDENTIFY asks it each time); a new listen,
    confirmed or relay address, a new interface list and a caller's edit of the answer all
    show at once or change nothing."""
    ifaces = list(IFACES)
    clock = Clock()
    m = AddressManager(interfaces=lambda: ifaces, clock=clock)
    m.listen = [b("/ip4/0.0.0.0/tcp/4001")]
    first = m.local()
    first.append(b("/ip4/9.9.9.9/tcp/1"))  # the caller's copy
    assert "/ip4/9.9.9.9/tcp/1" not in t(m.local())
    m.listen.append(b("/ip4/127.0.0.1/tcp/4005"))
    assert "/ip4/127.0.0.1/tcp/4005" in t(m.local())
    m.confirmed[b("/ip4/203.0.113.50/tcp/4001")] = "autonat"
    assert "/ip4/203.0.113.50/tcp/4001" in t(m.local())
    m.relay.append(b("/ip4/203.0.113.60/tcp/4001"))
    assert "/ip4/203.0.113.60/tcp/4001" in t(m.local())
    ifaces.append(ipaddress.ip_interface("203.0.113.99/24"))
    assert "/ip4/203.0.113.99/tcp/4001" not in t(m.local())  # read at most every 10 s
    clock.now += 11
    assert "/ip4/203.0.113.99/tcp/4001" in t(m.local())


def test_specific_listen_addresses_are_told_without_reading_the_interfaces():
    """Reading the interfaces (psutil) is only for 0.0.0.0/::: a daemon listening on
    given addresses prints its ready lines without it; a wildcard added later reads them."""
    reads = []

    def interfaces():
        reads.append(1)
        return IFACES

    m = AddressManager(interfaces=interfaces)
    m.listen = [b("/ip4/127.0.0.1/tcp/4001"), b("/ip6/::1/tcp/4001")]
    assert t(m.local()) == ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"]
    assert reads == []
    m.listen.append(b("/ip4/0.0.0.0/tcp/4002"))
    assert "/ip4/203.0.113.7/tcp/4002" in t(m.local()) and reads == [1]


def test_a_peers_addresses_worth_dialling_from_here():
    theirs = [b("/ip4/0.0.0.0/tcp/4001"), b("/ip4/127.0.0.1/tcp/4001"),
              b("/ip4/198.51.100.9/tcp/4001"), b("/ip4/169.254.1.1/tcp/4001"),
              b("/ip6/::1/tcp/4001"), b("/ip4/198.18.0.4/tcp/4001"),
              b("/dns4/peer.example/tcp/4001"), b("/ip4/198.51.100.9/tcp/4001")]
    # a peer across the network: its loopback and unusable addresses are no use here
    remote = dialable_from_here(theirs, [b("/ip4/198.51.100.9/tcp/4001")])
    assert t(remote) == ["/ip4/198.51.100.9/tcp/4001", "/ip4/198.18.0.4/tcp/4001",
                         "/dns4/peer.example/tcp/4001"]
    # a peer on this machine (we reach it over loopback): its loopback addresses count
    local = dialable_from_here(theirs, [b("/ip4/127.0.0.1/tcp/50000")])
    assert t(local) == ["/ip4/127.0.0.1/tcp/4001", "/ip4/198.51.100.9/tcp/4001",
                        "/ip6/::1/tcp/4001", "/ip4/198.18.0.4/tcp/4001",
                        "/dns4/peer.example/tcp/4001"]
    assert dialable_from_here(theirs) == remote  # nothing known of the peer: as remote
