"""Which of our addresses to tell whom, sans-IO.

A listen address on ``0.0.0.0`` or ``::`` is not an address anyone can dial: it stands for
every address of the machine's interfaces, and :meth:`AddressManager.local` expands it.
What a peer is told (identify, identify push, the addresses in a provider record sent to it)
depends on where that peer is, by the remote IP of the connection to it
(:meth:`AddressManager.for_peer`):

- a loopback address only to a peer on loopback (it is this machine);
- a link-local address never (it needs a zone, and nobody else can use it);
- a private address (RFC 1918, CGNAT 100.64/10, IPv6 ULA fc00::/7, and the benchmarking
  range 198.18/15 the network lab uses for home LANs) only to a peer inside that address's
  interface network (the same LAN), or on loopback;
- any other address to everyone;
- plus the external addresses that were confirmed (AutoNAT, a port mapping) and relay
  addresses, to everyone but peers on loopback or the same LAN (who have the direct ones).

``-announceAddrs`` replaces the listen addresses (go's AddrsFactory); ``no_announce`` rules
(:func:`p2pd.net.host.filter_announced`) are applied to everything.

Observed addresses: each identify tells us the address the peer saw us at. One peer's word
means little (it may lie, or sit behind the same NAT); an observed address becomes a
*candidate* once :data:`ACTIVATION_THRESHOLD` distinct observers (by IPv4 address, by IPv6
/56) reported it within :data:`OBSERVATION_TTL` - go-libp2p's rule - and only observers
whose own address is public count. Only an observation of a connection made from (or to)
one of our listen ports says anything about that port; others are ignored. A candidate is
announced once AutoNAT confirms it (:meth:`AddressManager.confirm`).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..varint import decode_uvarint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

P_IP4, P_IP6, P_TCP, P_UDP = 0x04, 0x29, 0x06, 0x0111
P_QUIC_V1, P_P2P = 0x01CD, 0x01A5
QUIC_V1_SUFFIX = b"\xcd\x03"

#: distinct observers before an observed address is a candidate (go-libp2p: 4)
ACTIVATION_THRESHOLD = 4
#: how long one observation counts
OBSERVATION_TTL = 30 * 60.0
#: most observed addresses tracked (a flood of distinct lies stays bounded)
MAX_OBSERVED = 128

_PRIVATE_NETS = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15",
    "fc00::/7",
)]
_NEVER_NETS = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
    "::/128", "fe80::/10", "ff00::/8",
)]


def classify(ip: IPAddress) -> str:
    """``"loopback"``, ``"unusable"`` (link-local, unspecified, multicast), ``"private"``
    or ``"public"``. The documentation ranges count as public: the lab's internet uses them."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if any(ip.version == n.version and ip in n for n in _NEVER_NETS):
        return "unusable"
    if any(ip.version == n.version and ip in n for n in _PRIVATE_NETS):
        return "private"
    return "public"


def split_ip(addr: bytes) -> tuple[IPAddress, bytes] | None:
    """``(ip, the rest of the multiaddr)`` of an ``/ip4`` or ``/ip6`` address, else None."""
    try:
        code, pos = decode_uvarint(addr, 0)
    except ValueError:
        return None
    n = {P_IP4: 4, P_IP6: 16}.get(code)
    if n is None or len(addr) < pos + n:
        return None
    raw = addr[pos : pos + n]
    ip = ipaddress.IPv4Address(raw) if n == 4 else ipaddress.IPv6Address(raw)
    return ip, addr[pos + n :]


def dialable_from_here(addrs: Sequence[bytes], via: Sequence[bytes] = ()) -> list[bytes]:
    """Which of a peer's addresses a dial from this machine could use: never unspecified,
    link-local or multicast ones (a peer listening on 0.0.0.0 may announce them), and
    loopback ones only when one of ``via`` (the remote addresses of our connections to the
    peer) is loopback, i.e. the peer runs on this machine. Non-IP addresses (dns, relay
    circuits) are kept; the order is kept."""
    local = any((s := split_ip(a)) is not None and classify(s[0]) == "loopback" for a in via)
    out = []
    for a in dict.fromkeys(bytes(a) for a in addrs):
        split = split_ip(a)
        kind = classify(split[0]) if split is not None else "other"
        if kind == "unusable" or (kind == "loopback" and not local):
            continue
        out.append(a)
    return out


