"""The trio edge of Bitswap: streams in and out around the sans-IO engine and sessions.

* Inbound: a handler for ``/ipfs/bitswap/1.2.0``, ``1.1.0`` and ``1.0.0`` reads
  length-prefixed messages until the peer closes its side (Helia opens a stream per
  message batch; kubo keeps one open). A malformed message resets that stream and counts
  against the peer; the node keeps serving everyone else.
* Outbound: one sender task per peer keeps a stream open while there is traffic (closed
  after ``SEND_IDLE`` seconds of quiet; Helia drops an idle inbound stream after 10 s),
  merges pending wantlist changes into one message, and reopens the stream once if a
  write fails.
* Serving: one worker asks the :class:`~p2pd.exchange.engine.Engine` for the next peer
  (fair, by debt ratio) whose sender has room, and hands it the next message.
* Fetching: :meth:`BitswapService.fetch` runs a :class:`~p2pd.exchange.session.Session`
  over every connected peer plus the DHT's providers of the root, walks the DAG as blocks
  arrive (blocks already stored are read locally, so an interrupted fetch resumes where it
  stopped), and stores each message's blocks with one verified batch write.
* Penalties: unrequested blocks and malformed messages add to a peer's penalty; past
  ``BAN_PENALTY`` the peer is dropped from sessions and ignored for ``BAN_SECONDS``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from ..blocks.blockstore import Blockstore
from ..blocks.cid import CID
from ..blocks.multicodec import Codec
from ..blocks.pins import children
from ..errors import CorruptBlock, P2PDError
from ..net.ports import ContentRouting, Host
from ..net.streams import close_quietly, read_some, reset_quietly
from .engine import Engine
from .session import Session
from .wire import (
    PROTOCOL_100,
    PROTOCOL_120,
    PROTOCOLS,
    BitswapFrameDecoder,
    BitswapMessage,
    BitswapWireError,
    WantEntry,
    decode_message,
    encode_message,
)

log = logging.getLogger(__name__)

SEND_IDLE = 5.0
SEND_TIMEOUT = 30.0
OPEN_TIMEOUT = 10.0
RECEIVE_IDLE = 60.0
#: Bytes of blocks in one message we send. The fetcher sees a message's blocks only once
#: all of it arrived: a 4 MiB message is 1.7 s of a 20 Mbit/s uplink, 1 MiB is 0.4 s.
BLOCK_MESSAGE_BYTES = 1 << 20
#: Bytes of blocks queued towards one peer before the worker serves someone else. Queued
#: blocks are past cancelling; the rest stay in the engine, where a cancel still drops them.
SENDER_ROOM = 2 << 20
BAN_PENALTY = 100
BAN_SECONDS = 600.0
UNWANTED_BLOCK_PENALTY = 2
MALFORMED_PENALTY = 20
POLL_INTERVAL = 0.05
PEER_REFRESH = 1.0
PROVIDER_SEARCH_INTERVAL = 5.0
RECENT_BLOCKS = 4096


class FetchError(P2PDError):
    """A fetch could not complete (timeout, nobody has the blocks)."""


@dataclass(slots=True)
class FetchStats:
    blocks_fetched: int = 0
    bytes_fetched: int = 0
    blocks_local: int = 0
    peers: int = 0


@dataclass(eq=False)
class _Fetch:
    session: Session
    inbox: list = field(default_factory=list)  # (cid, data) stored blocks for this fetch
    wake: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.wake.set()


class _Sender:
    """Everything we send to one peer, over one stream at a time."""

    def __init__(self, service: BitswapService, peer: bytes) -> None:
        self.service = service
        self.peer = peer
        self.wants: dict[bytes, WantEntry] = {}  # multihash -> latest change
        self.messages: list[BitswapMessage] = []
        self.queued_bytes = 0
        self.wake = trio.Event()
        self.protocol: str | None = None
        self.failed = False

    def add_wants(self, entries: list[WantEntry]) -> None:
        for e in entries:
            self.wants[e.cid.multihash] = e
        self.wake.set()

    def add_message(self, msg: BitswapMessage) -> None:
        self.messages.append(msg)
        self.queued_bytes += sum(len(d) for _c, d in msg.blocks)
        self.wake.set()

    async def run(self) -> None:
        stream = None
        try:
            while True:
                if not (self.wants or self.messages):
                    self.wake = trio.Event()
                    with trio.move_on_after(SEND_IDLE):
                        await self.wake.wait()
                    if not (self.wants or self.messages):
                        if stream is not None:
                            await close_quietly(stream)
                            stream = None
                        if self.service._sender_idle(self):
                            return
                        continue
                msg = self._next()
                for attempt in (0, 1):
                    if stream is None:
                        stream = await self._open()
                        if stream is None:
                            self.service._peer_unreachable(self.peer)
                            self.messages.clear()
                            self.wants.clear()
                            self.queued_bytes = 0
                            break
                    try:
                        with trio.fail_after(SEND_TIMEOUT):
                            await stream.write(encode_message(msg, self.protocol or PROTOCOL_120))
                        break
                    except Exception as exc:
                        log.debug("bitswap: write to %s failed (%r)", self.peer.hex()[:16], exc)
                        await reset_quietly(stream)
                        stream = None
                        if attempt:
                            self.service._peer_unreachable(self.peer)
                if msg.blocks:
                    self.queued_bytes = max(
                        0, self.queued_bytes - sum(len(d) for _c, d in msg.blocks))
                    self.service._work.set()
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await close_quietly(stream)

    def _next(self) -> BitswapMessage:
        if self.messages:
            msg = self.messages.pop(0)
        else:
            msg = BitswapMessage()
        if self.wants:
            msg.wants = list(self.wants.values())
            self.wants = {}
        return msg

    async def _open(self):
        try:
            stream, proto, _addr = await self.service.host.open_stream(
                self.peer, list(PROTOCOLS), OPEN_TIMEOUT)
        except Exception as exc:
            log.debug("bitswap: no stream to %s: %s", self.peer.hex()[:16], exc)
            return None
        self.protocol = proto
        if proto != PROTOCOL_120:
            self.service._old_protocol(self.peer)
        return stream


class BitswapService:
    def __init__(self, host: Host, blockstore: Blockstore, *,
                 routing: ContentRouting | None = None, provide: Callable | None = None) -> None:
        """``routing`` finds providers when the connected peers do not have a block."""
        self.host = host
        self.routing = routing
        self.store = blockstore
        self.engine = Engine(blockstore)
        self._senders: dict[bytes, _Sender] = {}
        self._fetches: set[_Fetch] = set()
        self._wanted: dict[bytes, set[_Fetch]] = {}
        self._work = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.penalties: dict[bytes, int] = {}
        self.banned: dict[bytes, float] = {}
        self.blocks_received = 0
        self.blocks_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.unwanted_blocks = 0
        self.duplicate_blocks = 0
        #: peers that sent us blocks we wanted (kept small: a count is what is reported)
        self._givers: set[bytes] = set()
        #: recently received multihashes: a late copy of one is a duplicate, not spam
        self._recent: dict[bytes, None] = {}

    # -- lifetime ---------------------------------------------------------------------------
    def attach(self) -> None:
        for proto in PROTOCOLS:
            self.host.set_stream_handler(proto, self._serve_stream)
        self.host.add_listener(self)

    # -- connection events (the Host port's listener) ----------------------------------------
    def peer_connected(self, peer: bytes) -> None:
        pass

    def peer_disconnected(self, peer: bytes) -> None:
        """A peer that went drops its ledger (wants, debts) at once."""
        self.engine.peer_gone(peer)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._serve_wants)
            nursery.start_soon(self._forget_gone_peers)
            task_status.started()
            await trio.sleep_forever()

    # -- inbound ----------------------------------------------------------------------------
    async def _serve_stream(self, stream) -> None:
        peer = self.host.stream_peer(stream)
        decoder = BitswapFrameDecoder(memory=self.host.stream_memory(stream))
        try:
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    with trio.move_on_after(RECEIVE_IDLE) as idle:
                        data = await read_some(stream)
                    if idle.cancelled_caught:
                        break
                    decoder.receive_data(data)
                    if not data:
                        if decoder.next_frame() is None:
                            break
                    continue
                if self._is_banned(peer):
                    break
                await self.handle_message(peer, decode_message(frame))
        except BitswapWireError as exc:
            log.info("bitswap: malformed message from %s: %s", peer.hex()[:16], exc)
            self._penalise(peer, MALFORMED_PENALTY)
            await reset_quietly(stream)
            return
        except Exception as exc:  # a reset, or a partial message past the peer's share
            log.debug("bitswap stream from %s ended: %r", peer.hex()[:16], exc)
            await reset_quietly(stream)
            return
        finally:
            decoder.close()
        await close_quietly(stream)

    async def handle_message(self, peer: bytes, msg: BitswapMessage) -> None:
        """One decoded message from ``peer`` (public for tests and the simulator)."""
        if msg.blocks:
            await self._take_blocks(peer, msg)
        elif msg.haves or msg.dont_haves:
            self._presences(peer, msg)
        if msg.wants or msg.full:
            self.engine.receive(peer, msg)
            if self.engine.has_work(peer):
                self._work.set()

    async def _take_blocks(self, peer: bytes, msg: BitswapMessage) -> None:
        now = trio.current_time()  # when they arrived, not when they were stored
        wanted, unwanted = [], 0
        for cid, data in msg.blocks:
            if cid.multihash in self._wanted:
                wanted.append((cid, data))
            elif cid.multihash in self._recent:
                self.duplicate_blocks += 1
            else:
                unwanted += 1
        if unwanted:
            self.unwanted_blocks += unwanted
            self._penalise(peer, UNWANTED_BLOCK_PENALTY * unwanted)
        if wanted:
            # Verified and durable in one write before anyone uses them.
            # (The decoder derived each CID from the bytes with one native batch hash.)
            await trio.to_thread.run_sync(partial(self.store.put_many, wanted, prehashed=True))
            self.blocks_received += len(wanted)
            self.bytes_received += sum(len(d) for _c, d in wanted)
            if len(self._givers) < 4096:
                self._givers.add(peer)
            for cid, _data in wanted:
                self._recent[cid.multihash] = None
            while len(self._recent) > RECENT_BLOCKS:
                del self._recent[next(iter(self._recent))]
            self.engine.record_received(peer, sum(len(d) for _c, d in wanted), len(wanted))
        fetches: set[_Fetch] = set()
        for cid, _data in wanted:
            fetches |= self._wanted.pop(cid.multihash, set())
        for fetch in fetches | self._presence_fetches(msg):
            got, _ = fetch.session.receive(peer, msg, now)
            fetch.inbox.extend(got)
            fetch.poke()
        if wanted and self.engine.blocks_added([c for c, _d in wanted]):
            self._work.set()

    def _presence_fetches(self, msg: BitswapMessage) -> set[_Fetch]:
        out: set[_Fetch] = set()
        for cid in (*msg.haves, *msg.dont_haves):
            out |= self._wanted.get(cid.multihash, set())
        return out

    def _presences(self, peer: bytes, msg: BitswapMessage) -> None:
        now = trio.current_time()
        for fetch in self._presence_fetches(msg):
            fetch.session.receive(peer, msg, now)
            fetch.poke()

    # -- serving ----------------------------------------------------------------------------
    async def _serve_wants(self) -> None:
        while True:
            peer = self.engine.pick_peer(self._has_room)
            if peer is None:
                self._work = trio.Event()
                await self._work.wait()
                continue
            msg = self.engine.next_message(peer, BLOCK_MESSAGE_BYTES)
            if msg is not None:
                self.blocks_sent += len(msg.blocks)
                self.bytes_sent += sum(len(d) for _c, d in msg.blocks)
                self._sender(peer).add_message(msg)
            await trio.sleep(0)

    def _has_room(self, peer: bytes) -> bool:
        sender = self._senders.get(peer)
        return sender is None or sender.queued_bytes < SENDER_ROOM

    async def _forget_gone_peers(self) -> None:
        """Ledgers of peers no longer connected (a missed event) and bans that expired."""
        while True:
            await trio.sleep(10)
            connected = {p.peer_id for p in self.host.peers()}
            for peer in list(self.engine.ledgers):
                if peer not in connected:
                    self.engine.peer_gone(peer)
            now = trio.current_time()
            for peer, until in list(self.banned.items()):
                if until <= now:
                    del self.banned[peer]
                    self.penalties.pop(peer, None)

    # -- senders ----------------------------------------------------------------------------
    def _sender(self, peer: bytes) -> _Sender:
        sender = self._senders.get(peer)
        if sender is None:
            sender = self._senders[peer] = _Sender(self, peer)
            self._nursery.start_soon(sender.run)
        return sender

    def _sender_idle(self, sender: _Sender) -> bool:
        """An idle sender retires (a new one starts with the next message)."""
        if self._senders.get(sender.peer) is sender:
            del self._senders[sender.peer]
        return True

    def _peer_unreachable(self, peer: bytes) -> None:
        for fetch in self._fetches:
            if peer in fetch.session.peers:
                fetch.session.remove_peer(peer)
                fetch.poke()

    def _old_protocol(self, peer: bytes) -> None:
        for fetch in self._fetches:
            state = fetch.session.peers.get(peer)
            if state is not None:
                state.supports_have = False

    # -- penalties --------------------------------------------------------------------------
    def _penalise(self, peer: bytes, amount: int) -> None:
        total = self.penalties.get(peer, 0) + amount
        self.penalties[peer] = total
        if total >= BAN_PENALTY and peer not in self.banned:
            log.warning("bitswap: ignoring peer %s for %g s (penalty %d)",
                        peer.hex()[:16], BAN_SECONDS, total)
            self.banned[peer] = trio.current_time() + BAN_SECONDS
            self.engine.peer_gone(peer)
            self._peer_unreachable(peer)

    def _is_banned(self, peer: bytes) -> bool:
        until = self.banned.get(peer)
        return until is not None and until > trio.current_time()

    # -- fetching ---------------------------------------------------------------------------
    async def fetch(self, root: CID, *, progress: Callable[[FetchStats], None] | None = None,
                    timeout: float | None = None, providers: bool = True) -> FetchStats:
        """Make every block of the DAG under ``root`` local; returns what it took.

        Blocks already stored are read, not fetched, so a fetch cut short (even by
        ``kill -9``) resumes where it stopped.
        """
        stats = FetchStats()
        fetch = _Fetch(Session())
        self._fetches.add(fetch)
        try:
            with trio.fail_after(timeout if timeout else math.inf):
                await self._run_fetch(root, fetch, stats, progress, providers)
        except trio.TooSlowError:
            missing = len(fetch.session.wants)
            raise FetchError(
                f"fetching {root} timed out after {timeout:g} s with {missing} blocks still "
                f"missing ({stats.blocks_fetched} fetched from {stats.peers} peers)") from None
        finally:
            self._fetches.discard(fetch)
            for cid in fetch.session.pending():
                waiting = self._wanted.get(cid.multihash)
                if waiting is not None:
                    waiting.discard(fetch)
                    if not waiting:
                        del self._wanted[cid.multihash]
            for peer, msg in fetch.session.cancel_all().items():
                if peer in self._senders:
                    self._senders[peer].add_wants(msg.wants)
        return stats

    async def fetch_block(self, cid: CID, *, timeout: float | None = None) -> bytes:
        """One block, from the store or the network (not its children)."""
        if not self.store.has(cid):
            stats = FetchStats()
            fetch = _Fetch(Session())
            self._fetches.add(fetch)
            try:
                with trio.fail_after(timeout if timeout else math.inf):
                    await self._run_fetch(cid, fetch, stats, None, True, recurse=False)
            except trio.TooSlowError:
                raise FetchError(f"block {cid} not found within {timeout:g} s") from None
            finally:
                self._fetches.discard(fetch)
                self._wanted.pop(cid.multihash, None)
        return self.store.get(cid)

    async def _run_fetch(self, root: CID, fetch: _Fetch, stats: FetchStats, progress,
                         providers: bool, *, recurse: bool = True) -> None:
        session = fetch.session
        local = [root]
        last_refresh = -math.inf
        last_search = -math.inf
        searching = False

        async def search() -> None:
            nonlocal searching
            try:
                await self._find_providers(root, session)
            finally:
                searching = False
                fetch.poke()

        while True:
            # Walk what is local; want what is not.
            while local:
                cid = local.pop()
                if self.store.has(cid):
                    if recurse and cid.codec == Codec.DAG_PB:  # raw leaves link to nothing
                        try:
                            block = self.store.get(cid)
                        except CorruptBlock:  # quarantined now: fetched again below
                            block = None
                        if block is not None:
                            local.extend(children(cid, block))
                            stats.blocks_local += 1
                            continue
                    else:
                        stats.blocks_local += 1
                        continue
                session.want([cid])
                self._wanted.setdefault(cid.multihash, set()).add(fetch)
            for cid, data in fetch.inbox:
                stats.blocks_fetched += 1
                stats.bytes_fetched += len(data)
                if recurse:
                    local.extend(children(cid, data))
            fetch.inbox.clear()
            if local:
                continue
            if progress is not None:
                progress(stats)
            if session.done:
                return
            now = trio.current_time()
            if now - last_refresh >= PEER_REFRESH:
                last_refresh = now
                for summary in self.host.peers():
                    if not self._is_banned(summary.peer_id):
                        session.add_peer(summary.peer_id)
                stats.peers = sum(1 for s in session.peers.values() if s.useful)
            if (providers and not searching and self.routing is not None
                    and (session.stuck() or not session.peers)
                    and now - last_search >= PROVIDER_SEARCH_INTERVAL):
                last_search = now
                searching = True
                self._nursery.start_soon(search)
            for peer, msg in session.poll(now).items():
                if self._is_banned(peer):
                    continue
                self._sender(peer).add_wants(msg.wants)
            fetch.wake = trio.Event()
            with trio.move_on_after(POLL_INTERVAL if session.peers else PEER_REFRESH):
                await fetch.wake.wait()

    async def _find_providers(self, root: CID, session: Session) -> None:
        routing = self.routing
        keys = [root.multihash] + [c.multihash for c in session.pending()[:2]]
        for key in dict.fromkeys(keys):
            try:
                with trio.move_on_after(30):
                    found = await routing.find_providers(key, 10)
            except Exception as exc:
                log.debug("bitswap: provider search failed: %s", exc)
                continue
            for prov in found:
                if prov.id == self.host.peer_id_bytes or self._is_banned(prov.id):
                    continue
                try:
                    await self.host.connect(prov.id, prov.addrs, OPEN_TIMEOUT)
                    session.add_peer(prov.id)
                except Exception as exc:
                    log.debug("bitswap: provider %s unreachable: %s", prov.id.hex()[:16], exc)

    # -- what the daemon reports ------------------------------------------------------------
    def stats(self) -> dict:
        return {
            "peers": len(self.engine.ledgers),
            "blocks_received": self.blocks_received,
            "blocks_sent": self.blocks_sent,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "providers_used": len(self._givers),
            "unwanted_blocks": self.unwanted_blocks,
            "duplicate_blocks": self.duplicate_blocks,
            "banned": len(self.banned),
        }


__all__ = ["BitswapService", "FetchError", "FetchStats", "PROTOCOL_100"]
