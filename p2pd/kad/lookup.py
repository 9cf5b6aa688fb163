"""The iterative Kademlia lookup (Maymounkov and Mazieres, section 2.3; libp2p kad-dht).

A :class:`Lookup` for a target key keeps the candidates it has heard of sorted by
distance, queries at most ``alpha`` at a time, and finishes when the ``k`` closest
candidates it knows have all answered (or none are left to ask). Slow peers do not stall
it: a query older than ``timeout`` counts as failed and frees its slot. Answers are
bounded: at most ``max_closer`` peers are taken from one response, our own id and the
responder itself are ignored, and a peer is queried at most once.

Driving it (no I/O here):

    lookup = Lookup(target, seeds, now)
    while not lookup.done:
        for peer in lookup.next_queries(now): send FIND_NODE(target) to peer
        ... on answer:  lookup.answered(peer, closer_peers, now)
        ... on error:   lookup.failed(peer)
        ... on tick:    lookup.expire(now)

``depth`` records how many hops from the seeds each peer was found at (seeds are 1).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from enum import Enum

from .keyspace import key_for

ALPHA = 3
K = 20
TIMEOUT = 10.0
MAX_CLOSER = 40


class State(Enum):
    NEW = 0
    WAITING = 1
    ANSWERED = 2
    FAILED = 3


class Lookup:
    def __init__(self, target: int, seeds: Iterable[bytes], now: float, *, local_id: bytes = b"",
                 k: int = K, alpha: int = ALPHA, timeout: float = TIMEOUT,
                 max_closer: int = MAX_CLOSER, keys: dict[bytes, int] | None = None) -> None:
        self.target = target
        self.k, self.alpha, self.timeout, self.max_closer = k, alpha, timeout, max_closer
        self.local_id = local_id
        self._keys = keys  # optional id -> key cache (the simulator passes one)
        self.order: list[tuple[int, bytes]] = []  # (distance, peer), ascending
        self.state: dict[bytes, State] = {}
        self.sent_at: dict[bytes, float] = {}
        self.depth: dict[bytes, int] = {}
        self.queries = 0
        self._add(seeds, 1)

    def _key(self, peer: bytes) -> int:
        if self._keys is not None:
            key = self._keys.get(peer)
            if key is not None:
                return key
        return key_for(peer)

    def _add(self, peers: Iterable[bytes], depth: int) -> None:
        for peer in peers:
            if peer in self.state or peer == self.local_id:
                continue
            self.state[peer] = State.NEW
            self.depth[peer] = depth
            bisect.insort(self.order, (self._key(peer) ^ self.target, peer))

    def _in_flight(self) -> int:
        return sum(1 for p in self.sent_at if self.state[p] is State.WAITING)

    def next_queries(self, now: float) -> list[bytes]:
        """Peers to query now (at most ``alpha`` in flight); marks them waiting."""
        self.expire(now)
        free = self.alpha - self._in_flight()
        out = []
        if free <= 0 or self.done:
            return out
        for _dist, peer in self._closest_unfailed():
            if self.state[peer] is State.NEW:
                self.state[peer] = State.WAITING
                self.sent_at[peer] = now
                self.queries += 1
                out.append(peer)
                if len(out) == free:
                    break
        return out

    def _closest_unfailed(self) -> list[tuple[int, bytes]]:
        """The k closest candidates that have not failed (the lookup's frontier)."""
        out = []
        for item in self.order:
            if self.state[item[1]] is not State.FAILED:
                out.append(item)
                if len(out) == self.k:
                    break
        return out

    def answered(self, peer: bytes, closer: Iterable[bytes], now: float) -> None:
        if self.state.get(peer) is not State.WAITING:
            return  # unsolicited, late after a timeout, or a duplicate: ignored
        self.state[peer] = State.ANSWERED
        taken = []
        for p in closer:
            if p != peer and p != self.local_id:
                taken.append(p)
                if len(taken) == self.max_closer:
                    break
        self._add(taken, self.depth[peer] + 1)

    def failed(self, peer: bytes) -> None:
        if self.state.get(peer) is State.WAITING:
            self.state[peer] = State.FAILED

    def expire(self, now: float) -> list[bytes]:
        """Queries older than the timeout count as failed; returns those peers."""
        late = [p for p, t in self.sent_at.items()
                if self.state[p] is State.WAITING and now - t >= self.timeout]
        for p in late:
            self.state[p] = State.FAILED
        return late

    @property
    def done(self) -> bool:
        frontier = self._closest_unfailed()
        if not frontier:
            return True
        if all(self.state[p] is State.ANSWERED for _d, p in frontier):
            return True
        # Nothing left to ask and nothing in flight: finished with what we have.
        return not any(self.state[p] in (State.NEW, State.WAITING) for _d, p in frontier)

    def closest(self, n: int | None = None) -> list[bytes]:
        """The closest peers that answered, nearest first."""
        n = self.k if n is None else n
        out = [p for _d, p in self.order if self.state[p] is State.ANSWERED]
        return out[:n]
