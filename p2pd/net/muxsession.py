"""What our two stream muxers (Yamux, mplex) share.

:class:`MuxSession`: one trio task reading the secure channel and dispatching frames,
serialized whole-frame writes, the accept backlog and an orderly end. A subclass supplies
the frame decoder (``_feed``), the dispatch (``_dispatch``), what it says on a protocol
error (``_on_protocol_error``) and its streams.

:class:`MuxStream`: a stream's buffer, half-close and reset states, reads, FIN and RST. A
subclass supplies its FIN and RST frames, its writes and what a read gives back to the peer
(``_after_read``: Yamux window credit, mplex backpressure).

They keep the method names of py-libp2p's ``IMuxedConn``/``IMuxedStream``; our swarm
(p2pd/net/swarm.py) runs them over its secure channel.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import trio

from .muxbuf import ReadBuffer
from .muxerrors import (
    MuxedConnUnavailable,
    MuxedStreamClosed,
    MuxedStreamEOF,
    MuxedStreamReset,
)
from .writelock import WriteLock

log = logging.getLogger(__name__)

#: How long one write to the secure channel may take before the connection is given up.
WRITE_TIMEOUT = 30.0


class ProtocolError(Exception):
    """The peer broke the muxer's rules; the connection ends."""


class MuxStream:
    """One stream of a :class:`MuxSession`."""

    def __init__(self, conn: MuxSession, stream_id: int, is_initiator: bool) -> None:
        self.muxed_conn = conn
        self.stream_id = stream_id
        self.is_initiator = is_initiator
        self._buffer = ReadBuffer()
        self._readable = trio.Event()
        self._write_lock = WriteLock()
        self.recv_closed = False  # the peer closed its side
        self.send_closed = False  # we closed ours
        self.reset_received = False  # reset by either side, or the connection died
        self._reset_reason = "stream was reset"
        #: called once when the stream is gone (the swarm gives back its reservation)
        self.on_done: Any = None
        #: callbacks for :meth:`on_remote_end`, run once by the connection's reader
        self._end_watchers: list | None = None

    # -- subclass hooks ------------------------------------------------------------------
    def _fin_frame(self) -> bytes:
        raise NotImplementedError

    def _rst_frame(self) -> bytes:
        raise NotImplementedError

    async def _after_read(self, n: int) -> None:
        """``n`` bytes were read from the buffer."""

    async def _before_wait(self) -> None:
        """A reader is about to wait for the peer (Yamux: a SYN or ACK not yet sent goes
        out now, so no peer waits on a frame we hold back for our first write)."""

    def _release(self) -> None:
        """The stream is gone: give back what it reserved from the memory budget."""

    def _wake(self) -> None:
        """Wake everything waiting on the stream (a reset)."""
        self._readable.set()

    # -- state ---------------------------------------------------------------------------
    @property
    def key(self):
        """The stream's key in ``MuxSession.streams``."""
        return self.stream_id

    @property
    def closed(self) -> bool:
        return self.reset_received or (self.recv_closed and self.send_closed)

    def has_data(self) -> bool:
        """A read would return at once (data, the peer's close, or a reset)."""
        return bool(self._buffer.size) or self.recv_closed or self.reset_received

    def _check_writable(self) -> None:
        if self.reset_received:
            raise MuxedStreamReset(self._reset_reason)
        if self.send_closed:
            raise MuxedStreamClosed("stream is closed for writing")

    def on_remote_end(self, callback: Any) -> None:
        """Call ``callback()`` once the peer closes its side or the stream is reset (or
        its connection ends); at once if that has happened. Unlike a read it neither
        takes data nor sends what a waiting reader would (Yamux's deferred SYN/ACK, a
        held multistream echo), so a handler can watch for its caller going away while
        its answer still carries those. The callback runs in the connection's reader:
        it must not block."""
        if self.recv_closed or self.reset_received:
            callback()
            return
        if self._end_watchers is None:
            self._end_watchers = []
        self._end_watchers.append(callback)

    def _ended(self) -> None:
        watchers, self._end_watchers = self._end_watchers, None
        for callback in watchers or ():
            callback()

    # -- from the connection's reader (synchronous) --------------------------------------
    def _on_fin(self) -> None:
        self.recv_closed = True
        self._readable.set()
        if self.send_closed:
            self.muxed_conn._forget(self)
        self._ended()

    def _on_reset(self, reason: str = "stream was reset by the peer", *,
                  keep: bool = False) -> None:
        """Reset: writes fail from now on; reads too, once ``keep``-ed data is read.

        A RST discards what is buffered (the peer aborted the stream). When the connection
        ends instead (``keep``), what already arrived stays readable: a peer may send its
        answer, close its side and the connection at once.
        """
        if not self.reset_received:
            self.reset_received = True
            self._reset_reason = reason
        if not keep:
            self._buffer.clear()
        self._wake()
        self.muxed_conn._forget(self)
        self._ended()

    # -- IMuxedStream --------------------------------------------------------------------
    async def read(self, n: int | None = -1) -> bytes:
        """What has arrived (at most ``n`` bytes), waiting for the first; after the peer
        closed its side, :class:`MuxedStreamEOF`; after a reset, :class:`MuxedStreamReset`."""
        if n == 0:
            return b""
        while not self._buffer.size:
            if self.recv_closed:
                raise MuxedStreamEOF("stream closed by the peer")
            if self.reset_received:
                raise MuxedStreamReset(self._reset_reason)
            await self._before_wait()
            if self._buffer.size or self.recv_closed or self.reset_received:
                continue
            self._readable = trio.Event()
            await self._readable.wait()
        data = self._buffer.take(n)
        await self._after_read(len(data))
        return data

    async def close(self) -> None:
        """Half-close: our close after everything written so far; reading goes on."""
        if self.send_closed or self.reset_received:
            return
        async with self._write_lock:
            if self.send_closed or self.reset_received:
                return
            self.send_closed = True
            try:
                await self.muxed_conn._send(self._fin_frame())
            except MuxedConnUnavailable:
                pass
        if self.recv_closed:
            self.muxed_conn._forget(self)

    async def write_and_close(self, data: bytes) -> None:
        """``write(data)`` then ``close()`` (a muxer that can: in the same frame)."""
        await self.write(data)
        await self.close()

    async def reset(self) -> None:
        if self.reset_received or (self.send_closed and self.recv_closed):
            return
        self._on_reset("stream was reset locally")
        frame = self._rst_frame()
        if not frame:  # the peer never heard of the stream: nothing to tell it
            return
        try:
            await self.muxed_conn._send(frame)
        except MuxedConnUnavailable:
            pass

    async def _send_data(self, data: bytes) -> None:
        """Send frames of this stream's data; a dead connection resets the stream."""
        try:
            await self.muxed_conn._send(data)
        except MuxedConnUnavailable as exc:
            self._on_reset(f"connection closed: {exc}", keep=True)
            raise MuxedStreamReset(self._reset_reason) from None

    def set_deadline(self, ttl: int) -> None:
        raise NotImplementedError("muxed streams have no deadlines; use trio cancel scopes")

    def get_remote_address(self) -> tuple[str, int] | None:
        return self.muxed_conn.get_remote_address()

    async def __aenter__(self) -> MuxStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class MuxSession:
    def __init__(self, secured_conn: Any, peer_id: Any, is_initiator: bool | None,
                 on_close: Any, backlog: int) -> None:
        self.secured_conn = secured_conn
        self.peer_id = peer_id
        self.on_close = on_close
        self._initiator = secured_conn.is_initiator if is_initiator is None else is_initiator
        self.streams: dict = {}
        self._accept_send, self._accept_recv = trio.open_memory_channel[Any](backlog)
        #: frames waiting for the writer, and the event set once the batch holding them is
        #: on the wire (or the connection failed): concurrent writers share one write
        self._queue: list[bytes] = []
        self._batch_done = trio.Event()
        self._writing = False
        self._nursery: trio.Nursery | None = None
        self._dead = False
        self._write_failed = False
        self._close_reason = "connection closed"
        self.event_started = trio.Event()
        self.event_shutting_down = trio.Event()
        self.event_closed = trio.Event()

    # -- subclass hooks ------------------------------------------------------------------
    def _feed(self, data: bytes) -> list:
        raise NotImplementedError

    def _dispatch(self, *frame: Any) -> None:
        raise NotImplementedError

    async def _on_protocol_error(self) -> None:
        """Tell the peer, if the muxer has a way (Yamux: GO_AWAY)."""

    def _background(self, nursery: trio.Nursery) -> None:
        """Start tasks that live as long as the connection."""

    async def _after_dispatch(self) -> None:
        """Runs after each read's frames were dispatched (mplex: backpressure)."""

    # -- IMuxedConn ----------------------------------------------------------------------
    @property
    def is_initiator(self) -> bool:
        return self._initiator

    @property
    def is_established(self) -> bool:
        return self.event_started.is_set() and not self._dead

    @property
    def is_closed(self) -> bool:
        return self.event_closed.is_set()

    def get_transport_addresses(self) -> list:
        return self.secured_conn.get_transport_addresses()

    def get_connection_type(self) -> Any:
        return self.secured_conn.get_connection_type()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self.secured_conn.get_remote_address()

    async def start(self) -> None:
        """Run the connection: read and dispatch frames until it ends."""
        if self.event_started.is_set():
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.event_started.set()
                self._background(nursery)
                await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._teardown()

    async def accept_stream(self):
        try:
            return await self._accept_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MuxedConnUnavailable(self._close_reason) from None

    # -- shared machinery ----------------------------------------------------------------
    def _backlog(self, stream: Any) -> bool:
        """Queue an inbound stream for ``accept_stream``; False if the backlog is full."""
        try:
            self._accept_send.send_nowait(stream)
        except trio.WouldBlock:
            log.info("%s: inbound stream backlog full, resetting stream %d",
                     self.peer_id, stream.stream_id)
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def _send(self, data: bytes) -> None:
        """Write one frame. Frames that callers hand over while a write is on the socket
        go out together in the next write (one secure-channel message and one system call
        for many streams); each caller returns once its frame is written."""
        if self._dead or self._write_failed:
            raise MuxedConnUnavailable(self._close_reason)
        self._queue.append(data)
        if self._writing:
            batch = self._batch_done
            # whole frames only: the frame is queued and goes out even if this caller is
            # cancelled, so waiting is shielded too (bounded by the writer's deadline)
            with trio.CancelScope(shield=True):
                await batch.wait()
            if self._write_failed:
                raise MuxedConnUnavailable(self._close_reason)
            return
        self._writing = True
        try:
            while self._queue:
                frames, self._queue = self._queue, []
                done, self._batch_done = self._batch_done, trio.Event()
                try:
                    await self._write_whole(frames[0] if len(frames) == 1
                                            else b"".join(frames))
                finally:
                    done.set()
        finally:
            self._writing = False
            self._batch_done.set()  # nobody is left waiting on a batch that never goes
            self._batch_done = trio.Event()

    async def _write_whole(self, data: bytes) -> None:
        try:
            # A frame is written whole or the connection is given up: a caller's
            # cancellation must not leave half a frame (or half a Noise message) on
            # the wire, which would break every other stream of the connection.
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + WRITE_TIMEOUT
                await self.secured_conn.write(data)
            if scope.cancelled_caught:
                raise TimeoutError(f"peer did not take a frame within {WRITE_TIMEOUT:g} s")
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._write_failed = True
            self._close_reason = f"write failed: {exc!r}"
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            raise MuxedConnUnavailable(self._close_reason) from exc

    def _send_soon(self, data: bytes) -> None:
        """Send a control frame from the reader without blocking it on the socket."""
        if self._nursery is not None and not self._dead:
            self._nursery.start_soon(self._send_quietly, data)

    async def _send_quietly(self, data: bytes) -> None:
        try:
            await self._send(data)
        except MuxedConnUnavailable:
            pass

    def _forget(self, stream: Any) -> None:
        if self.streams.get(stream.key) is stream:
            del self.streams[stream.key]
            stream._release()
            done = getattr(stream, "on_done", None)
            if done is not None:
                stream.on_done = None
                done()

    async def _read_loop(self) -> None:
        read = self.secured_conn.read
        feed = self._feed
        dispatch = self._dispatch
        while True:
            try:
                data = await read()
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except Exception as exc:
                self._close_reason = f"connection lost: {exc!r}"
                return
            if not data:
                self._close_reason = "connection closed by the peer"
                return
            try:
                for frame in feed(data):
                    dispatch(*frame)
                await self._after_dispatch()
            except ProtocolError as exc:
                self._close_reason = f"protocol error from the peer: {exc}"
                log.info("%s: %s", self.peer_id, self._close_reason)
                await self._on_protocol_error()
                return

    async def _teardown(self) -> None:
        if self._dead:
            await self.event_closed.wait()
            return
        self._dead = True
        self.event_shutting_down.set()
        self._accept_send.close()
        for stream in list(self.streams.values()):
            stream._on_reset(self._close_reason, keep=True)
        self.streams.clear()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        try:
            await self.secured_conn.close()
        except Exception:
            pass
        self.event_closed.set()
        on_close = self.on_close
        if on_close is not None:
            try:
                result = on_close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.debug("on_close hook failed", exc_info=True)
