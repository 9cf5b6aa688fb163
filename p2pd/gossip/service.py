"""The trio edge of pubsub: streams in and out around the sans-IO :class:`Router`.

* Each pubsub peer has one stream in each direction, as the pubsub spec asks: we open ours
  (``/meshsub/1.1.0``, then ``1.0.0``, then ``/floodsub/1.0.0``) when a connection appears
  (a network notifee, plus a reconciling sweep) and when a peer opens one to us; theirs is
  read frame by frame into :meth:`Router.handle_rpc`.
* A malformed RPC resets that stream and adds behaviour penalty; the peer's next stream
  starts clean, its score remembers.
* One writer task per peer sends what the router queued, at most ``MAX_QUEUED`` RPC frames
  and ``MAX_QUEUED_BYTES`` deep (beyond that the newest are dropped and counted: a slow peer
  cannot make us buffer without bound).
* A heartbeat task runs :meth:`Router.heartbeat` every second.
* Local subscribers (control clients) get messages through a :class:`Subscription`, at most
  ``SUBSCRIBER_BUFFER`` messages and ``SUBSCRIBER_BYTES`` waiting; a subscriber that does
  not keep up loses messages (counted), never the daemon's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..net.ports import Host
from ..net.streams import read_some, reset_quietly
from ..peerkeys import public_key_in_peer_id
from .router import Params, Router, Validation
from .wire import (
    FLOODSUB,
    MESHSUB_10,
    MESHSUB_11,
    Message,
    PubsubFrameDecoder,
    PubsubWireError,
    decode_rpc,
    encode_rpc,
)

log = logging.getLogger(__name__)

MAX_QUEUED = 1024
#: bytes of RPC frames queued for one peer (messages are up to 1 MiB each)
MAX_QUEUED_BYTES = 16 << 20
SUBSCRIBER_BUFFER = 1024
#: bytes of message data waiting for one local subscriber
SUBSCRIBER_BYTES = 8 << 20
OPEN_TIMEOUT = 10.0
SWEEP_INTERVAL = 1.0
RETRY_NON_PUBSUB = 30.0


class Subscription:
    """One local subscriber's messages, ``(msg_id, Message)`` in arrival order (iterate
    it). At most ``SUBSCRIBER_BUFFER`` messages and ``SUBSCRIBER_BYTES`` of data wait for
    the reader; beyond that a new message is dropped and counted in ``dropped``."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._send, self._recv = trio.open_memory_channel(float("inf"))
        self.queued = 0
        self.queued_bytes = 0
        self.dropped = 0

    def offer(self, msg_id: bytes, msg: Message) -> bool:
        n = len(msg.data)
        if self.queued >= SUBSCRIBER_BUFFER or (
                self.queued and self.queued_bytes + n > SUBSCRIBER_BYTES):
            self.dropped += 1
            return False
        try:
            self._send.send_nowait((msg_id, msg))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self.queued += 1
        self.queued_bytes += n
        return True

    def close(self) -> None:
        self._send.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[bytes, Message]:
        try:
            item = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        self.queued -= 1
        self.queued_bytes -= len(item[1].data)
        return item


class _Writer:
    def __init__(self, service: PubsubService, peer: bytes, stream, protocol: str) -> None:
        self.service, self.peer, self.stream, self.protocol = service, peer, stream, protocol
        self.frames: list[bytes] = []
        self.queued_bytes = 0
        self.wake = trio.Event()
        self.dropped = 0
        self.closing = False

    def close(self) -> None:
        """End :meth:`run` (it resets the stream): the peer is gone. An idle writer waits
        on ``wake``, which nothing sets once the peer is dropped, so without this each
        disconnect left a writer task behind (the soak: ~1 per DISCONNECT)."""
        self.closing = True
        self.wake.set()

    def push(self, frame: bytes) -> None:
        if len(self.frames) >= MAX_QUEUED or (
                self.frames and self.queued_bytes + len(frame) > MAX_QUEUED_BYTES):
            self.dropped += 1
            return
        self.frames.append(frame)
        self.queued_bytes += len(frame)
        self.wake.set()

    async def run(self) -> None:
        try:
            while not self.closing:
                if not self.frames:
                    self.wake = trio.Event()
                    await self.wake.wait()
                    continue
                frames, self.frames, self.queued_bytes = self.frames, [], 0
                await self.stream.write(b"".join(frames))
        except Exception as exc:
            log.debug("pubsub: writing to %s failed: %r", self.peer.hex()[:16], exc)
        finally:
            self.service._writer_gone(self)
            with trio.CancelScope(shield=True):
                try:
                    await self.stream.reset()
                except Exception:
                    pass


