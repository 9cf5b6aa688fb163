"""The resource manager: what connections, streams and muxer memory the node allows at once.

go-libp2p's rcmgr model, scaled to a home machine: every connection and stream takes a
*scope* (a reservation) before it costs much, and gives it back when it ends. A scope that
would pass a limit is refused with :class:`LimitExceeded`, which names the limit, and the
refusal is counted; what is already open goes on. Sans-IO: plain counters, the time is
passed in, nothing here touches a socket or a clock, so it is unit-tested directly and the
swarm's hooks (p2pd/net/swarm.py) and the muxers (yamux, mplex) stay thin.

What is limited (:class:`Limits`, ``[limits]`` in the home config, docs/daemon.md):

* connections: in total, inbound, outbound; per remote peer; inbound per IP address and per
  subnet (/24 for IPv4, /56 for IPv6); inbound handshakes in progress (pending); and new
  inbound connections per second per IP (a token bucket). Loopback peers are exempt from the
  per-IP, per-subnet and rate limits unless ``exempt_loopback`` is off (go-libp2p exempts
  127.0.0.0/8 and ::1 too: local tools are not strangers).
* streams: in total; per peer and per protocol (counted once negotiated), inbound and
  outbound apart (our own services and control clients open the outbound ones).
* memory: one budget the muxers reserve from before they grant a peer receive window
  (Yamux: a stream's initial window and every growth; mplex and QUIC: bytes buffered
  unread, a stream reset once they pass it), so the data peers may push at us without our
  reading is bounded by it; and each peer's share of it (``memory_per_peer``, all its
  connections), so one peer cannot take the whole budget and leave none for the others'
  streams. The framed readers above the streams (kad, gossip, Bitswap, identify, unary
  calls between daemons) count the partial message they hold in the same share
  (:meth:`MemoryBudget.for_buffers`, p2pd/framing.py) beyond its first 64 KiB, in
  64 KiB steps.
* QUIC handshakes: an Initial from a new address takes a pending slot (and passes the
  per-IP and rate limits) before aioquic does any handshake work (p2pd/net/quic_core.py);
  addresses that were not
  validated by a Retry may hold at most half the pending slots (:meth:`ResourceManager.
  needs_validation`: past that, new clients must answer a Retry first), so a flood from
  spoofed sources never fills them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, fields

from ..errors import LimitExceeded

__all__ = ["LimitExceeded", "Limits", "MemoryBudget", "PeerMemory", "ResourceManager"]

#: How many per-IP token buckets are kept; beyond, full (idle) ones are dropped first.
MAX_BUCKETS = 4096


@dataclass(slots=True)
class Limits:
    """The limits, defaults sized for a home machine with 2 cores (docs/daemon.md).

    A value of 0 for any count means "no limit" except ``max_pending_inbound`` and the
    memory budget, which must be positive.
    """

    #: established and handshaking connections, all directions
    max_conns: int = 1024
    max_conns_inbound: int = 768
    max_conns_outbound: int = 768
    #: connections to one remote peer (an inbound one beyond is closed)
    max_conns_per_peer: int = 8
    #: inbound connections from one IP address, and from one /24 (IPv4) or /56 (IPv6)
    max_conns_per_ip: int = 16
    max_conns_per_subnet: int = 64
    #: inbound connections still in their security handshake
    max_pending_inbound: int = 64
    #: streams, all connections and directions
    max_streams: int = 8192
    #: inbound streams of one peer (all its connections)
    max_streams_inbound_per_peer: int = 1024
    #: inbound streams of one protocol, once negotiated
    max_streams_per_protocol: int = 4096
    #: our streams to one peer, and of one protocol (control clients, services)
    max_streams_outbound_per_peer: int = 1024
    max_streams_outbound_per_protocol: int = 4096
    #: streams one connection may carry at once (the swarm's older per-connection cap)
    max_streams_per_conn: int = 512
    #: bytes of receive window and unread buffers the muxers may hold, all connections
    memory: int = 256 << 20
    #: of which one peer's connections may hold at most (0: no per-peer cap)
    memory_per_peer: int = 128 << 20
    #: new inbound connections per second per IP (token bucket), and its burst
    inbound_rate: float = 5.0
    inbound_burst: int = 20
    #: loopback peers skip the per-IP, per-subnet and rate limits
    exempt_loopback: bool = True

    def check(self) -> Limits:
        """Raise ValueError naming the first field that cannot work; return ``self``."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "exempt_loopback":
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number (got {value!r})")
            if f.name == "inbound_rate":
                if not 0 <= value <= 1e6 or value != value:
                    raise ValueError(f"{f.name} must be between 0 and 1000000 per second "
                                     f"(0: no rate limit; got {value!r})")
                continue
            if not isinstance(value, int):
                raise ValueError(f"{f.name} must be an integer (got {value!r})")
            low = 1 if f.name in ("max_pending_inbound", "max_conns_per_peer",
                                  "max_streams_per_conn") else 0
            high = 1 << 40 if f.name.startswith("memory") else 1 << 24
            if f.name == "memory":
                low = 1 << 20
            if f.name == "memory_per_peer" and value and value < 1 << 20:
                raise ValueError(f"{f.name} must be 0 (no cap) or at least 1 MiB (got {value})")
            if not low <= value <= high:
                raise ValueError(f"{f.name} must be between {low} and {high} (got {value})")
        return self