def with_ip(ip: IPAddress, rest: bytes) -> bytes:
    return (b"\x04" if ip.version == 4 else b"\x29") + ip.packed + rest


def is_relayed(addr: bytes) -> bool:
    """A ``/p2p-circuit`` address (its code, 0x0122, appears in it)."""
    return b"\xa2\x02" in addr


def quic_target(addr: bytes) -> tuple[str, int, int] | None:
    """``(host, port, family)`` of ``/ip4|ip6/HOST/udp/PORT/quic-v1[/p2p/ID]``, else None."""
    try:
        pos, parts = 0, []
        while pos < len(addr) and len(parts) < 4:
            code, pos = decode_uvarint(addr, pos)
            size = {P_IP4: 4, P_IP6: 16, P_UDP: 2, P_QUIC_V1: 0}.get(code)
            if size is None:
                if code != P_P2P:
                    return None
                size, pos = decode_uvarint(addr, pos)
            if pos + size > len(addr):
                return None
            parts.append((code, addr[pos : pos + size]))
            pos += size
    except ValueError:
        return None
    if pos != len(addr) or len(parts) < 3:
        return None
    codes = [c for c, _ in parts]
    if codes[1:3] != [P_UDP, P_QUIC_V1] or codes[0] not in (P_IP4, P_IP6):
        return None
    if len(parts) == 4 and codes[3] != P_P2P:
        return None
    port = struct.unpack(">H", parts[1][1])[0]
    if codes[0] == P_IP4:
        return str(ipaddress.IPv4Address(parts[0][1])), port, socket.AF_INET
    return str(ipaddress.IPv6Address(parts[0][1])), port, socket.AF_INET6


def quic_multiaddr(host: str, port: int) -> bytes:
    """``/ip4|ip6/HOST/udp/PORT/quic-v1`` in binary form."""
    ip = ipaddress.ip_address(host.split("%")[0])
    code = b"\x04" if ip.version == 4 else b"\x29"
    return code + ip.packed + b"\x91\x02" + struct.pack(">H", port) + QUIC_V1_SUFFIX


def transport_port(rest: bytes) -> tuple[int, int] | None:
    """``(tcp|udp code, port)`` right after the IP, else None."""
    try:
        code, pos = decode_uvarint(rest, 0)
    except ValueError:
        return None
    if code not in (P_TCP, P_UDP) or len(rest) < pos + 2:
        return None
    return code, struct.unpack(">H", rest[pos : pos + 2])[0]


def machine_interfaces() -> list[IPInterface]:
    """This machine's interface addresses with their networks (psutil)."""
    import socket

    import psutil

    out: list[IPInterface] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6) or not entry.netmask:
                continue
            address = entry.address.split("%")[0]
            try:
                if entry.family == socket.AF_INET:
                    out.append(ipaddress.IPv4Interface(f"{address}/{entry.netmask}"))
                else:
                    bits = ipaddress.IPv6Address(entry.netmask.split("/")[0])
                    prefix = bin(int(bits)).count("1")
                    out.append(ipaddress.IPv6Interface(f"{address}/{prefix}"))
            except ValueError:
                continue
    return out


def _observer_group(ip: IPAddress) -> bytes:
    if ip.version == 6 and ip.ipv4_mapped is None:
        return ip.packed[:7]  # /56
    return ip.packed


@dataclass(slots=True)
class _Observed:
    seen: dict[bytes, float] = field(default_factory=dict)  # observer group -> last time


