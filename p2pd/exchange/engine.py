"""The serving side of Bitswap, sans-IO: per-peer ledgers and a fair task queue.

:class:`Engine` is fed the messages peers send (:meth:`Engine.receive`) and asked for
the next message to send (:meth:`Engine.next_message`). It never does I/O; the block
store is read through the small :class:`BlockSource` interface (``has``/``size``/
``get``), which the daemon backs with its RocksDB blockstore and tests with a dict.

Rules (Bitswap spec, 1.2.0):

* A peer's wantlist is kept per peer (its ledger). ``full`` replaces it, ``cancel``
  removes an entry, anything else adds or updates one. A wantlist holds at most
  ``max_wants`` entries; entries beyond that are dropped and counted against the peer.
* Every live want becomes a task. ``want-block`` for a block we hold answers the block;
  ``want-have`` answers HAVE (or the block itself when it is at most
  ``inline_have_bytes``, as Helia and kubo do); a want we cannot serve answers
  DONT_HAVE when the peer asked for it (``sendDontHave``) and otherwise stays in the
  ledger, so the block is sent when it arrives later (:meth:`Engine.blocks_added`).
* Within a peer, tasks go by priority (higher first), then arrival. Across peers the
  engine is fair and favours peers that give: the next peer served is the one with the
  least ``sent / (received + 1 MiB)`` bytes among those with work and room to send, so a
  peer that only takes is served when nobody else waits.
* Served want-blocks leave the wantlist (the spec's rule), want-haves are answered once.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..blocks.cid import CID
from .wire import SEND_BUDGET, BitswapMessage, WantEntry

#: Most wantlist entries kept per peer (Helia's and kubo's default: 1024).
MAX_WANTS = 1024
#: A want-have for a block at most this big is answered with the block (Helia: 1024).
INLINE_HAVE_BYTES = 1024
#: Credit every peer starts with, so new peers are not ranked by division by zero.
CREDIT = 1 << 20


class BlockSource(Protocol):
    def has(self, cid: CID, /) -> bool: ...
    def size(self, cid: CID, /) -> int: ...
    def get(self, cid: CID, /) -> bytes: ...


@dataclass(slots=True)
class Ledger:
    """What we know of one peer as a client of ours."""

    peer: bytes
    wants: dict[bytes, WantEntry] = field(default_factory=dict)  # multihash -> entry
    bytes_sent: int = 0
    bytes_received: int = 0
    blocks_sent: int = 0
    blocks_received: int = 0
    dropped_wants: int = 0
    tasks: list = field(default_factory=list)  # heap of (-priority, seq, multihash)
    queued: set = field(default_factory=set)  # multihashes with a task in the heap

    @property
    def debt_ratio(self) -> float:
        return self.bytes_sent / (self.bytes_received + CREDIT)


class Engine:
    def __init__(self, store: BlockSource, *, max_wants: int = MAX_WANTS,
                 inline_have_bytes: int = INLINE_HAVE_BYTES, max_peers: int = 4096) -> None:
        self.store = store
        self.max_wants = max_wants
        self.inline_have_bytes = inline_have_bytes
        self.max_peers = max_peers
        self.ledgers: dict[bytes, Ledger] = {}
        self._seq = itertools.count()
        #: multihash -> peers whose wantlist names it (for blocks that arrive later)
        self._wanted_by: dict[bytes, set[bytes]] = {}

    # -- input ------------------------------------------------------------------------------
    def ledger(self, peer: bytes) -> Ledger:
        led = self.ledgers.get(peer)
        if led is None:
            if len(self.ledgers) >= self.max_peers:
                self._evict_idle()
            led = self.ledgers[peer] = Ledger(peer)
        return led

    def receive(self, peer: bytes, msg: BitswapMessage) -> None:
        """A message from ``peer``: update its wantlist and queue what it asks for."""
        led = self.ledger(peer)
        if msg.full:
            for mh in list(led.wants):
                self._drop_want(led, mh)
        for entry in msg.wants:
            mh = entry.cid.multihash
            if entry.cancel:
                self._drop_want(led, mh)
                continue
            if mh not in led.wants and len(led.wants) >= self.max_wants:
                led.dropped_wants += 1
                continue
            led.wants[mh] = entry
            self._wanted_by.setdefault(mh, set()).add(peer)
            self._queue(led, mh, entry.priority)

    def record_received(self, peer: bytes, nbytes: int, nblocks: int = 1) -> None:
        """``peer`` gave us useful blocks: its credit with us grows."""
        led = self.ledger(peer)
        led.bytes_received += nbytes
        led.blocks_received += nblocks

    def blocks_added(self, cids: Iterable[CID]) -> list[bytes]:
        """Blocks became available locally; queue them for peers that wanted them.

        Returns the peers that now have work.
        """
        touched: set[bytes] = set()
        for cid in cids:
            for peer in self._wanted_by.get(cid.multihash, ()):
                led = self.ledgers.get(peer)
                if led is None or cid.multihash not in led.wants:
                    continue
                self._queue(led, cid.multihash, led.wants[cid.multihash].priority)
                touched.add(peer)
        return sorted(touched)

    def peer_gone(self, peer: bytes) -> None:
        """The peer disconnected: its wantlist is void (it resends it on reconnecting)."""
        led = self.ledgers.pop(peer, None)
        if led is None:
            return
        for mh in led.wants:
            peers = self._wanted_by.get(mh)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._wanted_by[mh]

    # -- output -----------------------------------------------------------------------------
    def has_work(self, peer: bytes | None = None) -> bool:
        if peer is not None:
            led = self.ledgers.get(peer)
            return bool(led and led.tasks)
        return any(led.tasks for led in self.ledgers.values())

    def pick_peer(self, ready: Callable[[bytes], bool] = lambda _p: True) -> bytes | None:
        """The next peer to serve: least debt ratio among peers with work and room."""
        best, best_key = None, None
        for peer, led in self.ledgers.items():
            if not led.tasks or not ready(peer):
                continue
            key = (led.debt_ratio, led.bytes_sent)
            if best_key is None or key < best_key:
                best, best_key = peer, key
        return best

    def next_message(self, peer: bytes, budget: int = SEND_BUDGET) -> BitswapMessage | None:
        """Pop ``peer``'s tasks (by priority) into one message of at most ``budget`` bytes."""
        led = self.ledgers.get(peer)
        if led is None or not led.tasks:
            return None
        out = BitswapMessage()
        used = 0
        while led.tasks:
            _neg, _seq, mh = led.tasks[0]
            entry = led.wants.get(mh)
            if entry is None:  # cancelled since it was queued
                heapq.heappop(led.tasks)
                led.queued.discard(mh)
                continue
            cid = entry.cid
            have = self.store.has(cid)
            if have and (not entry.want_have or self._small(cid)):
                size = self.store.size(cid)
                if used and used + size > budget:
                    break  # the next message takes it
                try:
                    data = self.store.get(cid)
                except Exception:  # vanished or corrupt on disk: answer as if absent
                    data = None
                heapq.heappop(led.tasks)
                led.queued.discard(mh)
                if data is None:
                    if entry.send_dont_have:
                        out.dont_haves.append(cid)
                    continue
                out.blocks.append((cid, data))
                used += len(data)
                led.bytes_sent += len(data)
                led.blocks_sent += 1
                self._drop_want(led, mh)
                continue
            heapq.heappop(led.tasks)
            led.queued.discard(mh)
            if have:  # want-have
                out.haves.append(cid)
                used += len(cid.multihash) + 8
                self._drop_want(led, mh)
            elif entry.send_dont_have:
                out.dont_haves.append(cid)
                used += len(cid.multihash) + 8
                if entry.want_have:
                    self._drop_want(led, mh)
            # else: keep the want; blocks_added() requeues it when the block arrives
            if used >= budget:
                break
        if out.is_empty():
            return None
        out.pending_bytes = 0
        return out

    # -- internals ----------------------------------------------------------------------------
    def _small(self, cid: CID) -> bool:
        try:
            return self.store.size(cid) <= self.inline_have_bytes
        except Exception:
            return False

    def _queue(self, led: Ledger, mh: bytes, priority: int) -> None:
        if mh in led.queued:
            return
        led.queued.add(mh)
        heapq.heappush(led.tasks, (-priority, next(self._seq), mh))

    def _drop_want(self, led: Ledger, mh: bytes) -> None:
        if led.wants.pop(mh, None) is None:
            return
        peers = self._wanted_by.get(mh)
        if peers is not None:
            peers.discard(led.peer)
            if not peers:
                del self._wanted_by[mh]

    def _evict_idle(self) -> None:
        for peer, led in list(self.ledgers.items()):
            if not led.wants:
                del self.ledgers[peer]
                return
        # every ledger is busy: drop the one that took most and gave least
        worst = max(self.ledgers.values(), key=lambda led: led.debt_ratio)
        self.peer_gone(worst.peer)