def subnet_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The /24 (IPv4) or /56 (IPv6) network ``ip`` is in, as text."""
    bits = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def parse_ip(host):
    """An IP address from a socket's host (text or an ipaddress value; IPv4-mapped IPv6
    as IPv4), or None."""
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take(now)`` spends one if there is one."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, max(burst, 1)
        self.tokens = float(self.burst)
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class MemoryBudget:
    """Bytes the muxers may hold for peers; ``reserve`` before granting, ``release`` after.

    The muxers of one peer's connections use :meth:`for_peer`, a view that also holds the
    peer to ``per_peer`` bytes of it."""

    __slots__ = ("limit", "used", "peak", "refused", "growth_skipped", "per_peer",
                 "peers", "refused_peer", "streams_reset", "buffers", "refused_buffers")

    def __init__(self, limit: int, per_peer: int = 0) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        #: streams refused for want of budget, and window growths skipped for it
        self.refused = 0
        self.growth_skipped = 0
        #: the cap on one peer's share (0: none) and each peer's bytes held
        self.per_peer = per_peer
        self.peers: dict[bytes, int] = {}
        #: streams refused because their peer held its share (counted in ``refused`` too)
        self.refused_peer = 0
        #: streams reset because what arrived unread on them passed the budget (QUIC)
        self.streams_reset = 0
        #: bytes the framed readers above the streams hold (part of ``used``), and the
        #: messages refused (their stream reset) for want of budget
        self.buffers = 0
        self.refused_buffers = 0

    def for_peer(self, peer: bytes) -> PeerMemory:
        """The budget as one peer's muxers see it (its share and the node's, both)."""
        return PeerMemory(self, peer)

    def for_buffers(self, peer: bytes) -> PeerMemory:
        """The budget as the framed readers of ``peer``'s streams see it: the same share,
        counted apart as ``buffers`` (refusals in ``refused_buffers``)."""
        return PeerMemory(self, peer, buffers=True)

    def reserve(self, n: int, *, growth: bool = False) -> bool:
        """Take ``n`` bytes if they fit in the budget; False (counted: a refused stream,
        or with ``growth`` a window that stays as it is) if not."""
        if self.used + n > self.limit:
            if growth:
                self.growth_skipped += 1
            else:
                self.refused += 1
            return False
        self.force(n)
        return True

    def force(self, n: int) -> None:
        """Count ``n`` bytes that are held whatever the budget says (data that arrived)."""
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)

    @property
    def over(self) -> bool:
        return self.used > self.limit

    def describe(self) -> str:
        return f"{self.used} of {self.limit} bytes of muxer memory held"


class PeerMemory:
    """One peer's view of a :class:`MemoryBudget`: what its muxers reserve counts in the
    peer's share and in the node's budget, and must fit in both. Same methods as the
    budget, so a muxer is given either."""

    __slots__ = ("budget", "peer", "buffers")

    def __init__(self, budget: MemoryBudget, peer: bytes, *, buffers: bool = False) -> None:
        self.budget = budget
        self.peer = peer
        #: a framed reader's view (counted in ``budget.buffers``)
        self.buffers = buffers

    @property
    def used(self) -> int:
        return self.budget.peers.get(self.peer, 0)

    @property
    def limit(self) -> int:
        b = self.budget
        return min(b.per_peer, b.limit) if b.per_peer else b.limit

    def reserve(self, n: int, *, growth: bool = False) -> bool:
        b = self.budget
        used = b.peers.get(self.peer, 0)
        if b.per_peer and used + n > b.per_peer:
            if growth:
                b.growth_skipped += 1
            else:
                b.refused += 1
                b.refused_peer += 1
                if self.buffers:
                    b.refused_buffers += 1
            return False
        if not b.reserve(n, growth=growth):
            if self.buffers and not growth:
                b.refused_buffers += 1
            return False
        b.peers[self.peer] = used + n
        if self.buffers:
            b.buffers += n
        return True

    def force(self, n: int) -> None:
        b = self.budget
        b.force(n)
        b.peers[self.peer] = b.peers.get(self.peer, 0) + n
        if self.buffers:
            b.buffers += n

    def release(self, n: int) -> None:
        b = self.budget
        left = b.peers.get(self.peer, 0) - n
        b.release(n)
        if self.buffers:
            b.buffers = max(0, b.buffers - n)
        if left > 0:
            b.peers[self.peer] = left
        else:
            b.peers.pop(self.peer, None)

    @property
    def over(self) -> bool:
        b = self.budget
        return b.over or bool(b.per_peer and b.peers.get(self.peer, 0) > b.per_peer)

    def describe(self) -> str:
        b = self.budget
        return (f"peer holds {self.used} bytes of muxer memory (limit {b.per_peer or '-'}), "
                f"all peers {b.used} (limit {b.limit})")


class ConnScope:
    """One connection's reservation; :meth:`done` (idempotent) gives it back."""

    __slots__ = ("rm", "direction", "ip", "subnet", "peer", "pending", "unvalidated",
                 "closed")

    def __init__(self, rm: ResourceManager, direction: str, ip: str | None,
                 subnet: str | None, pending: bool, unvalidated: bool = False) -> None:
        self.rm = rm
        self.direction = direction
        self.ip = ip
        self.subnet = subnet
        self.peer: bytes | None = None
        self.pending = pending
        #: holds one of the pending slots a source address that no Retry validated may take
        self.unvalidated = unvalidated
        self.closed = False

    def _end_pending(self) -> None:
        rm = self.rm
        if self.pending:
            self.pending = False
            rm.pending -= 1
        if self.unvalidated:
            self.unvalidated = False
            rm.pending_unvalidated -= 1

    def set_peer(self, peer: bytes, *, enforce: bool = True) -> None:
        """The handshake named the peer: the per-peer limit (inbound: ``enforce``) applies;
        the pending slot is freed either way. A refusal releases the whole scope."""
        rm = self.rm
        self._end_pending()
        n = rm.peer_conns.get(peer, 0)
        if enforce and n >= rm.limits.max_conns_per_peer:
            self.done()
            raise rm.refuse("max_conns_per_peer",
                            f"peer has {n} connections (limit {rm.limits.max_conns_per_peer})")
        rm.peer_conns[peer] = n + 1
        self.peer = peer

    def done(self) -> None:
        if self.closed:
            return
        self.closed = True
        rm = self.rm
        rm.conns[self.direction] -= 1
        self._end_pending()
        if self.ip is not None:
            _decrement(rm.ip_conns, self.ip)
        if self.subnet is not None:
            _decrement(rm.subnet_conns, self.subnet)
        if self.peer is not None:
            _decrement(rm.peer_conns, self.peer)


