"""The fetching side of Bitswap, sans-IO: one session fetches a set of blocks (a DAG)
from several peers at once.

A :class:`Session` is told which peers it may ask (:meth:`add_peer`), what it wants
(:meth:`want`), and what peers answered (:meth:`receive`); :meth:`poll` returns the
wantlist changes to send to each peer. Time is passed in; nothing here reads a clock.

Strategy (the shape of kubo's and Helia's sessions):

* **Discovery.** A want nobody is known to have goes out as want-have (with
  send-dont-have) to every peer of the session that has not yet proved useful. A peer
  that answers HAVE, or sends a block, is *useful*.
* **Splitting.** Each want-block goes to one useful peer that holds the block (or is
  likely to: it served this session before), the one with the least
  ``(in flight + 1) x latency``, capped at ``max_inflight`` blocks per peer. Wants are
  spread across peers by that rule, so three providers fetch three parts of a DAG at once.
* **Moving away from slow peers.** A peer's latency is how long it takes per block once
  it is free to send it: the time from ``max(want sent, the peer's previous answer)`` to
  the block, so a block queued behind others at the provider (32 wants of 256 KiB are
  3.4 s of a 20 Mbit/s uplink) is not counted as slow, and the estimate is the peer's
  time per block, which is what the split divides by. A want-block at a peer that has
  answered nothing for ``timeout_for(peer)`` (a few times that latency, at least
  ``min_timeout``) since the want was sent or since its last answer, whichever is later,
  is cancelled there, counted against it, and asked of another: a peer that keeps
  delivering is never timed out for its queue, a silent one is left quickly. A peer that
  answers DONT_HAVE is not asked for that block again. When every peer has been tried,
  the tries are forgotten after ``retry_after`` seconds and the want goes round again.
* **Cancels.** When a block arrives, every other peer that was asked for it gets a cancel.
* Blocks the session did not ask for are reported as unwanted (the caller penalises).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..blocks.cid import CID
from .wire import BitswapMessage, WantEntry

MAX_INFLIGHT = 32
MIN_TIMEOUT = 2.0
RETRY_AFTER = 2.0
TOP_PRIORITY = 1 << 30


@dataclass(slots=True)
class PeerState:
    peer: bytes
    supports_have: bool = True
    useful: bool = False
    inflight: dict[bytes, float] = field(default_factory=dict)  # multihash -> sent at
    latency: float = 0.5  # seconds per block once the peer is free to send it
    last_heard: float | None = None  # its last block or presence for this session
    blocks: int = 0
    bytes: int = 0
    timeouts: int = 0
    dont_haves: int = 0


@dataclass(slots=True)
class Want:
    cid: CID
    priority: int
    block_from: bytes | None = None  # peer asked for the block
    asked_have: set[bytes] = field(default_factory=set)
    tried: set[bytes] = field(default_factory=set)  # peers that failed us for this block
    haves: set[bytes] = field(default_factory=set)
    all_tried_at: float | None = None


class Session:
    def __init__(self, *, max_inflight: int = MAX_INFLIGHT, min_timeout: float = MIN_TIMEOUT,
                 retry_after: float = RETRY_AFTER) -> None:
        self.max_inflight = max_inflight
        self.min_timeout = min_timeout
        self.retry_after = retry_after
        self.peers: dict[bytes, PeerState] = {}
        self.wants: dict[bytes, Want] = {}  # multihash -> want
        self._next_priority = TOP_PRIORITY
        self._out: dict[bytes, list[WantEntry]] = {}
        self.received_blocks = 0
        self.received_bytes = 0
        self.duplicate_blocks = 0

    # -- peers ------------------------------------------------------------------------------
    def add_peer(self, peer: bytes, *, supports_have: bool = True) -> None:
        if peer not in self.peers:
            self.peers[peer] = PeerState(peer, supports_have=supports_have)

    def remove_peer(self, peer: bytes) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        for mh in state.inflight:
            want = self.wants.get(mh)
            if want is not None and want.block_from == peer:
                want.block_from = None
        for want in self.wants.values():
            want.haves.discard(peer)
            want.asked_have.discard(peer)

    # -- wants ------------------------------------------------------------------------------
    def want(self, cids: Iterable[CID]) -> None:
        """Add blocks to fetch; earlier calls (and earlier items) go first."""
        for cid in cids:
            mh = cid.multihash
            if mh in self.wants:
                continue
            self.wants[mh] = Want(cid, self._next_priority)
            self._next_priority = max(1, self._next_priority - 1)

    def cancel_all(self) -> dict[bytes, BitswapMessage]:
        """Give up: cancels for everything asked of anyone."""
        for want in self.wants.values():
            for peer in {want.block_from, *want.asked_have} - {None}:
                self._send(peer, WantEntry(want.cid, cancel=True))
        self.wants.clear()
        return self._flush()

    @property
    def done(self) -> bool:
        return not self.wants

    def pending(self) -> list[CID]:
        return [w.cid for w in self.wants.values()]

    def stuck(self) -> bool:
        """Some want has nobody left to ask (time to look for more providers)."""
        return any(
            w.block_from is None and not (self._candidates(w) or self._discoverable(w))
            for w in self.wants.values()
        )

    # -- answers ----------------------------------------------------------------------------
    def receive(self, peer: bytes, msg: BitswapMessage, now: float) -> tuple[list, list]:
        """Take a peer's message; returns ``(wanted blocks, unwanted blocks)`` as
        ``(cid, data)`` lists. Only the wanted ones should be stored."""
        state = self.peers.get(peer)
        wanted, unwanted = [], []
        for cid, data in msg.blocks:
            mh = cid.multihash
            want = self.wants.pop(mh, None)
            if want is None:
                unwanted.append((cid, data))
                continue
            wanted.append((want.cid, data))
            self.received_blocks += 1
            self.received_bytes += len(data)
            if state is not None:
                state.useful = True
                state.blocks += 1
                state.bytes += len(data)
                sent = state.inflight.pop(mh, None)
                if sent is not None:
                    start = sent if state.last_heard is None else max(sent, state.last_heard)
                    state.latency = 0.8 * state.latency + 0.2 * max(0.0, now - start)
                    state.last_heard = now
            for other in {want.block_from, *want.asked_have} - {None, peer}:
                ostate = self.peers.get(other)
                if ostate is not None:
                    ostate.inflight.pop(mh, None)
                    self._send(other, WantEntry(want.cid, cancel=True))
        if state is None:
            return wanted, unwanted
        if msg.blocks or msg.haves or msg.dont_haves:
            state.last_heard = now
        for cid in msg.haves:
            want = self.wants.get(cid.multihash)
            if want is not None:
                want.haves.add(peer)
                state.useful = True
        for cid in msg.dont_haves:
            mh = cid.multihash
            want = self.wants.get(mh)
            if want is None:
                continue
            state.dont_haves += 1
            want.haves.discard(peer)
            want.tried.add(peer)
            if want.block_from == peer:
                want.block_from = None
                state.inflight.pop(mh, None)
        return wanted, unwanted

    def already_had(self, cids: Iterable[CID]) -> None:
        """Blocks that turned up locally (another session, an add): stop wanting them."""
        for cid in cids:
            want = self.wants.pop(cid.multihash, None)
            if want is None:
                continue
            for peer in {want.block_from, *want.asked_have} - {None}:
                state = self.peers.get(peer)
                if state is not None:
                    state.inflight.pop(cid.multihash, None)
                self._send(peer, WantEntry(want.cid, cancel=True))

    # -- output -----------------------------------------------------------------------------
    def timeout_for(self, state: PeerState) -> float:
        return max(self.min_timeout, 4.0 * state.latency)

    def poll(self, now: float) -> dict[bytes, BitswapMessage]:
        """Wantlist changes due now, per peer."""
        # Silent peers: give their overdue wants to someone else.
        for state in self.peers.values():
            limit = self.timeout_for(state)
            heard = -float("inf") if state.last_heard is None else state.last_heard
            for mh, sent in list(state.inflight.items()):
                if now - max(sent, heard) <= limit:
                    continue
                del state.inflight[mh]
                state.timeouts += 1
                want = self.wants.get(mh)
                if want is None:
                    continue
                want.block_from = None
                want.tried.add(state.peer)
                self._send(state.peer, WantEntry(want.cid, cancel=True))
        for want in sorted(self.wants.values(), key=lambda w: -w.priority):
            if want.block_from is not None:
                continue
            choice = self._choose(want)
            if choice is not None:
                want.block_from = choice.peer
                choice.inflight[want.cid.multihash] = now
                self._send(choice.peer, WantEntry(want.cid, priority=want.priority,
                                                  send_dont_have=True))
                continue
            discover = self._discoverable(want)
            for state in discover:
                want.asked_have.add(state.peer)
                if state.supports_have:
                    self._send(state.peer, WantEntry(want.cid, priority=want.priority,
                                                     want_have=True, send_dont_have=True))
            if not discover and self.peers and self._all_tried(want):
                if want.all_tried_at is None:
                    want.all_tried_at = now
                elif now - want.all_tried_at >= self.retry_after:
                    want.tried.clear()
                    want.asked_have.clear()
                    want.all_tried_at = None
        return self._flush()

    # -- internals ----------------------------------------------------------------------------
    def _candidates(self, want: Want) -> list[PeerState]:
        out = []
        for state in self.peers.values():
            if state.peer in want.tried:
                continue
            if state.peer in want.haves or state.useful or not state.supports_have:
                out.append(state)
        return out

    def _choose(self, want: Want) -> PeerState | None:
        best, best_key = None, None
        for state in self._candidates(want):
            if len(state.inflight) >= self.max_inflight:
                continue
            # A peer that said HAVE for this very block beats one that merely served us.
            key = ((len(state.inflight) + 1) * state.latency
                   * (1.0 if state.peer in want.haves else 2.0), state.timeouts)
            if best_key is None or key < best_key:
                best, best_key = state, key
        return best

    def _discoverable(self, want: Want) -> list[PeerState]:
        return [s for s in self.peers.values()
                if s.peer not in want.asked_have and s.peer not in want.tried
                and not s.useful and s.supports_have]

    def _all_tried(self, want: Want) -> bool:
        return all(p in want.tried or p in want.asked_have for p in self.peers) and not any(
            p in want.haves and p not in want.tried for p in self.peers)

    def _send(self, peer: bytes, entry: WantEntry) -> None:
        self._out.setdefault(peer, []).append(entry)

    def _flush(self) -> dict[bytes, BitswapMessage]:
        out = {peer: BitswapMessage(wants=entries)
               for peer, entries in self._out.items() if entries}
        self._out = {}
        return out
