"""Our mplex stream muxer (/mplex/6.7.0) on trio, in place of py-libp2p's.

mplex is the fallback for peers without Yamux. py-libp2p's implementation read an unsized
``read()`` as "until the peer closes" (every protocol here, and py-libp2p's own, read it as
"what has arrived") and took an empty MESSAGE frame, which js-libp2p sends, for the end of
the stream: a control-socket ping to an mplex-only js peer failed in most runs
(docs/decisions.md). This one shares the session machinery of our Yamux
(:mod:`p2pd.net.muxsession`) and its stream buffer (:class:`~p2pd.net.muxbuf.ReadBuffer`).

Behaviour (libp2p/specs mplex): we number the streams we open 0, 1, 2, ...; the peer numbers
its own, and the flag says whose stream a frame is about. mplex has no flow control, so, as
go-mplex does, while a stream holds more than ``max_buffer`` (4 MiB) unread bytes the
connection is not read (TCP slows the peer); a stream whose reader does not catch up within
``stall_timeout`` (10 s) is reset, so a peer can neither fill our memory nor stall the other
streams for long. Frames over 1 MiB, a bad varint, flag 7, or a NewStream for an id the peer
already has open end the connection. Inbound streams beyond the accept backlog are reset;
frames for streams we no longer know are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .mplex_wire import (
    CLOSE_INITIATOR,
    CLOSE_RECEIVER,
    MAX_STREAM_ID,
    MESSAGE_INITIATOR,
    MESSAGE_RECEIVER,
    NEW_STREAM,
    RESET_INITIATOR,
    RESET_RECEIVER,
    MplexDecoder,
    MplexWireError,
    frame,
)
from .muxerrors import MuxedConnUnavailable, MuxedStreamError
from .muxsession import MuxSession, MuxStream, ProtocolError
from .rcmgr import MemoryBudget, PeerMemory

log = logging.getLogger(__name__)

PROTOCOL_ID = "/mplex/6.7.0"
#: Unread bytes a stream may hold before it is reset (js-libp2p's maxReadBufferLength).
MAX_BUFFER = 4 * 1024 * 1024
#: Largest message we send (the spec allows 1 MiB; smaller keeps streams interleaved).
CHUNK = 64 * 1024
BACKLOG = 256
#: How long a stream over ``MAX_BUFFER`` may hold up the connection before it is reset.
STALL_TIMEOUT = 10.0


class MplexStream(MuxStream):
    def __init__(self, conn: MplexConnection, stream_id: int, is_initiator: bool) -> None:
        super().__init__(conn, stream_id, is_initiator)
        self._drained = trio.Event()
        self._held = 0  # buffered bytes counted in the connection's memory budget
        # Flags for frames we send about this stream.
        if is_initiator:
            self._msg, self._close = MESSAGE_INITIATOR, CLOSE_INITIATOR
            self._reset = RESET_INITIATOR
        else:
            self._msg, self._close = MESSAGE_RECEIVER, CLOSE_RECEIVER
            self._reset = RESET_RECEIVER

    @property
    def key(self) -> tuple[int, bool]:
        return self.stream_id, self.is_initiator  # each side numbers its own streams

    def _fin_frame(self) -> bytes:
        return frame(self.stream_id, self._close)

    def _rst_frame(self) -> bytes:
        return frame(self.stream_id, self._reset)

    def _wake(self) -> None:
        self._readable.set()
        self._drained.set()

    def _on_data(self, data: bytes) -> None:
        if self.recv_closed or self.reset_received:
            return
        self._buffer.append(data)
        self._readable.set()
        conn = self.muxed_conn
        memory = conn.memory
        if memory is not None:
            memory.force(len(data))
            self._held += len(data)
        if self._buffer.size > conn.max_buffer or (memory is not None and memory.over):
            conn._full.add(self)

    async def _after_read(self, n: int) -> None:
        if self._held:
            n = min(n, self._held)
            self._held -= n
            self.muxed_conn.memory.release(n)
        self._drained.set()

    def _release(self) -> None:
        if self._held:
            self.muxed_conn.memory.release(self._held)
            self._held = 0

    async def write(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        async with self._write_lock:
            for start in range(0, len(view), CHUNK):
                self._check_writable()
                await self._send_data(
                    frame(self.stream_id, self._msg, bytes(view[start:start + CHUNK])))


class MplexConnection(MuxSession):
    """An mplex session over a secure channel (p2pd.net.channel.SecureChannel)."""

    def __init__(self, secured_conn: Any, peer_id: Any, is_initiator: bool | None = None,
                 on_close: Any = None, *, max_buffer: int = MAX_BUFFER,
                 backlog: int = BACKLOG, stall_timeout: float = STALL_TIMEOUT,
                 memory: MemoryBudget | PeerMemory | None = None) -> None:
        super().__init__(secured_conn, peer_id, is_initiator, on_close, backlog)
        #: the muxer memory budget (the node's, or the peer's share of it): unread bytes
        #: count in it; over it, the connection is not read until its streams' readers
        #: catch up (backpressure)
        self.memory = memory
        self.max_buffer = max_buffer
        self.stall_timeout = stall_timeout
        self._next_id = 0
        self._decoder = MplexDecoder()
        self._closing = False
        self._full: set[MplexStream] = set()  # streams over max_buffer since the last read

    async def open_stream(self) -> MplexStream:
        if self._dead or self._closing:
            raise MuxedStreamError("connection is closing")
        sid = self._next_id
        if sid > MAX_STREAM_ID:
            raise MuxedStreamError("stream ids exhausted on this connection")
        self._next_id = sid + 1
        stream = MplexStream(self, sid, True)
        self.streams[stream.key] = stream
        try:
            await self._send(frame(sid, NEW_STREAM, str(sid).encode()))
        except MuxedConnUnavailable as exc:
            self.streams.pop(stream.key, None)
            raise MuxedStreamError(f"could not open a stream: {exc}") from None
        return stream

    async def close(self) -> None:
        self._closing = True  # mplex has no GO_AWAY: the socket just closes
        await self._teardown()

    # -- MuxSession hooks ----------------------------------------------------------------
    def _feed(self, data: bytes) -> list:
        try:
            return self._decoder.feed(data)
        except MplexWireError as exc:
            raise ProtocolError(str(exc)) from None

    async def _after_dispatch(self) -> None:
        """Backpressure: mplex has no windows, so while a stream holds more than
        ``max_buffer`` unread bytes we stop reading the connection (TCP then slows the
        peer down), as go-mplex does; a stream whose reader does not catch up within
        ``stall_timeout`` is reset so the connection's other streams go on."""
        while self._full:
            stream = self._full.pop()
            with trio.move_on_after(self.stall_timeout) as scope:
                while not stream.reset_received and (
                        stream._buffer.size > self.max_buffer
                        or (self.memory is not None and self.memory.over
                            and stream._buffer.size)):
                    stream._drained = trio.Event()
                    await stream._drained.wait()
            if scope.cancelled_caught:
                log.info("%s: mplex stream %d left %d bytes unread for %g s; resetting it",
                         self.peer_id, stream.stream_id, stream._buffer.size, self.stall_timeout)
                await stream.reset()

    def _dispatch(self, sid: int, flag: int, payload: bytes) -> None:
        if flag == NEW_STREAM:
            self._inbound(sid)
            return
        # Odd flags come from the receiving side of a stream: one we opened.
        stream = self.streams.get((sid, bool(flag & 1)))
        if stream is None:
            return  # a stream already closed or reset: ignored
        if flag in (MESSAGE_INITIATOR, MESSAGE_RECEIVER):
            stream._on_data(payload)
        elif flag in (CLOSE_INITIATOR, CLOSE_RECEIVER):
            stream._on_fin()
        else:
            stream._on_reset()

    def _inbound(self, sid: int) -> None:
        if (sid, False) in self.streams:
            raise ProtocolError(f"NewStream for stream {sid}, which the peer has open")
        stream = MplexStream(self, sid, False)
        if self._closing or self._dead or not self._backlog(stream):
            self._send_soon(frame(sid, RESET_RECEIVER))
            return
        self.streams[stream.key] = stream