class StreamScope:
    """One stream's reservation; :meth:`done` (idempotent) gives it back."""

    __slots__ = ("rm", "peer", "direction", "protocol", "closed")

    def __init__(self, rm: ResourceManager, peer: bytes, direction: str) -> None:
        self.rm = rm
        self.peer = peer
        self.direction = direction
        self.protocol: str | None = None
        self.closed = False

    def set_protocol(self, protocol: str) -> None:
        """The stream's protocol was negotiated: the per-protocol limit of its direction
        applies (a refusal releases the scope)."""
        rm = self.rm
        if self.direction == "inbound":
            table, name = rm.protocol_streams, "max_streams_per_protocol"
        else:
            table, name = rm.protocol_streams_out, "max_streams_outbound_per_protocol"
        n = table.get(protocol, 0)
        limit = getattr(rm.limits, name)
        if limit and n >= limit:
            self.done()
            raise rm.refuse(name, f"{n} {self.direction} streams of {protocol} (limit {limit})")
        table[protocol] = n + 1
        self.protocol = protocol

    def done(self) -> None:
        if self.closed:
            return
        self.closed = True
        rm = self.rm
        rm.streams[self.direction] -= 1
        inbound = self.direction == "inbound"
        _decrement(rm.peer_streams if inbound else rm.peer_streams_out, self.peer)
        if self.protocol is not None:
            _decrement(rm.protocol_streams if inbound else rm.protocol_streams_out,
                       self.protocol)