class AddressManager:
    """Our listen, external and relay addresses, and what to tell each peer of them."""

    def __init__(self, *, interfaces: Callable[[], list[IPInterface]] = machine_interfaces,
                 announce: Sequence[bytes] | None = None,
                 filter_out: Callable[[list[bytes]], list[bytes]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 threshold: int = ACTIVATION_THRESHOLD, ttl: float = OBSERVATION_TTL) -> None:
        self._interfaces = interfaces
        self._iface_cache: tuple[float, list[IPInterface]] | None = None
        self.listen: list[bytes] = []
        self.announce: list[bytes] | None = list(announce) if announce else None
        self.filter_out = filter_out
        self._clock = clock
        self.threshold = threshold
        self.ttl = ttl
        self._observed: dict[bytes, _Observed] = {}
        #: external address -> where it came from ("autonat", "upnp", "config")
        self.confirmed: dict[bytes, str] = {}
        self.relay: list[bytes] = []
        #: external addresses a port mapping gave (candidates until AutoNAT confirms)
        self.mapped: list[bytes] = []
        #: called when what we announce changes (confirmed, relay addresses): the swarm
        #: tells connected peers with an identify push
        self.on_change: list[Callable[[], None]] = []
        #: local()'s answer and what it was made from (it is asked at every IDENTIFY)
        self._local_memo: tuple[tuple, list[bytes]] | None = None
        #: whether the listen (or announce) addresses hold 0.0.0.0/:: (the key: those)
        self._wild_memo: tuple[tuple, bool] | None = None

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()

    # -- interfaces ------------------------------------------------------------------------
    def interfaces(self) -> list[IPInterface]:
        """The interface list, read at most every 10 s (a laptop changes networks)."""
        now = self._clock()
        if self._iface_cache is None or now - self._iface_cache[0] > 10.0:
            self._iface_cache = (now, list(self._interfaces()))
        return self._iface_cache[1]

    def expanded(self) -> list[bytes]:
        """The listen (or announce) addresses with ``0.0.0.0``/``::`` replaced by the
        interface addresses of that family (link-local ones left out)."""
        out: list[bytes] = []
        for addr in self.announce if self.announce is not None else self.listen:
            split = split_ip(addr)
            if split is None or not split[0].is_unspecified:
                out.append(addr)
                continue
            ip, rest = split
            for iface in self.interfaces():
                if iface.ip.version == ip.version and classify(iface.ip) != "unusable":
                    out.append(with_ip(iface.ip, rest))
        return list(dict.fromkeys(out))

    # -- what to tell whom ----------------------------------------------------------------
    def local(self) -> list[bytes]:
        """Everything, for the user on this machine (control IDENTIFY, ready lines, ``p2pd
        id``): the expanded addresses, then the confirmed external and relay ones."""
        base = tuple(self.announce if self.announce is not None else self.listen)
        if self._wild_memo is None or self._wild_memo[0] != base:
            self._wild_memo = (base, any((split := split_ip(a)) is not None
                                         and split[0].is_unspecified for a in base))
        wild = self._wild_memo[1]
        if wild:  # only 0.0.0.0/:: need the interface list (read when due: a new key)
            self.interfaces()
        key = (tuple(self.listen), tuple(self.announce or ()), self.announce is None,
               tuple(self.confirmed), tuple(self.relay),
               id(self._iface_cache) if wild else None, self.filter_out)
        memo = self._local_memo
        if memo is None or memo[0] != key:
            memo = self._local_memo = (
                key, self._filtered([*self.expanded(), *self.confirmed, *self.relay]))
        return list(memo[1])

    def for_peer(self, remote_addr: bytes | None) -> list[bytes]:
        """What a peer at ``remote_addr`` (the connection's remote multiaddr) may dial.
        Unknown (None, or not an IP address): what a stranger on the internet may dial."""
        split = split_ip(remote_addr) if remote_addr else None
        remote = split[0] if split is not None else None
        if remote is not None and remote.version == 6 and remote.ipv4_mapped is not None:
            remote = remote.ipv4_mapped
        kind = classify(remote) if remote is not None else "public"
        if kind == "loopback":
            return self.local()
        nets = [i.network for i in self.interfaces()] if kind == "private" else []
        lan = remote is not None and any(remote.version == n.version and remote in n
                                         for n in nets)
        out = []
        for addr in self.expanded():
            split = split_ip(addr)
            if split is None:  # dns and the like: for everyone
                out.append(addr)
                continue
            ip = split[0]
            what = classify(ip)
            if what == "public":
                out.append(addr)
            elif what == "private" and remote is not None and lan:
                if any(i.ip == ip and remote in i.network for i in self.interfaces()
                       if i.ip.version == remote.version):
                    out.append(addr)
        out += [a for a in self.confirmed if a not in out]
        if not lan:
            out += [a for a in self.relay if a not in out]
        return self._filtered(out)

    def public(self) -> list[bytes]:
        """What anyone may dial: public listen addresses, confirmed external, relay."""
        return self.for_peer(None)

    def _filtered(self, addrs: list[bytes]) -> list[bytes]:
        addrs = list(dict.fromkeys(addrs))
        return self.filter_out(addrs) if self.filter_out is not None else addrs

    # -- observed addresses ---------------------------------------------------------------
    def observe(self, observed: bytes, observer: bytes, local_addr: bytes) -> bool:
        """Record that the peer at ``observer`` (its remote multiaddr) saw us at
        ``observed`` on a connection whose local end is ``local_addr``. True if the
        observation counted."""
        got, seer, mine = split_ip(observed), split_ip(observer), split_ip(local_addr)
        if got is None or seer is None or mine is None:
            return False
        if classify(seer[0]) != "public" or classify(got[0]) != "public":
            return False  # a LAN or loopback peer says nothing about the outside
        ours, theirs = transport_port(mine[1]), transport_port(got[1])
        if ours is None or theirs is None or ours[0] != theirs[0]:
            return False
        if not any(transport_port(split[1]) == ours for split in map(split_ip, self.listen)
                   if split is not None):
            return False  # from an ephemeral port: says nothing about a listen port
        now = self._clock()
        entry = self._observed.get(observed)
        if entry is None:
            if len(self._observed) >= MAX_OBSERVED:
                self._expire(now)
                if len(self._observed) >= MAX_OBSERVED:
                    oldest = min(self._observed, key=lambda a: max(self._observed[a].seen.values()))
                    del self._observed[oldest]
            entry = self._observed[observed] = _Observed()
        entry.seen[_observer_group(seer[0])] = now
        return True

    def _expire(self, now: float) -> None:
        for addr in list(self._observed):
            seen = self._observed[addr].seen
            for group in [g for g, t in seen.items() if now - t > self.ttl]:
                del seen[group]
            if not seen:
                del self._observed[addr]

    def candidates(self) -> list[bytes]:
        """Observed addresses reported by enough distinct observers lately, most reported
        first, not yet confirmed."""
        self._expire(self._clock())
        ready = [(len(o.seen), a) for a, o in self._observed.items()
                 if len(o.seen) >= self.threshold and a not in self.confirmed]
        observed = [a for _, a in sorted(ready, key=lambda t: -t[0])]
        return [*(a for a in self.mapped if a not in self.confirmed), *observed]

    def set_mapped(self, addrs: Iterable[bytes]) -> None:
        """The router's port mappings changed: these are candidates now (and a confirmed
        mapping that went away is no longer announced)."""
        addrs = list(dict.fromkeys(addrs))
        dropped = False
        for gone in [a for a in self.mapped if a not in addrs]:
            if self.confirmed.get(gone) == "autonat":
                del self.confirmed[gone]
                dropped = True
        self.mapped = addrs
        if dropped:
            self._changed()

    def confirm(self, addr: bytes, source: str = "autonat") -> None:
        new = addr not in self.confirmed
        self.confirmed[addr] = source
        if new:
            self._changed()

    def unconfirm(self, addr: bytes) -> None:
        if self.confirmed.pop(addr, None) is not None:
            self._changed()

    def set_relay(self, addrs: Iterable[bytes]) -> None:
        addrs = list(dict.fromkeys(addrs))
        if addrs != self.relay:
            self.relay = addrs
            self._changed()


__all__ = ["ACTIVATION_THRESHOLD", "AddressManager", "classify", "is_relayed",
           "machine_interfaces", "split_ip", "transport_port", "with_ip"]
