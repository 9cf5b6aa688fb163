"""Our Yamux stream muxer (/yamux/1.0.0) on trio, in place of py-libp2p's.

Why (docs/decisions.md, "Own Yamux muxer and Noise transport channel"): py-libp2p's muxer read every
frame with two exact reads through its Noise session, copied each payload through a growing
buffer, credited the window per 64 KiB, slept 100 ms on close and dropped buffered data in
``read(n)`` on a closed stream. This one reads whatever the secure channel has decrypted,
cuts it into frames with :class:`~p2pd.net.yamux_wire.YamuxDecoder` (sans-IO) and hands
payloads to streams without further copies.

Behaviour (hashicorp yamux spec.md, as go-yamux and js-libp2p's yamux do it):

* Stream ids: the dialer opens odd ids, the listener even ones; a SYN with the wrong parity,
  id 0 or an id in use is a protocol error (GO_AWAY 1, connection closed).
* Flow control: every stream starts with a 256 KiB window each way. A reader credits what
  it consumed once that reaches half its window; the window doubles, up to ``max_window``
  (16 MiB as in go-yamux), when the sender had nearly used it up by then (it was waiting on
  us) or when half a window took less than four round trips (go-yamux's rule; the RTT comes
  from a PING at start and every 30 s). A peer sending beyond the window it was granted is
  a protocol error. Writers block (without polling) until the peer credits them.
* Inbound streams wait in a backlog of ``backlog`` (256) for the host to accept them;
  beyond that, and after we sent GO_AWAY, new streams are reset.
* PING with SYN is answered with ACK; ``ping()`` measures a round trip. We PING at start and
  every 30 s; a PING unanswered for 30 s closes the connection (keepalive).
* FIN half-closes, RST resets a stream; reads after a FIN return what is buffered, then
  :class:`MuxedStreamEOF`; a reset raises :class:`MuxedStreamReset`.
* Closing the connection sends GO_AWAY (normal) and closes the secure channel at once.

The classes keep py-libp2p's ``IMuxedConn``/``IMuxedStream`` method names; our swarm, identify,
ping and everything above use them unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .muxerrors import MuxedConnUnavailable, MuxedStreamError
from .muxsession import MuxSession, MuxStream, ProtocolError
from .rcmgr import MemoryBudget, PeerMemory
from .yamux_wire import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YamuxDecoder,
    YamuxWireError,
    header,
    pack_header,
)

log = logging.getLogger(__name__)

PROTOCOL_ID = "/yamux/1.0.0"
#: Largest receive window a stream grows to (go-yamux's default maximum).
MAX_WINDOW = 16 * 1024 * 1024
#: Largest DATA payload we send in one frame (go-yamux and js-libp2p use 64 KiB too).
MAX_FRAME = 64 * 1024
#: Most bytes one ``write`` hands to the secure channel at once.
WRITE_BATCH = 1024 * 1024
#: Inbound streams waiting to be accepted.
BACKLOG = 256
#: Seconds between RTT measurements and keepalive PINGs (and how long one may go unanswered).
RTT_INTERVAL = 30.0
#: How long closing waits to get its GO_AWAY out before closing the socket anyway.
GO_AWAY_TIMEOUT = 1.0


class YamuxStream(MuxStream):
    """One Yamux stream: its received payloads and two flow-control windows."""

    def __init__(self, conn: YamuxConnection, stream_id: int, is_initiator: bool) -> None:
        super().__init__(conn, stream_id, is_initiator)
        self._recv_window = INITIAL_WINDOW  # what the peer may still send
        self._window_size = INITIAL_WINDOW  # the window we grant, grows with use
        self._consumed = 0  # read since the last credit
        self._last_credit = trio.current_time()
        self._send_window = INITIAL_WINDOW
        self._writable = trio.Event()
        self._reserved = 0  # bytes of the connection's memory budget this window holds
        #: SYN (a stream we opened) or ACK (one we accepted) not sent yet: it goes with the
        #: stream's first frame, as go-yamux does, so a request is one write (SYN with the
        #: data, FIN) and its answer another (ACK with the data, FIN); a reader about to
        #: wait sends it at once
        self._flags = 0

    def _take_flags(self) -> int:
        flags, self._flags = self._flags, 0
        return flags

    async def _before_wait(self) -> None:
        if self._flags and not self.reset_received:
            try:
                await self.muxed_conn._send(
                    header(TYPE_WINDOW_UPDATE, self._take_flags(), self.stream_id, 0))
            except MuxedConnUnavailable:
                pass

    def _release(self) -> None:
        if self._reserved:
            self.muxed_conn.memory.release(self._reserved)
            self._reserved = 0

    def _fin_frame(self) -> bytes:
        return header(TYPE_WINDOW_UPDATE, FLAG_FIN | self._take_flags(), self.stream_id, 0)

    def _rst_frame(self) -> bytes:
        if self._take_flags() & FLAG_SYN:  # never opened on the wire
            return b""
        return header(TYPE_WINDOW_UPDATE, FLAG_RST, self.stream_id, 0)

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    # -- called by the connection's reader (synchronous) ---------------------------------
    def _on_data(self, payload: bytes) -> None:
        n = len(payload)
        if n > self._recv_window:
            raise ProtocolError(
                f"stream {self.stream_id}: {n} bytes against a window of {self._recv_window}")
        self._recv_window -= n
        if self.recv_closed or self.reset_received:
            return  # late data for a stream we no longer read; its window is still honoured
        self._buffer.append(payload)
        self._readable.set()

    def _on_window(self, delta: int) -> None:
        if delta:
            self._send_window += delta
            self._writable.set()

    # -- reading -------------------------------------------------------------------------
    async def _after_read(self, n: int) -> None:
        self._consumed += n
        if self._consumed >= self._window_size >> 1:
            await self._credit()

    async def _credit(self) -> None:
        """Give the peer back the window our reader consumed (and grow it if it waited)."""
        if self.recv_closed or self.reset_received:
            return
        delta = self._consumed
        conn = self.muxed_conn
        now = trio.current_time()
        since, self._last_credit = now - self._last_credit, now
        # Grow the window when it limits the stream: the sender had (nearly) used it up
        # before we credited it (it was waiting on us), or half a window went by in less
        # than four round trips (go-yamux's rule: window / RTT is the most a stream moves).
        if self._window_size < conn.max_window and (
                self._recv_window < self._window_size >> 2 or since < 4 * conn.rtt):
            grown = min(self._window_size * 2, conn.max_window)
            more = grown - self._window_size
            if conn.memory is None or conn.memory.reserve(more, growth=True):
                if conn.memory is not None:
                    self._reserved += more
                delta += more
                self._window_size = grown
        self._consumed = 0
        self._recv_window += delta
        try:
            await self.muxed_conn._send(
                header(TYPE_WINDOW_UPDATE, self._take_flags(), self.stream_id, delta))
        except MuxedConnUnavailable:
            pass

    # -- writing -------------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        await self._write(data, False)

    async def write_and_close(self, data: bytes) -> None:
        """The data and our FIN in one write to the connection."""
        await self._write(data, True)
        if self.recv_closed:
            self.muxed_conn._forget(self)

    async def _write(self, data: bytes, fin: bool) -> None:
        self._check_writable()
        view = memoryview(data).cast("B")
        total = len(view)
        sent = 0
        async with self._write_lock:
            if fin and not total:
                self._check_writable()
                self.send_closed = True
                try:
                    await self.muxed_conn._send(self._fin_frame())
                except MuxedConnUnavailable:
                    pass
                return
            while sent < total:
                self._check_writable()
                while self._send_window <= 0:
                    self._writable = trio.Event()
                    await self._writable.wait()
                    self._check_writable()
                n = min(self._send_window, total - sent, WRITE_BATCH)
                self._send_window -= n
                parts = []
                end = sent + n
                flags = self._take_flags()
                for start in range(sent, end, MAX_FRAME):
                    stop = min(start + MAX_FRAME, end)
                    parts.append(pack_header(0, TYPE_DATA, flags, self.stream_id, stop - start))
                    parts.append(view[start:stop])
                    flags = 0
                if fin and end == total:
                    # a FIN frame of its own, in the same write: js-libp2p's yamux handles a
                    # frame's FIN before its data, so data sent with FIN would be lost there
                    self.send_closed = True
                    parts.append(self._fin_frame())
                await self._send_data(b"".join(parts))
                sent = end


class YamuxConnection(MuxSession):
    """A Yamux session over a secure channel (p2pd.net.channel.SecureChannel)."""

    def __init__(self, secured_conn: Any, peer_id: Any, is_initiator: bool | None = None,
                 on_close: Any = None, *, max_window: int = MAX_WINDOW,
                 backlog: int = BACKLOG, keepalive: float = RTT_INTERVAL,
                 memory: MemoryBudget | PeerMemory | None = None) -> None:
        super().__init__(secured_conn, peer_id, is_initiator, on_close, backlog)
        #: the muxer memory budget (the node's, or the peer's share of it): every window
        #: we grant is reserved from it first
        self.memory = memory
        self.max_window = max(max_window, INITIAL_WINDOW)
        self.keepalive = keepalive
        self._next_id = 1 if self._initiator else 2
        self._decoder = YamuxDecoder(self.max_window)
        self._pings: dict[int, trio.Event] = {}
        self._ping_id = 0
        #: Smoothed round-trip time from our PINGs (0 until measured).
        self.rtt = 0.0
        self._going_away = False  # we sent GO_AWAY
        self.remote_going_away = False

    async def open_stream(self) -> YamuxStream:
        if self._dead or self._going_away:
            raise MuxedStreamError("connection is closing")
        if self.remote_going_away:
            raise MuxedStreamError("the peer sent GO_AWAY: no new streams")
        sid = self._next_id
        if sid > 0xFFFFFFFF:
            raise MuxedStreamError("stream ids exhausted on this connection")
        if self.memory is not None and not self.memory.reserve(INITIAL_WINDOW):
            raise MuxedStreamError(f"resource limit memory: {self.memory.describe()}")
        self._next_id = sid + 2
        stream = YamuxStream(self, sid, True)
        stream._reserved = INITIAL_WINDOW if self.memory is not None else 0
        stream._flags = FLAG_SYN  # with the stream's first frame
        self.streams[sid] = stream
        await trio.lowlevel.checkpoint()
        return stream

    async def close(self, error_code: int = GO_AWAY_NORMAL) -> None:
        if not self._dead and not self._going_away:
            self._going_away = True
            self.event_shutting_down.set()
            with trio.move_on_after(GO_AWAY_TIMEOUT):
                try:
                    await self._send(header(TYPE_GO_AWAY, 0, 0, error_code))
                except MuxedConnUnavailable:
                    pass
        await self._teardown()

    async def ping(self, timeout: float = 10.0) -> float:
        """Round-trip time of one Yamux PING, in seconds."""
        self._ping_id = (self._ping_id + 1) & 0xFFFFFFFF
        opaque = self._ping_id
        done = self._pings[opaque] = trio.Event()
        start = trio.current_time()
        try:
            await self._send(header(TYPE_PING, FLAG_SYN, 0, opaque))
            with trio.fail_after(timeout):
                await done.wait()
        finally:
            self._pings.pop(opaque, None)
        if self._dead:
            raise MuxedConnUnavailable(self._close_reason)
        return trio.current_time() - start

    # -- MuxSession hooks ----------------------------------------------------------------
    def _background(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._measure_rtt)

    def _feed(self, data: bytes) -> list:
        try:
            return self._decoder.feed(data)
        except YamuxWireError as exc:
            raise ProtocolError(str(exc)) from None

    async def _on_protocol_error(self) -> None:
        with trio.move_on_after(GO_AWAY_TIMEOUT):
            try:
                await self._send(header(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR))
            except MuxedConnUnavailable:
                pass

    async def _teardown(self) -> None:
        for done in self._pings.values():
            done.set()
        await super()._teardown()

    async def _measure_rtt(self) -> None:
        """PING now and every ``keepalive`` s: the RTT steers window growth, and a peer
        that leaves a PING unanswered for ``keepalive`` s is gone (keepalive, as go-yamux
        and js-libp2p's yamux do it): the connection is closed."""
        while not self._dead:
            try:
                sample = await self.ping(timeout=self.keepalive)
            except MuxedConnUnavailable:
                return
            except trio.TooSlowError:
                self._close_reason = f"no answer to a keepalive PING within {self.keepalive:g} s"
                log.info("%s: %s", self.peer_id, self._close_reason)
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                return
            self.rtt = sample if not self.rtt else 0.875 * self.rtt + 0.125 * sample
            await trio.sleep(self.keepalive)

    def _dispatch(self, typ: int, flags: int, sid: int, value: int, payload: bytes | None) -> None:
        if typ == TYPE_DATA or typ == TYPE_WINDOW_UPDATE:
            if flags & FLAG_SYN:
                stream = self._inbound(sid)
                if stream is None:
                    return
            else:
                stream = self.streams.get(sid)
                if stream is None:
                    return  # late frames for a stream already closed or reset: ignored
            if typ == TYPE_DATA:
                if value:
                    stream._on_data(payload)
            else:
                stream._on_window(value)
            if flags & FLAG_RST:
                stream._on_reset()
            elif flags & FLAG_FIN:
                stream._on_fin()
        elif typ == TYPE_PING:
            if flags & FLAG_SYN:
                self._send_soon(header(TYPE_PING, FLAG_ACK, 0, value))
            elif flags & FLAG_ACK:
                done = self._pings.get(value)
                if done is not None:
                    done.set()
        elif typ == TYPE_GO_AWAY:
            self.remote_going_away = True
            if value != GO_AWAY_NORMAL:
                log.info("%s sent GO_AWAY with error %d", self.peer_id, value)

    def _inbound(self, sid: int) -> YamuxStream | None:
        if sid == 0 or (sid & 1) == (self._next_id & 1):
            raise ProtocolError(f"SYN for stream {sid}, which is ours to open")
        if sid in self.streams:
            raise ProtocolError(f"SYN for stream {sid}, which is already open")
        if self._going_away or self._dead:
            self._send_soon(header(TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            return None
        if self.memory is not None and not self.memory.reserve(INITIAL_WINDOW):
            log.debug("%s: stream %d reset: resource limit memory (%s)",
                      self.peer_id, sid, self.memory.describe())
            self._send_soon(header(TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            return None
        stream = YamuxStream(self, sid, False)
        stream._reserved = INITIAL_WINDOW if self.memory is not None else 0
        if not self._backlog(stream):
            stream._release()
            self._send_soon(header(TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            return None
        self.streams[sid] = stream
        stream._flags = FLAG_ACK  # with the stream's first frame, or when our reader waits
        return stream


__all__ = ["PROTOCOL_ID", "YamuxConnection", "YamuxStream"]