def _decrement(table: dict, key) -> None:
    n = table.get(key, 0) - 1
    if n > 0:
        table[key] = n
    else:
        table.pop(key, None)


class ResourceManager:
    """Counts what is open against :class:`Limits`; the swarm asks before opening."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.memory = MemoryBudget(self.limits.memory, self.limits.memory_per_peer)
        self.conns = {"inbound": 0, "outbound": 0}
        self.pending = 0
        #: pending handshakes from source addresses no Retry validated (QUIC Initials)
        self.pending_unvalidated = 0
        self.ip_conns: dict[str, int] = {}
        self.subnet_conns: dict[str, int] = {}
        self.peer_conns: dict[bytes, int] = {}
        self.streams = {"inbound": 0, "outbound": 0}
        #: inbound streams by peer and by protocol, and our outbound ones
        self.peer_streams: dict[bytes, int] = {}
        self.protocol_streams: dict[str, int] = {}
        self.peer_streams_out: dict[bytes, int] = {}
        self.protocol_streams_out: dict[str, int] = {}
        self.buckets: dict[str, TokenBucket] = {}
        #: refusals since start, by the limit that refused (a Limits field name)
        self.refused: dict[str, int] = {}

    def refuse(self, limit: str, message: str) -> LimitExceeded:
        self.refused[limit] = self.refused.get(limit, 0) + 1
        return LimitExceeded(limit, f"resource limit {limit}: {message}")

    # -- connections -------------------------------------------------------------------
    def _check_total(self, direction: str) -> None:
        lim = self.limits
        total = self.conns["inbound"] + self.conns["outbound"]
        if lim.max_conns and total >= lim.max_conns:
            raise self.refuse("max_conns", f"{total} connections (limit {lim.max_conns})")
        limit = lim.max_conns_inbound if direction == "inbound" else lim.max_conns_outbound
        if limit and self.conns[direction] >= limit:
            name = "max_conns_inbound" if direction == "inbound" else "max_conns_outbound"
            raise self.refuse(name, f"{self.conns[direction]} {direction} connections "
                                    f"(limit {limit})")

    @property
    def unvalidated_slots(self) -> int:
        """How many pending slots sources that no Retry validated may hold (half)."""
        return max(1, self.limits.max_pending_inbound // 2)

    def needs_validation(self) -> bool:
        """New QUIC clients must prove their address (answer a Retry) before they take a
        pending slot: unvalidated ones hold their share of the slots already."""
        return self.pending_unvalidated >= self.unvalidated_slots

    def open_inbound(self, host: str | None, now: float, *, handshake: bool = True,
                     validated: bool = True) -> ConnScope:
        """A new inbound connection from ``host`` (None: no IP of its own, e.g. relayed),
        before its security handshake (``handshake``: it takes a pending slot until
        :meth:`ConnScope.set_peer`). ``validated``: False for a source address nothing has
        confirmed yet (a QUIC Initial without a Retry token; TCP's handshake confirms its
        own), which may take only :attr:`unvalidated_slots` of the slots. Raises
        :class:`LimitExceeded`."""
        lim = self.limits
        if handshake and self.pending >= lim.max_pending_inbound:
            raise self.refuse("max_pending_inbound", f"{self.pending} handshakes in progress "
                                                     f"(limit {lim.max_pending_inbound})")
        unvalidated = handshake and not validated
        if unvalidated and self.pending_unvalidated >= self.unvalidated_slots:
            raise self.refuse("max_pending_inbound",
                              f"{self.pending_unvalidated} handshakes from unvalidated "
                              f"addresses (half of max_pending_inbound; more must answer "
                              f"a Retry)")
        self._check_total("inbound")
        ip = parse_ip(host)
        key = subnet = None
        if ip is not None and not (lim.exempt_loopback and ip.is_loopback):
            key, subnet = str(ip), subnet_of(ip)
            n = self.ip_conns.get(key, 0)
            if lim.max_conns_per_ip and n >= lim.max_conns_per_ip:
                raise self.refuse("max_conns_per_ip",
                                  f"{n} connections from {key} (limit {lim.max_conns_per_ip})")
            n = self.subnet_conns.get(subnet, 0)
            if lim.max_conns_per_subnet and n >= lim.max_conns_per_subnet:
                raise self.refuse("max_conns_per_subnet", f"{n} connections from {subnet} "
                                                          f"(limit {lim.max_conns_per_subnet})")
            if lim.inbound_rate and not self._bucket(key, now).take(now):
                raise self.refuse("inbound_rate", f"{key} opens more than {lim.inbound_rate:g} "
                                                  f"connections a second")
            self.ip_conns[key] = self.ip_conns.get(key, 0) + 1
            self.subnet_conns[subnet] = self.subnet_conns.get(subnet, 0) + 1
        self.conns["inbound"] += 1
        if handshake:
            self.pending += 1
        if unvalidated:
            self.pending_unvalidated += 1
        return ConnScope(self, "inbound", key, subnet, handshake, unvalidated)

    def open_outbound(self) -> ConnScope:
        """A dial about to start (the per-peer limit is not applied to our own dials)."""
        self._check_total("outbound")
        self.conns["outbound"] += 1
        return ConnScope(self, "outbound", None, None, False)

    def adopt(self, direction: str, peer: bytes) -> ConnScope:
        """Count a connection that is open already, whatever the limits say."""
        self.conns[direction] += 1
        scope = ConnScope(self, direction, None, None, False)
        scope.set_peer(peer, enforce=False)
        return scope

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._trim_buckets(now)
            bucket = self.buckets[key] = TokenBucket(self.limits.inbound_rate,
                                                     self.limits.inbound_burst, now)
        return bucket

    def _trim_buckets(self, now: float) -> None:
        """Drop refilled buckets (they hold no history worth keeping), else the oldest."""
        for key, bucket in list(self.buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.burst:
                del self.buckets[key]
        while len(self.buckets) >= MAX_BUCKETS:
            del self.buckets[next(iter(self.buckets))]

    # -- streams -----------------------------------------------------------------------
    def open_stream(self, peer: bytes, direction: str) -> StreamScope:
        """A new stream with ``peer`` (its protocol comes later, :meth:`StreamScope.
        set_protocol`). Raises :class:`LimitExceeded`."""
        lim = self.limits
        total = self.streams["inbound"] + self.streams["outbound"]
        if lim.max_streams and total >= lim.max_streams:
            raise self.refuse("max_streams", f"{total} streams (limit {lim.max_streams})")
        if direction == "inbound":
            table, name = self.peer_streams, "max_streams_inbound_per_peer"
        else:
            table, name = self.peer_streams_out, "max_streams_outbound_per_peer"
        n = table.get(peer, 0)
        limit = getattr(lim, name)
        if limit and n >= limit:
            raise self.refuse(name, f"{n} {direction} streams with the peer (limit {limit})")
        table[peer] = n + 1
        self.streams[direction] += 1
        return StreamScope(self, peer, direction)

    # -- reporting ---------------------------------------------------------------------
    def summary(self) -> dict:
        """Current use, the limits and refusals since start (STATUS "Limits", metrics)."""
        top_ip = max(self.ip_conns.values(), default=0)
        return {
            "Use": {
                "conns": self.conns["inbound"] + self.conns["outbound"],
                "conns_inbound": self.conns["inbound"],
                "conns_outbound": self.conns["outbound"],
                "pending_inbound": self.pending,
                "pending_unvalidated": self.pending_unvalidated,
                "peers": len(self.peer_conns),
                "ips": len(self.ip_conns),
                "max_conns_one_ip": top_ip,
                "streams": self.streams["inbound"] + self.streams["outbound"],
                "streams_inbound": self.streams["inbound"],
                "streams_outbound": self.streams["outbound"],
                "streams_by_protocol": {
                    "inbound": dict(self.protocol_streams),
                    "outbound": dict(self.protocol_streams_out)},
                "memory": self.memory.used,
                "memory_peak": self.memory.peak,
                "memory_one_peer": max(self.memory.peers.values(), default=0),
                "memory_buffers": self.memory.buffers,
                "window_growth_skipped": self.memory.growth_skipped,
            },
            "Limits": asdict(self.limits),
            "Refused": {**self.refused,
                        **({"memory": self.memory.refused} if self.memory.refused else {}),
                        **({"memory_per_peer": self.memory.refused_peer}
                           if self.memory.refused_peer else {}),
                        **({"memory_buffers": self.memory.refused_buffers}
                           if self.memory.refused_buffers else {}),
                        **({"memory_stream_reset": self.memory.streams_reset}
                           if self.memory.streams_reset else {})},
        }