class PubsubService:
    def __init__(self, host: Host, key_pair, *, mode: str = "gossipsub", sign: bool = True,
                 strict: bool = True, params: Params | None = None) -> None:
        """``key_pair`` (the node's) signs our messages."""
        self.host = host
        self.me = host.peer_id_bytes
        self.mode = mode
        self.protocols = (MESHSUB_11, MESHSUB_10, FLOODSUB) if mode == "gossipsub" else (FLOODSUB,)
        params = params or Params()
        params.strict_sign = strict
        self._key = key_pair.private_key
        self._key_proto = key_pair.public_key.serialize()
        self.validators: dict[str, Callable[[bytes, Message], Validation]] = {}
        self.router = Router(self.me, params=params, mode=mode, validator=self._validate,
                             signer=self._sign if sign else None)
        self._writers: dict[bytes, _Writer] = {}
        #: peers whose stream died while another connection of theirs stayed up
        self._reopen: set[bytes] = set()
        self._opening: set[bytes] = set()
        self._pending: dict[bytes, list[bytes]] = {}
        self._not_pubsub: dict[bytes, float] = {}
        self._subscribers: dict[str, list[Subscription]] = {}
        #: messages dropped for local subscribers that have unsubscribed since
        self.subscriber_dropped = 0
        self._nursery: trio.Nursery | None = None
        self._events_send, self._events = trio.open_memory_channel(4096)

    # -- lifetime -----------------------------------------------------------------------------
    def attach(self) -> None:
        for proto in self.protocols:
            self.host.set_stream_handler(proto, self._inbound)
        self.host.add_listener(_Events(self._events_send))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._heartbeat)
            nursery.start_soon(self._connections)
            nursery.start_soon(self._sweep)
            task_status.started()
            await trio.sleep_forever()

    # -- the application side -----------------------------------------------------------------
    def _sign(self, m: Message) -> Message:
        m.signature = self._key.sign(m.signed_bytes())
        if public_key_in_peer_id(m.from_peer) is None:
            m.key = self._key_proto
        return m

    def _validate(self, peer: bytes, m: Message) -> Validation:
        fn = self.validators.get(m.topic)
        if fn is None:
            return Validation.ACCEPT
        try:
            return fn(peer, m)
        except Exception as exc:  # a broken validator rejects, it does not crash the node
            log.warning("pubsub validator for %r failed: %s", m.topic, exc)
            return Validation.REJECT

    def topics(self) -> list[str]:
        return sorted(self.router.subscriptions)

    def peers(self, topic: str | None = None) -> list[bytes]:
        if topic:
            return sorted(self.router.topics.get(topic, ()))
        return sorted(self.router.peers)

    def publish(self, topic: str, data: bytes) -> bytes:
        if not topic:
            raise ValueError("publish needs a topic")
        msg_id = self.router.publish(topic, data, trio.current_time())
        self._flush()
        return msg_id

    def subscribe(self, topic: str) -> Subscription:
        """``topic``'s messages from now on; :meth:`unsubscribe` it when done."""
        if not topic:
            raise ValueError("subscribe needs a topic")
        sub = Subscription(topic)
        self._subscribers.setdefault(topic, []).append(sub)
        self.router.subscribe(topic, trio.current_time())
        self._flush()
        return sub

    def unsubscribe(self, topic: str, channel: Subscription | None = None) -> None:
        subs = self._subscribers.get(topic, [])
        if channel is not None:
            self.subscriber_dropped += channel.dropped
            channel.close()
        self._subscribers[topic] = [s for s in subs if s is not channel]
        if not self._subscribers[topic]:
            del self._subscribers[topic]
            self.router.unsubscribe(topic, trio.current_time())
            self._flush()

    # -- moving RPCs ----------------------------------------------------------------------------
    def _flush(self) -> None:
        for peer, rpc in self.router.take_outgoing().items():
            writer = self._writers.get(peer)
            if writer is not None:
                writer.push(encode_rpc(rpc))
            elif peer in self._opening:  # our stream is being opened: keep a few
                pending = self._pending.setdefault(peer, [])
                if len(pending) < MAX_QUEUED:
                    pending.append(encode_rpc(rpc))
        for msg_id, msg in self.router.take_deliveries():
            for sub in self._subscribers.get(msg.topic, ()):
                if not sub.offer(msg_id, msg) and sub.dropped == 1:
                    log.info("pubsub: a slow subscriber of %r misses messages", msg.topic)
        if self.router.px_candidates:
            cands, self.router.px_candidates = self.router.px_candidates[:8], []
            for peer in cands:
                if self.host.knows_peer(peer):
                    self._nursery.start_soon(self._connect_px, peer)

    async def _connect_px(self, peer: bytes) -> None:
        try:
            await self.host.connect(peer, [], OPEN_TIMEOUT)
        except Exception as exc:
            log.debug("pubsub: PX peer %s unreachable: %s", peer.hex()[:16], exc)

    async def _heartbeat(self) -> None:
        await trio.sleep(self.router.p.heartbeat_initial_delay)
        while True:
            self.router.heartbeat(trio.current_time())
            self._flush()
            await trio.sleep(self.router.p.heartbeat_interval)

    # -- peers ------------------------------------------------------------------------------------
    async def _connections(self) -> None:
        async for kind, peer in self._events:
            if kind == "up":
                self._ensure_outbound(peer)
            else:
                if not self._connected(peer):
                    self._drop(peer)

    async def _sweep(self) -> None:
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            now = trio.current_time()
            connected = {p.peer_id for p in self.host.peers()}
            for peer in connected:
                if peer not in self._writers and self._not_pubsub.get(peer, 0) <= now:
                    self._ensure_outbound(peer)
            for peer in list(self.router.peers):
                if peer not in connected:
                    self._drop(peer)

    def _connected(self, peer: bytes) -> bool:
        return any(p.peer_id == peer for p in self.host.peers())

    def _ensure_outbound(self, peer: bytes) -> None:
        if peer == self.me or peer in self._writers or peer in self._opening \
                or self._nursery is None:
            return
        self._opening.add(peer)
        self._nursery.start_soon(self._open, peer)

    async def _open(self, peer: bytes) -> None:
        try:
            stream, proto, _addr = await self.host.open_stream(peer, list(self.protocols),
                                                               OPEN_TIMEOUT)
        except Exception as exc:
            log.debug("pubsub: %s speaks no pubsub: %s", peer.hex()[:16], exc)
            self._not_pubsub[peer] = trio.current_time() + RETRY_NON_PUBSUB
            self._pending.pop(peer, None)
            return
        finally:
            self._opening.discard(peer)
        ip = _ip_of(self.host.stream_remote_addr(stream))
        writer_lost = peer in self._reopen
        self._reopen.discard(peer)
        writer = _Writer(self, peer, stream, proto)
        self._writers[peer] = writer
        for frame in self._pending.pop(peer, []):
            writer.push(frame)
        if peer in self.router.peers:
            self.router.peers[peer].outbound = True
            if writer_lost:
                self.router.stream_reopened(peer, trio.current_time())
        else:
            self.router.add_peer(peer, proto, trio.current_time(), outbound=True, ip=ip)
        self._nursery.start_soon(writer.run)
        self._flush()

    def _writer_gone(self, writer: _Writer) -> None:
        if self._writers.get(writer.peer) is writer:
            del self._writers[writer.peer]
            if self._connected(writer.peer):
                # Its connection died but another is up (the peer came back on a new one
                # while the old was still open here): keep what the router knows of it,
                # its subscriptions came on the stream that is alive, and open ours again.
                self._reopen.add(writer.peer)
                self._ensure_outbound(writer.peer)
            else:
                self.router.remove_peer(writer.peer, trio.current_time())

    def _drop(self, peer: bytes) -> None:
        self._reopen.discard(peer)
        writer = self._writers.pop(peer, None)
        if writer is not None:
            writer.close()
        self.router.remove_peer(peer, trio.current_time())

    async def _inbound(self, stream) -> None:
        peer = self.host.stream_peer(stream)  # the Host port's, whatever the swarm under it
        if not peer:
            await reset_quietly(stream)
            return
        self._ensure_outbound(peer)
        decoder = PubsubFrameDecoder(memory=self.host.stream_memory(stream))
        try:
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    data = await read_some(stream)
                    decoder.receive_data(data)
                    if not data:
                        if decoder.next_frame() is None:
                            return
                    continue
                rpc = decode_rpc(frame)
                if peer not in self.router.peers:  # their stream came before ours
                    self.router.add_peer(peer, str(stream.get_protocol()), trio.current_time(),
                                         ip=_ip_of(self.host.stream_remote_addr(stream)))
                self.router.handle_rpc(peer, rpc, trio.current_time())
                self._flush()
        except PubsubWireError as exc:
            log.info("pubsub: malformed RPC from %s: %s", peer.hex()[:16], exc)
            self.router.score.add_penalty(peer)
            await reset_quietly(stream)
        except Exception as exc:  # a reset, or a partial RPC past the peer's memory share
            log.debug("pubsub stream from %s ended: %r", peer.hex()[:16], exc)
            await reset_quietly(stream)
        finally:
            decoder.close()

    def stats(self) -> dict:
        return {"peers": len(self.router.peers), "topics": self.topics(),
                **self.router.counters,
                "dropped_frames": sum(w.dropped for w in self._writers.values()),
                "subscriber_dropped": self.subscriber_dropped + sum(
                    s.dropped for subs in self._subscribers.values() for s in subs)}


class _Events:
    """The Host port's connection events, forwarded to the service's loop without blocking."""

    def __init__(self, send: trio.MemorySendChannel) -> None:
        self.send = send

    def _put(self, kind: str, peer: bytes) -> None:
        try:
            self.send.send_nowait((kind, peer))
        except (trio.WouldBlock, trio.BrokenResourceError):
            pass  # the sweep catches up

    def peer_connected(self, peer: bytes) -> None:
        self._put("up", peer)

    def peer_disconnected(self, peer: bytes) -> None:
        self._put("down", peer)


def _ip_of(addr: bytes) -> str | None:
    if not addr:
        return None
    try:
        import multiaddr

        ma = multiaddr.Multiaddr(addr)
        for proto in ("ip4", "ip6"):
            try:
                return ma.value_for_protocol(proto)
            except Exception:
                continue
    except Exception:
        return None
    return None



