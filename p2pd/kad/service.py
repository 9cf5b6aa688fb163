"""The trio edge of the DHT: ``/ipfs/kad/1.0.0`` streams in and out around the sans-IO core.

- Server mode answers FIND_NODE, GET_PROVIDERS, ADD_PROVIDER (only for the sender
  itself), PUT_VALUE (validated, best record kept), GET_VALUE and PING; several requests
  may share one stream; a stream idle for a minute, or carrying a malformed message,
  is closed. Client mode (``-dhtClient``) does not register the handler.
- Lookups run :class:`p2pd.kad.lookup.Lookup` with alpha queries in flight.
- A peer enters the routing table the moment identify says it serves ``/ipfs/kad/1.0.0``
  (the Host port's ``peer_identified`` event; go and js do the same), or after it
  answered one of our queries. A new connection that identify does not settle within
  2 s is checked with a FIND_NODE; a lookup, or a server's answer, that starts while
  checks are in flight waits for them (events, no sleeps).
- Disconnected peers stay in the table until they fail a query (the kad-dht spec's
  rule; go does the same); ``failed`` evicts them and promotes a replacement.
- A slow maintenance loop refreshes stale buckets and sweeps expired providers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from ..net.addrs import dialable_from_here
from ..net.ports import Host
from ..net.streams import close_quietly, read_some, reset_quietly
from ..stats import Histogram
from . import records
from .keyspace import key_for
from .lookup import Lookup
from .providers import ProviderStore
from .routing import RoutingTable
from .wire import (
    PROTOCOL,
    KadFrameDecoder,
    KadMessage,
    KadWireError,
    MessageType,
    PeerInfo,
    Record,
    decode_message,
    encode_message,
)

log = logging.getLogger(__name__)

TABLE_KEY = b"kad/routing-table"
TABLE_SAVE_INTERVAL = 60.0
QUERY_TIMEOUT = 10.0
STREAM_IDLE = 60.0
MAX_REQUESTS_PER_STREAM = 256
#: How long a new connection's check waits for identify before it asks FIND_NODE itself.
IDENTIFY_WAIT = 2.0
SERVE_SETTLE = 1.0  # s a server waits for the checks of just-connected peers before answering
MAINTENANCE_INTERVAL = 60.0  # bucket refresh + provider sweep only
#: With no connection at all, bootstrap again after this long, doubling up to the max
#: (a machine offline at start joins once it is online).
REBOOTSTRAP_MIN = 10.0
REBOOTSTRAP_MAX = 300.0
#: A node that loses its last connection (its link went down, its router rebooted) tries
#: again after this long, doubling from there: it is back as soon as the network is.
REBOOTSTRAP_LOST = 1.0


class DHTService:
    def __init__(self, host: Host, datastore, *, server: bool = True) -> None:
        self.host = host
        self.me = host.peer_id_bytes
        self.server = server
        self.table = RoutingTable(self.me)
        self.providers = ProviderStore(datastore)
        self.records = datastore.records
        self.ds = datastore
        self._checking: dict[bytes, trio.Event] = {}  # peer -> set when its check ends
        self._identified: dict[bytes, bool] = {}  # connected peer -> serves the DHT
        self._identify_events: dict[bytes, trio.Event] = {}
        self._new_peers, self._new_peers_recv = trio.open_memory_channel(math.inf)
        #: queries we sent, by outcome ("ok", "failed"), their latency, and those we answered
        self.queries = {"ok": 0, "failed": 0}
        self.query_latency = Histogram()
        self.queries_served = 0

    # -- lifetime ------------------------------------------------------------------------
    def attach(self) -> None:
        if self.server:
            self.host.set_stream_handler(PROTOCOL, self._serve_stream)
        self.host.add_listener(self)

    def set_server(self, on: bool) -> None:
        """Switch between server and client mode at run time (the DHT's "auto" follows
        reachability); identify push tells connected peers."""
        if on == self.server:
            return
        self.server = on
        if on:
            self.host.set_stream_handler(PROTOCOL, self._serve_stream)
        else:
            self.host.remove_stream_handler(PROTOCOL)

    def peer_connected(self, peer: bytes) -> None:
        """A connection to ``peer`` is up: check it (once at a time) unless it is in the table."""
        if peer == self.me or peer in self.table or peer in self._checking:
            return
        self._checking[peer] = trio.Event()
        self._new_peers.send_nowait(peer)

    def peer_identified(self, peer: bytes, protocols: list[str]) -> None:
        """Identify said what ``peer`` speaks: a DHT server (it serves ``/ipfs/kad/1.0.0``)
        enters the table at once, as go and js do; a peer without it is no server."""
        if peer == self.me:
            return
        if PROTOCOL in protocols:
            self.table.add(peer, trio.current_time())
        elif peer in self.table and protocols:
            self.table.failed(peer)  # identify push: it stopped serving the DHT
        self._identified[peer] = PROTOCOL in protocols
        event = self._identify_events.pop(peer, None)
        if event is not None:
            event.set()

    def peer_disconnected(self, peer: bytes) -> None:
        """Kept: the spec keeps a disconnected peer in the table until it fails a query."""
        self._identified.pop(peer, None)

    async def _check_new_peers(self) -> None:
        async with trio.open_nursery() as nursery:
            async for peer in self._new_peers_recv:
                nursery.start_soon(self._check_connected, peer)

    async def _check_connected(self, peer: bytes) -> None:
        """Identify decides (it runs on every connection); a peer not identified within
        ``IDENTIFY_WAIT`` gets the old check, a FIND_NODE it must answer."""
        try:
            if peer not in self._identified:
                event = self._identify_events.setdefault(peer, trio.Event())
                with trio.move_on_after(IDENTIFY_WAIT):
                    await event.wait()
            if peer not in self._identified:
                await self._check(peer)
        finally:
            self._identify_events.pop(peer, None)
            self._checking.pop(peer).set()

    async def _settled(self, *, bound: float = QUERY_TIMEOUT, besides: bytes = b"") -> None:
        """Wait (at most ``bound`` s) for the checks of peers that just connected, except
        the check of ``besides`` (a server answering a peer does not wait on its check of
        that same peer, which may be waiting on this answer)."""
        with trio.move_on_after(bound):
            for peer, event in list(self._checking.items()):
                if peer != besides:
                    await event.wait()

    # -- the table across restarts ---------------------------------------------------------
    def save_table(self) -> None:
        """The routing table's peer ids, in the datastore (their addresses are in the
        peerstore, which home mode keeps too)."""
        from ..varint import encode_uvarint

        blob = b"".join(encode_uvarint(len(e.peer)) + e.peer for e in self.table.peers())
        self.ds.meta.put(TABLE_KEY, blob)

    def saved_table(self) -> list[bytes]:
        from ..varint import decode_uvarint

        blob, out, pos = self.ds.meta.get(TABLE_KEY) or b"", [], 0
        try:
            while pos < len(blob) and len(out) < 256 * self.table.k:
                n, pos = decode_uvarint(blob, pos)
                if not 0 < n <= 128 or pos + n > len(blob):
                    break
                out.append(bytes(blob[pos : pos + n]))
                pos += n
        except ValueError:
            log.warning("kad: the saved routing table is damaged; starting empty")
        return out

    async def run(self, bootstrap: Callable[[], Awaitable[list[tuple[bytes, list[bytes]]]]],
                  *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``bootstrap()`` gives the peers to join through (it may
        resolve /dnsaddr names, so it runs after the node is up)."""
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._check_new_peers)
                await self._run(bootstrap)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    self.save_table()
                except Exception as exc:
                    log.warning("kad: routing table not saved: %s", exc)

    async def _run(self, bootstrap: Callable[[], Awaitable[list[tuple[bytes, list[bytes]]]]]
                   ) -> None:
        # Peers from the last run are candidates: each enters the table again once it answers.
        saved = [p for p in self.saved_table() if p != self.me][:200]
        joined = await self._join(await bootstrap(), saved)
        last_save = trio.current_time()
        last_maintain = -math.inf
        retry = REBOOTSTRAP_MIN
        next_retry = last_save + retry
        connected = joined
        while True:
            now = trio.current_time()
            if self.host.peers():
                connected = True
                retry, next_retry = REBOOTSTRAP_MIN, now + REBOOTSTRAP_MIN
            elif connected:  # the last connection just went: rejoin soon, then back off
                connected = False
                log.info("kad: every connection is gone; bootstrapping again in %g s",
                         REBOOTSTRAP_LOST)
                retry, next_retry = REBOOTSTRAP_LOST, now + REBOOTSTRAP_LOST
            elif now >= next_retry:
                joined = await self._join(await bootstrap(), saved, again=not joined)
                retry = REBOOTSTRAP_MIN if joined else min(retry * 2, REBOOTSTRAP_MAX)
                next_retry = trio.current_time() + retry
            if now - last_maintain >= MAINTENANCE_INTERVAL:
                await self._maintain()
                last_maintain = trio.current_time()
            if trio.current_time() - last_save >= TABLE_SAVE_INTERVAL:
                self.save_table()
                last_save = trio.current_time()
            wake = min(last_maintain + MAINTENANCE_INTERVAL, next_retry)
            if connected:  # look each second whether the last connection went
                wake = min(wake, trio.current_time() + REBOOTSTRAP_LOST)
            await trio.sleep(max(REBOOTSTRAP_LOST, wake - trio.current_time()))

    async def _join(self, peers: list[tuple[bytes, list[bytes]]], saved: list[bytes], *,
                    again: bool = False) -> bool:
        """Connect to the bootstrap peers, check the saved ones, look ourselves up; whether
        any peer answered. Failing them all is said once, in one line, until it works."""
        if saved:
            async with trio.open_nursery() as nursery:
                for peer in saved:
                    nursery.start_soon(self._check, peer)
        reached, last_error = 0, None
        for peer, addrs in peers:
            try:
                await self.host.connect(peer, addrs, QUERY_TIMEOUT)
                reached += 1
            except Exception as exc:
                last_error = exc
                log.info("bootstrap peer %s unreachable: %s", peer.hex()[:16], exc)
        if peers or saved:
            await self.lookup(key_for(self.me))
        joined = bool(reached or self.host.peers())
        if joined and again:
            log.warning("bootstrap: joined the network (%d bootstrap peers reached)", reached)
        elif not joined and peers and not again:
            reason = str(last_error).splitlines()[0][:200] if last_error else "no answer"
            log.warning("bootstrap: none of the %d bootstrap peers could be reached (last: %s); "
                        "retrying while the node has no connection", len(peers), reason)
        return joined

    async def _check(self, peer: bytes) -> None:
        reply = await self._query(peer, KadMessage(MessageType.FIND_NODE, key=self.me))
        if reply is not None:
            self._learn(reply)

    async def _maintain(self) -> None:
        now = trio.current_time()
        for target in self.table.refresh_targets(now, rng=None)[:4]:
            await self.lookup(target)
            self.table.touched(target, now)
        self.providers.sweep(_wall())

    # -- server side ---------------------------------------------------------------------
    async def _serve_stream(self, stream) -> None:
        """Answer requests on one inbound stream until the peer closes its side, it idles
        or it reaches MAX_REQUESTS_PER_STREAM; then close ours. Every way out closes or
        resets the stream: one left half-open stays in the muxer (and in the opener's
        stream count) until the connection ends, one per query (the soak found that)."""
        sender = self.host.stream_peer(stream)
        try:
            await self._serve_requests(stream, sender)
        except KadWireError as exc:
            log.info("kad: malformed message from %s: %s", sender.hex()[:16], exc)
            await reset_quietly(stream)
            return
        except Exception as exc:
            log.debug("kad stream ended: %r", exc)
            await reset_quietly(stream)
            return
        await close_quietly(stream)

    async def _serve_requests(self, stream, sender: bytes) -> None:
        # what a partial request holds counts in the sender's memory share
        with KadFrameDecoder(memory=self.host.stream_memory(stream)) as decoder:
            await self._serve_frames(stream, sender, decoder)

    async def _serve_frames(self, stream, sender: bytes, decoder: KadFrameDecoder) -> None:
        for _ in range(MAX_REQUESTS_PER_STREAM):
            frame = None
            with trio.move_on_after(STREAM_IDLE):
                while frame is None:
                    frame = decoder.next_frame()
                    if frame is None:
                        data = await read_some(stream)
                        decoder.receive_data(data)
                        if not data:
                            frame = decoder.next_frame()
                            if frame is None:
                                return  # the peer closed its side
            if frame is None:
                return  # idle
            request = decode_message(frame)
            # a peer that connected a moment ago belongs in the answer: wait (briefly) for
            # its check, as a lookup does
            await self._settled(bound=SERVE_SETTLE, besides=sender)
            reply = self.answer(sender, request)
            self.queries_served += 1
            if reply is not None:
                await stream.write(encode_message(reply))

    def answer(self, sender: bytes, msg: KadMessage) -> KadMessage | None:
        """The response to one request (sans-IO but for the node's peerstore)."""
        t = msg.type
        if t == MessageType.PING:
            return KadMessage(MessageType.PING)
        if t == MessageType.FIND_NODE:
            return KadMessage(t, key=msg.key, closer=self._closer(key_for(msg.key), sender))
        if t == MessageType.GET_PROVIDERS:
            provs = [PeerInfo(p.peer, self._provider_addrs(p.peer, p.addrs))
                     for p in self.providers.get(msg.key, _wall())]
            return KadMessage(t, key=msg.key, providers=provs,
                              closer=self._closer(key_for(msg.key), sender))
        if t == MessageType.ADD_PROVIDER:
            for p in msg.providers:
                if p.id == sender:
                    self.providers.add(msg.key, sender, p.addrs, _wall())
                else:
                    log.info("kad: %s tried to add a provider record for another peer",
                             sender.hex()[:16])
            return None
        if t == MessageType.PUT_VALUE:
            if msg.record is None or msg.record.key != msg.key:
                raise KadWireError("PUT_VALUE without a record for its key")
            self.store_record(msg.key, msg.record.value)
            return msg
        if t == MessageType.GET_VALUE:
            value = self.local_record(msg.key)
            rec = Record(msg.key, value) if value is not None else None
            return KadMessage(t, key=msg.key, record=rec,
                              closer=self._closer(key_for(msg.key), sender))
        raise KadWireError(f"unsupported request type {t}")

    def _closer(self, target: int, exclude: bytes) -> list[PeerInfo]:
        out = []
        for peer in self.table.closest(target, 21):
            if peer != exclude and len(out) < 20:
                # a connected peer's own word first: the peer store may still hold where it
                # was before (a restart on another port, a new address after a reboot)
                addrs = self.host.live_addrs(peer) or self.host.peer_addrs(peer)
                out.append(PeerInfo(peer, addrs))
        return out

    # -- records -------------------------------------------------------------------------
    def store_record(self, key: bytes, value: bytes) -> None:
        """Validate and keep ``value`` unless the stored one is better; RecordInvalid if bad."""
        try:
            records.validate(key, value, _wall())
        except records.RecordInvalid as exc:
            raise KadWireError(f"invalid record: {exc}") from None
        current = self.local_record(key)
        if current is not None and current != value:
            if records.select(key, [current, value]) == 0:
                return
        self.records.put(key, value)

    def local_record(self, key: bytes) -> bytes | None:
        value = self.records.get(key)
        if value is None:
            return None
        try:
            records.validate(key, value, _wall())
        except records.RecordInvalid:
            self.records.delete(key)  # expired since it was stored
            return None
        return value

    # -- client side ---------------------------------------------------------------------
    async def _query(self, peer: bytes, msg: KadMessage) -> KadMessage | None:
        started = trio.current_time()
        try:
            with trio.fail_after(QUERY_TIMEOUT):
                stream, _proto, addr = await self.host.open_stream(peer, [PROTOCOL],
                                                                   QUERY_TIMEOUT)
                try:
                    if msg.type == MessageType.ADD_PROVIDER:  # our addresses, for where it is
                        me = PeerInfo(self.me, self.host.own_addrs(addr))
                        msg = KadMessage(MessageType.ADD_PROVIDER, key=msg.key, providers=[me])
                    await stream.write(encode_message(msg))
                    if msg.type == MessageType.ADD_PROVIDER:
                        return KadMessage(MessageType.ADD_PROVIDER)
                    with KadFrameDecoder(memory=self.host.stream_memory(stream)) as decoder:
                        while (frame := decoder.next_frame()) is None:
                            data = await read_some(stream)
                            decoder.receive_data(data)
                            if not data and decoder.next_frame() is None:
                                raise KadWireError("stream closed before the answer")
                    reply = decode_message(frame)
                finally:
                    await close_quietly(stream)
        except Exception as exc:
            log.debug("kad query to %s failed: %r", peer.hex()[:16], exc)
            self.table.failed(peer)
            self.queries["failed"] += 1
            return None
        now = trio.current_time()
        self.queries["ok"] += 1
        self.query_latency.observe(now - started)
        self.table.add(peer, now)
        return reply

    def _learn(self, reply: KadMessage) -> None:
        for p in [*reply.closer, *reply.providers]:
            if p.addrs and p.id != self.me:
                self.host.remember_addrs(p.id, p.addrs)

    async def lookup(self, target: int, make: Callable[[], KadMessage] | None = None,
                     stop: Callable[[bytes, KadMessage], bool] | None = None) -> Lookup:
        """Iterative lookup toward ``target``; ``stop`` ends it early when it returns True."""
        make = make or (lambda: KadMessage(MessageType.FIND_NODE, key=target.to_bytes(32, "big")))
        if self._checking:
            await self._settled()
        lk = Lookup(target, self.table.closest(target), trio.current_time(), local_id=self.me,
                    timeout=QUERY_TIMEOUT)
        send, recv = trio.open_memory_channel(math.inf)

        async def ask(peer: bytes) -> None:
            await send.send((peer, await self._query(peer, make())))

        async with trio.open_nursery() as nursery:
            while not lk.done:
                for peer in lk.next_queries(trio.current_time()):
                    nursery.start_soon(ask, peer)
                with trio.move_on_after(1.0):
                    peer, reply = await recv.receive()
                    if reply is None:
                        lk.failed(peer)
                    else:
                        self._learn(reply)
                        lk.answered(peer, [p.id for p in reply.closer], trio.current_time())
                        if stop is not None and stop(peer, reply):
                            break
            nursery.cancel_scope.cancel()
        return lk

    # -- operations for the control socket -------------------------------------------------
    async def closest_peers(self, key: bytes) -> list[bytes]:
        return (await self.lookup(key_for(key), self._find_node(key))).closest()

    def _find_node(self, key: bytes) -> Callable[[], KadMessage]:
        return lambda: KadMessage(MessageType.FIND_NODE, key=key)

    async def find_peer(self, peer: bytes) -> list[bytes] | None:
        """Where ``peer`` can be dialled, or None.

        A peer we are connected to is answered at once, with no query, from its own word
        (identify) and where we reached it: go's FindPeer does the same (js answers from
        whatever its peer store holds). Anyone else is looked up, whatever the peer store
        remembers of it: addresses other peers gave us, those of an earlier run and those
        of a connection that has ended may be stale (a home router that rebooted hands out
        a new address), and answering with them would hide where the peer is now. The
        lookup ends at the first peer that names it with addresses, or when it answers a
        query of the lookup itself (then we are connected to it)."""
        addrs = self.host.live_addrs(peer)
        if addrs:
            return addrs
        found: list[bytes] = []

        def stop(sender: bytes, reply: KadMessage) -> bool:
            if sender == peer:
                return True
            for p in reply.closer:
                if p.id == peer:
                    # loopback addresses only from a peer on this machine: a remote peer's
                    # 127.0.0.1 for it is no place to dial from here
                    found.extend(dialable_from_here(p.addrs, self.host.live_addrs(sender)))
                    if found:
                        return True
            return False

        await self.lookup(key_for(peer), self._find_node(peer), stop)
        return self.host.live_addrs(peer) or found or None

    async def find_providers(self, key: bytes, count: int = 20) -> list[PeerInfo]:
        out = {p.peer: PeerInfo(p.peer, self._provider_addrs(p.peer, p.addrs))
               for p in self.providers.get(key, _wall())}

        def stop(_from: bytes, reply: KadMessage) -> bool:
            for p in reply.providers:
                out.setdefault(p.id, p)
            return len(out) >= count

        if len(out) < count:
            await self.lookup(key_for(key), lambda: KadMessage(MessageType.GET_PROVIDERS,
                                                               key=key), stop)
        return list(out.values())[:count]

    def _provider_addrs(self, peer: bytes, stored: list[bytes]) -> list[bytes]:
        """Where to dial a provider: ours for ourselves, else what its record said or,
        when it said nothing, what the host knows."""
        if peer == self.me:
            return self.host.own_addrs()
        return list(stored) or self.host.peer_addrs(peer)

    async def provide(self, key: bytes) -> int:
        """Announce ourselves as a provider of ``key`` to the k closest peers; returns how many."""
        self.providers.add(key, self.me, [], _wall())
        self.providers.provide(key, _wall())
        closest = await self.closest_peers(key)
        me = PeerInfo(self.me, self.host.own_addrs())
        msg = KadMessage(MessageType.ADD_PROVIDER, key=key, providers=[me])
        done = 0
        async with trio.open_nursery() as nursery:
            async def send_one(peer: bytes) -> None:
                nonlocal done
                if await self._query(peer, msg) is not None:
                    done += 1
            for peer in closest:
                nursery.start_soon(send_one, peer)
        return done

    async def put_value(self, key: bytes, value: bytes) -> int:
        try:
            records.validate(key, value, _wall())
        except records.RecordInvalid as exc:
            raise ValueError(f"invalid record: {exc}") from None
        self.store_record(key, value)
        closest = await self.closest_peers(key)
        msg = KadMessage(MessageType.PUT_VALUE, key=key, record=Record(key, value))
        done = 0
        async with trio.open_nursery() as nursery:
            async def send_one(peer: bytes) -> None:
                nonlocal done
                if await self._query(peer, msg) is not None:
                    done += 1
            for peer in closest:
                nursery.start_soon(send_one, peer)
        return done

    async def get_values(self, key: bytes, quorum: int = 3) -> list[bytes]:
        """Valid values for ``key`` from the network (and ours), best first; stale peers
        that answered with a worse value are sent the best one."""
        found: dict[bytes, bytes] = {}  # peer -> value
        local = self.local_record(key)
        if local is not None:
            found[self.me] = local

        def stop(peer: bytes, reply: KadMessage) -> bool:
            if reply.record is not None and reply.record.key == key:
                try:
                    records.validate(key, reply.record.value, _wall())
                    found[peer] = reply.record.value
                except records.RecordInvalid:
                    log.info("kad: %s answered an invalid record", peer.hex()[:16])
            return len(found) >= quorum

        await self.lookup(key_for(key), lambda: KadMessage(MessageType.GET_VALUE, key=key), stop)
        if not found:
            return []
        values = list(dict.fromkeys(found.values()))
        best = values[records.select(key, values)]
        self.store_record(key, best)
        stale = [p for p, v in found.items() if v != best and p != self.me]
        msg = KadMessage(MessageType.PUT_VALUE, key=key, record=Record(key, best))
        for peer in stale:  # correct peers that hold an older record
            await self._query(peer, msg)
        return [best] + [v for v in values if v != best]


def _wall() -> float:
    import time

    return time.time()
