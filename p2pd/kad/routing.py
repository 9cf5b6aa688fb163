"""The Kademlia routing table: 256 k-buckets by common prefix length, replacement caches.

Peers are identified by their id bytes; the table keys them by ``key_for(id)``. Only
peers the caller has seen answer as DHT servers should be added (the edge decides).

- ``add`` puts a peer in its bucket if there is room, refreshes it if present, else
  parks it in the bucket's replacement cache and names the least recently seen member
  as the one to check (``AddResult.check``): the caller pings it and reports
  ``failed`` (it is evicted, the freshest replacement promoted) or ``seen``.
- ``failed`` removes a peer that stopped answering and promotes a replacement.
- ``closest`` returns the n peers closest to a key.
- ``refresh_targets`` names, for every bucket not looked up within the interval, a
  random key that falls in it (the caller runs a lookup for it, then ``touched``).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from .keyspace import KEY_BITS, common_prefix_len, key_for

K = 20
REFRESH_INTERVAL = 600.0


@dataclass(slots=True)
class Entry:
    peer: bytes
    key: int
    last_seen: float


@dataclass(slots=True)
class AddResult:
    added: bool
    check: bytes | None = None  # a member to ping before it may be replaced


@dataclass
class Bucket:
    members: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)  # oldest first
    replacements: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)
    last_lookup: float = 0.0


class RoutingTable:
    def __init__(self, local_id: bytes, k: int = K, now: float = 0.0) -> None:
        self.local_id = local_id
        self.local_key = key_for(local_id)
        self.k = k
        self.created = now
        self._buckets: dict[int, Bucket] = {}  # made on first use: most are always empty

    @property
    def buckets(self) -> list[Bucket]:
        return [self._buckets.get(i) or Bucket(last_lookup=self.created) for i in range(KEY_BITS)]

    def bucket(self, i: int) -> Bucket:
        b = self._buckets.get(i)
        if b is None:
            b = self._buckets[i] = Bucket(last_lookup=self.created)
        return b

    def __len__(self) -> int:
        return sum(len(b.members) for b in self._buckets.values())

    def __contains__(self, peer: bytes) -> bool:
        return peer in self._bucket(peer).members

    def _index(self, key: int) -> int:
        return min(common_prefix_len(self.local_key, key), KEY_BITS - 1)

    def _bucket(self, peer: bytes) -> Bucket:
        return self.bucket(self._index(key_for(peer)))

    def add(self, peer: bytes, now: float, key: int | None = None) -> AddResult:
        if peer == self.local_id:
            return AddResult(False)
        key = key_for(peer) if key is None else key
        bucket = self.bucket(self._index(key))
        entry = bucket.members.get(peer)
        if entry is not None:
            entry.last_seen = now
            bucket.members.move_to_end(peer)
            return AddResult(True)
        if len(bucket.members) < self.k:
            bucket.members[peer] = Entry(peer, key, now)
            bucket.replacements.pop(peer, None)
            return AddResult(True)
        bucket.replacements[peer] = Entry(peer, key, now)
        bucket.replacements.move_to_end(peer)
        while len(bucket.replacements) > self.k:
            bucket.replacements.popitem(last=False)
        oldest = next(iter(bucket.members.values()))
        return AddResult(False, check=oldest.peer)

    def seen(self, peer: bytes, now: float) -> None:
        """``peer`` answered: it is fresh again (a member, or nothing happens)."""
        bucket = self._bucket(peer)
        entry = bucket.members.get(peer)
        if entry is not None:
            entry.last_seen = now
            bucket.members.move_to_end(peer)

    def failed(self, peer: bytes) -> None:
        """``peer`` stopped answering: evict it and promote the freshest replacement."""
        bucket = self._bucket(peer)
        if bucket.members.pop(peer, None) is None:
            bucket.replacements.pop(peer, None)
            return
        if bucket.replacements:
            _, entry = bucket.replacements.popitem(last=True)
            bucket.members[entry.peer] = entry

    def closest(self, key: int, n: int | None = None) -> list[bytes]:
        n = self.k if n is None else n
        entries = [e for b in self._buckets.values() for e in b.members.values()]
        entries.sort(key=lambda e: e.key ^ key)
        return [e.peer for e in entries[:n]]

    def peers(self) -> list[Entry]:
        return [e for b in self._buckets.values() for e in b.members.values()]

    def touched(self, key: int, now: float) -> None:
        """A lookup for ``key`` ran: its bucket needs no refresh for a while."""
        self.bucket(self._index(key)).last_lookup = now

    def refresh_targets(self, now: float, interval: float = REFRESH_INTERVAL,
                        rng: random.Random | None = None) -> list[int]:
        """A random key in each stale bucket up to the deepest non-empty one (+1)."""
        rng = rng or random.Random()
        deepest = max((i for i, b in self._buckets.items() if b.members), default=0)
        out = []
        for i in range(min(deepest + 2, KEY_BITS)):
            b = self._buckets.get(i)
            last = b.last_lookup if b is not None else self.created
            if now - last >= interval:
                out.append(self.random_key_in_bucket(i, rng))
        return out

    def random_key_in_bucket(self, i: int, rng: random.Random) -> int:
        """A key sharing exactly ``i`` leading bits with ours."""
        flip = 1 << (KEY_BITS - 1 - i)
        low = rng.getrandbits(KEY_BITS - 1 - i) if i < KEY_BITS - 1 else 0
        high_mask = ~((flip << 1) - 1) & ((1 << KEY_BITS) - 1)
        return (self.local_key & high_mask) | ((self.local_key & flip) ^ flip) | low
