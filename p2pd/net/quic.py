"""The QUIC v1 transport on trio: UDP sockets, timers, and QUIC streams as libp2p streams.

The protocol is aioquic's sans-IO QuicConnection with our changes (:mod:`p2pd.net.quic_core`);
this module is the edge around it.

- :class:`QuicSocket`: one UDP socket per listen address (and one per address family for
  dialing when nothing listens there). It reads datagrams in batches, hands each to its
  connection through the :class:`~p2pd.net.quic_core.DatagramRouter`, then lets every
  connection that got input process its events and send once. Dials leave from the listen
  socket, so a peer (or a hole punch) sees the port we listen on.
- :class:`QuicSession`: one connection, in the shape our swarm expects of a muxed session
  (``start``, ``open_stream``, ``accept_stream``, ``streams``, ``close``, ``on_close``).
  A driver task sends what aioquic has to send and runs its timers (loss recovery, the
  idle timeout, and a PING every ``keepalive`` seconds so an idle connection stays up).
  An inbound connection holds the resource manager's reservation the socket's router took
  for its first Initial (a pending-handshake slot, per-IP and rate limits) until the swarm
  adopts it after the handshake, or gives it back when the handshake fails or times out.
  The libp2p handshake check runs when aioquic reports the TLS handshake done: the peer's
  certificate (mutual TLS, ALPN ``libp2p``) gives its peer id; a dial that finds another
  peer id than the dialed one, or a certificate without a valid libp2p extension, closes
  the connection with CRYPTO_ERROR bad_certificate and a reason.
- :class:`QuicMuxStream`: a bidirectional QUIC stream; multistream-select runs on it as on
  a Yamux stream (no muxer over QUIC). Writes wait while more than ``SEND_BUFFER`` bytes
  of the stream are unacknowledged; reads give the peer credit for what was read. What
  arrived and is not read yet counts in the peer's share of the muxer memory budget (as
  mplex counts it); a stream whose data would pass that share is reset (stop sending and
  reset), and its bytes are given back, so one peer cannot make us hold unread data
  beyond its share over any number of QUIC streams and connections.
- :class:`QuicTransport`: plugs into :class:`~p2pd.net.swarm.Swarm` (``handles``, ``dial``,
  ``listens``, ``listen``); connections are ``transport="quic"``, ``security="/tls/1.0.0"``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import socket
import struct
import sys
from collections.abc import Callable, Sequence

import trio
from aioquic.quic import events

from .muxbuf import ReadBuffer
from .muxerrors import (
    MuxedConnUnavailable,
    MuxedStreamClosed,
    MuxedStreamEOF,
    MuxedStreamReset,
)
from .quic_core import (
    APP_CLOSE,
    BAD_CERTIFICATE,
    DatagramRouter,
    Libp2pQuicConnection,
    QuicSettings,
    QuicTransportError,
    check_peer_certificate,
    gso_batches,
    make_configuration,
    quic_multiaddr,
    quic_target,
)
from .tlscert import TlsCertError

log = logging.getLogger(__name__)

#: unacknowledged bytes per stream before a write waits
SEND_BUFFER = 1 << 20
#: datagrams read from the socket before the connections that got them answer
RECV_BATCH = 128
MAX_DATAGRAM = 65535
SOCKET_BUFFER = 4 << 20
#: datagrams queued while the kernel's send buffer is full; more are dropped (QUIC resends)
MAX_SEND_QUEUE = 4096
SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104  # linux/udp.h
GRO_BUFFER = 65535
TRANSPORT = "quic"
SECURITY = "/tls/1.0.0"  # the libp2p TLS handshake, inside QUIC
MUXER = "/quic"


def _punch_packet() -> bytes:
    """Random bytes shaped as a long-header packet of a reserved (greased) version and
    shorter than an Initial: every QUIC stack drops it without an answer. Entirely random
    bytes would often look like a short-header packet for an unknown connection, which
    ours (and quic-go) answer with a stateless reset."""
    junk = bytearray(os.urandom(random.randint(64, 256)))
    junk[0] |= 0xC0
    junk[1:5] = b"\x1a\x2a\x3a\x4a"
    return bytes(junk)


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def _sockaddr_key(addr) -> tuple:
    return (addr[0], addr[1])


# -- streams -------------------------------------------------------------------------------


class QuicMuxStream:
    """One bidirectional QUIC stream, with our muxed streams' method names and errors."""

    def __init__(self, session: QuicSession, stream_id: int) -> None:
        self.muxed_conn = session
        self.stream_id = stream_id
        self.is_initiator = session.is_initiator == (stream_id & 1 == 0)
        self._buffer = ReadBuffer()
        self._readable = trio.Event()
        self._write_lock = trio.Lock()
        self.recv_closed = False
        self.send_closed = False
        self.reset_received = False
        self.send_stopped = False  # the peer sent STOP_SENDING
        self._reset_reason = "stream was reset"
        self._held = 0  # unread bytes counted in the session's memory share

    @property
    def key(self) -> int:
        return self.stream_id

    @property
    def closed(self) -> bool:
        return self.reset_received or (self.recv_closed and self.send_closed)

    # -- from the session (synchronous) ---------------------------------------------------
    def _on_data(self, data: bytes, end: bool) -> None:
        session = self.muxed_conn
        if self.reset_received:
            session.quic.consumed(self.stream_id, len(data))  # nobody will read it
        elif data:
            self._buffer.append(data)
            memory = session.memory
            if memory is not None:
                memory.force(len(data))
                self._held += len(data)
                if memory.over:
                    session._over_memory(self)
                    return
        if end:
            self.recv_closed = True
        self._readable.set()
        if self.recv_closed and self.send_closed:
            self.muxed_conn._forget(self)

    def _release(self) -> None:
        if self._held:
            self.muxed_conn.memory.release(self._held)
            self._held = 0

    def _on_reset(self, reason: str, *, keep: bool = False) -> None:
        if not self.reset_received:
            self.reset_received = True
            self._reset_reason = reason
        # what is kept stays readable, but is no longer counted: the peer can send no more
        self._release()
        if not keep and self._buffer.size:
            self.muxed_conn.quic.consumed(self.stream_id, self._buffer.size)
            self._buffer.clear()
        self._readable.set()
        self.muxed_conn._forget(self)

    # -- the stream interface ------------------------------------------------------------
    async def read(self, n: int | None = -1) -> bytes:
        if n == 0:
            return b""
        while not self._buffer.size:
            if self.recv_closed:
                raise MuxedStreamEOF("stream closed by the peer")
            if self.reset_received:
                raise MuxedStreamReset(self._reset_reason)
            self._readable = trio.Event()
            await self._readable.wait()
        data = self._buffer.take(n)
        session = self.muxed_conn
        if self._held:
            done = min(self._held, len(data))
            self._held -= done
            session.memory.release(done)
        session.quic.consumed(self.stream_id, len(data))
        if session.quic.credit_due(self.stream_id):
            session.kick()
        return data

    async def write(self, data: bytes) -> None:
        session = self.muxed_conn
        view = memoryview(data)
        async with self._write_lock:
            while view:
                self._check_writable()
                await session._wait_send_room(self)
                self._check_writable()
                chunk = bytes(view[:SEND_BUFFER])
                view = view[SEND_BUFFER:]
                try:
                    session.quic.send_stream_data(self.stream_id, chunk)
                except Exception as exc:  # the stream or connection ended meanwhile
                    self._on_reset(f"stream closed: {exc}", keep=True)
                    raise MuxedStreamReset(self._reset_reason) from None
                session.kick()

    def _check_writable(self) -> None:
        if self.reset_received:
            raise MuxedStreamReset(self._reset_reason)
        if self.send_stopped:
            raise MuxedStreamReset("the peer stopped reading the stream")
        if self.send_closed:
            raise MuxedStreamClosed("stream is closed for writing")
        if self.muxed_conn._dead:
            raise MuxedStreamReset(self.muxed_conn.close_reason)

    async def close(self) -> None:
        """Half-close (FIN after what was written); reading goes on."""
        if self.send_closed or self.reset_received:
            return
        async with self._write_lock:
            if self.send_closed or self.reset_received:
                return
            self.send_closed = True
            session = self.muxed_conn
            if not session._dead:
                try:
                    session.quic.send_stream_data(self.stream_id, b"", end_stream=True)
                except Exception:
                    pass
                session.kick()
        if self.recv_closed:
            self.muxed_conn._forget(self)

    async def reset(self) -> None:
        if self.reset_received or (self.send_closed and self.recv_closed):
            return
        session = self.muxed_conn
        self._on_reset("stream was reset locally")
        if session._dead:
            return
        session._abandon_stream(self, stop_reading=not self.recv_closed)

    def get_remote_address(self):
        return self.muxed_conn.remote_sockaddr

    async def __aenter__(self) -> QuicMuxStream:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


# -- one connection ------------------------------------------------------------------------------


class QuicSession:
    """One QUIC connection on a :class:`QuicSocket` (see the module docstring)."""

    def __init__(self, sock: QuicSocket, quic: Libp2pQuicConnection, remote, *,
                 is_initiator: bool, expected_peer: bytes | None, backlog: int) -> None:
        self.sock = sock
        self.quic = quic
        self.remote_sockaddr = remote
        self.is_initiator = is_initiator
        self.expected_peer = expected_peer
        self.peer: bytes | None = None
        self.public_key: bytes | None = None
        self.streams: dict[int, QuicMuxStream] = {}
        self.on_close = None
        self.event_started = trio.Event()
        self.event_closed = trio.Event()
        self.handshake_done = trio.Event()
        self.handshake_error: str | None = None
        self.close_reason = "connection closed"
        self._accept_send, self._accept_recv = trio.open_memory_channel[QuicMuxStream](backlog)
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._dead = False  # no more streams or writes (closing, or gone)
        self._terminated = False  # aioquic is done with it
        self._last_activity = 0.0
        #: a loopback path: datagram size (0: unchanged) to use once the handshake is
        #: confirmed, and no pacing (Libp2pQuicConnection.use_loopback_path)
        self._loopback: int | None = None
        self._cid_seq = 0  # aioquic's count of our connection ids, when last routed
        #: an inbound connection's reservation until the swarm adopts it (p2pd/net/rcmgr.py)
        self.scope = None
        #: the peer's share of the muxer memory budget, once the handshake named the peer
        self.memory = None
        #: the peer's streams we ended before its FIN or reset arrived
        self._gone: set[int] = set()

    # -- the swarm's session interface -------------------------------------------------------
    @property
    def is_established(self) -> bool:
        return self.handshake_done.is_set() and not self._dead

    async def start(self) -> None:
        """Run until the connection ends (the driver itself runs on the socket's nursery)."""
        self.event_started.set()
        await self.event_closed.wait()

    async def open_stream(self) -> QuicMuxStream:
        if self._dead:
            raise MuxedConnUnavailable(self.close_reason)
        stream_id = self.quic.get_next_available_stream_id()
        # an empty write makes aioquic allocate the id (the peer sees the stream with its
        # first bytes: multistream-select writes at once)
        self.quic.send_stream_data(stream_id, b"")
        stream = QuicMuxStream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    async def accept_stream(self) -> QuicMuxStream:
        try:
            return await self._accept_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MuxedConnUnavailable(self.close_reason) from None

    async def close(self) -> None:
        """Send CONNECTION_CLOSE now; aioquic drains the connection in the background."""
        self.shut("connection closed locally")

    def shut(self, reason: str, error_code: int = APP_CLOSE) -> None:
        if self._dead:
            return
        self.quic.close(error_code=error_code, reason_phrase=reason[:200])
        self._end(reason)
        try:
            self._transmit(trio.current_time())
        except Exception:
            pass
        self.kick()

    def get_remote_address(self):
        return self.remote_sockaddr

    # -- internals ---------------------------------------------------------------------------
    def kick(self) -> None:
        """Something to send: the driver sends it (one batch for many writes)."""
        self._wake.set()

    def release_scope(self) -> None:
        """Give back the reservation taken for the first Initial (the handshake failed,
        timed out or the connection was not adopted)."""
        scope, self.scope = self.scope, None
        if scope is not None:
            scope.done()

    def _over_memory(self, stream: QuicMuxStream) -> None:
        """``stream``'s unread data passed the peer's memory share: reset it both ways."""
        self.memory.budget.streams_reset += 1
        log.info("QUIC: peer %s: stream %d reset: resource limit memory (%s)",
                 (self.peer or b"").hex()[:16], stream.stream_id, self.memory.describe())
        stream._on_reset("resource limit memory: the peer's unread data passed its share")
        self._abandon_stream(stream, stop_reading=True)

    def _abandon_stream(self, stream: QuicMuxStream, *, stop_reading: bool) -> None:
        """Tell the peer we give ``stream`` up: RESET_STREAM for our side unless it is
        closed, and STOP_SENDING for theirs when ``stop_reading``."""
        try:
            if not stream.send_closed:
                self.quic.reset_stream(stream.stream_id, 0)
            if stop_reading:
                self.quic.stop_stream(stream.stream_id, 0)
        except Exception:
            pass
        self.kick()

    def _forget(self, stream: QuicMuxStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.quic.forget_stream(stream.stream_id)
            if not stream.recv_closed and not stream.is_initiator:
                # the peer may still be sending on it (we reset it): what comes is dropped,
                # not taken for a new stream
                self._gone.add(stream.stream_id)

    def _unacked(self, stream: QuicMuxStream) -> int:
        inner = self.quic._streams.get(stream.stream_id)
        if inner is None:
            return 0
        sender = inner.sender
        return sender._buffer_stop - sender._buffer_start

    async def _wait_send_room(self, stream: QuicMuxStream) -> None:
        while self._unacked(stream) >= SEND_BUFFER and not self._dead \
                and not stream.reset_received:
            progress = self._progress
            await progress.wait()

    def input_done(self, now: float) -> None:
        """After a batch of datagrams: handle the events, send, wake writers."""
        self._last_activity = now
        self._process_events()
        if not self._dead and self.quic._close_event is not None:
            # the peer closed (or aioquic gave up on a protocol error): end it for the
            # swarm now; aioquic keeps draining in the background for 3 PTO
            event = self.quic._close_event
            reason = event.reason_phrase or f"error 0x{event.error_code:x}"
            if self.handshake_error is None and not self.handshake_done.is_set():
                self.handshake_error = f"the peer closed the handshake: {reason}"
            self._end(f"connection closed: {reason}")
        if self._loopback is not None and self.quic._handshake_confirmed:
            self.quic.use_loopback_path(self._loopback)
            self._loopback = None
        self._transmit(now)
        progress, self._progress = self._progress, trio.Event()
        progress.set()
        self._wake.set()  # the driver re-arms its timer

    def _transmit(self, now: float) -> None:
        quic = self.quic
        if quic._host_cid_seq != self._cid_seq:
            # aioquic reports a new connection id when its NEW_CONNECTION_ID frame is
            # written: route it before the peer can use it
            for issued in quic._host_cids:
                self.sock.router.add_cid(issued.cid, quic)
            self._cid_seq = quic._host_cid_seq
        datagrams = quic.datagrams_to_send(now=now)
        if datagrams:
            self.sock.send(datagrams)

    def _process_events(self) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is events.StreamDataReceived:
                self._on_stream_data(event)
            elif kind is events.StreamReset:
                self._gone.discard(event.stream_id)
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_reset("stream was reset by the peer")
            elif kind is events.StopSendingReceived:
                # the peer will not read (go-libp2p's Close() sends this after its FIN):
                # our writes end, reading goes on
                stream = self.streams.get(event.stream_id)
                if stream is not None and not stream.send_closed:
                    stream.send_stopped = True
                    stream.send_closed = True
                    try:
                        quic.reset_stream(event.stream_id, 0)
                    except Exception:
                        pass
                    if stream.recv_closed:
                        self._forget(stream)
            elif kind is events.ConnectionIdIssued:
                self.sock.router.add_cid(event.connection_id, quic)
            elif kind is events.ConnectionIdRetired:
                self.sock.router.remove_cid(event.connection_id)
            elif kind is events.HandshakeCompleted:
                self._on_handshake()
            elif kind is events.ConnectionTerminated:
                reason = event.reason_phrase or f"error 0x{event.error_code:x}"
                if self.handshake_error is None and not self.handshake_done.is_set():
                    self.handshake_error = f"the peer closed the handshake: {reason}"
                self._end(f"connection closed: {reason}")
                self._terminated = True

    def _on_stream_data(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            if event.stream_id in self._gone:  # late data on a stream we reset
                self.quic.consumed(event.stream_id, len(event.data))
                if event.end_stream:
                    self._gone.discard(event.stream_id)
                return
            if (event.stream_id & 1) == (0 if self.is_initiator else 1) or \
                    event.stream_id & 2 or self._dead or not self.handshake_done.is_set():
                # ours and already forgotten, unidirectional, or before the handshake
                # was checked: nobody reads it
                self.quic.consumed(event.stream_id, len(event.data))
                if not event.end_stream and (event.stream_id & 1) != (0 if self.is_initiator
                                                                     else 1):
                    try:
                        self.quic.stop_stream(event.stream_id, 0)
                    except Exception:
                        pass
                return
            stream = QuicMuxStream(self, event.stream_id)
            self.streams[event.stream_id] = stream
            try:
                self._accept_send.send_nowait(stream)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                log.info("QUIC: inbound stream backlog full, resetting stream %d",
                         event.stream_id)
                stream._on_reset("backlog full")
                stream._on_data(event.data, event.end_stream)
                try:
                    self.quic.reset_stream(event.stream_id, 0)
                    self.quic.stop_stream(event.stream_id, 0)
                except Exception:
                    pass
                return
        stream._on_data(event.data, event.end_stream)

    def _on_handshake(self) -> None:
        try:
            self.peer, self.public_key = check_peer_certificate(self.quic, self.expected_peer)
        except TlsCertError as exc:
            self.handshake_error = f"certificate refused: {exc}"
            self.shut(self.handshake_error, BAD_CERTIFICATE)
            return
        self.sock.router.established(self.quic)
        rcmgr = getattr(self.sock.transport.swarm, "rcmgr", None)
        if rcmgr is not None:
            self.memory = rcmgr.memory.for_peer(self.peer)
        if _is_loopback(self.remote_sockaddr[0]):
            # once the handshake is confirmed: aioquic pads datagrams that carry handshake
            # packets to the full size
            self._loopback = self.quic.settings.loopback_datagram_size
        self.handshake_done.set()

    def _end(self, reason: str) -> None:
        if self._dead:
            return
        self._dead = True
        self.close_reason = reason
        self.handshake_done.set()  # waiters look at handshake_error / _dead
        self._accept_send.close()
        for stream in list(self.streams.values()):
            stream._on_reset(reason, keep=True)
        self.streams.clear()
        progress, self._progress = self._progress, trio.Event()
        progress.set()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            try:
                on_close()
            except Exception:
                log.debug("on_close hook failed", exc_info=True)

    async def drive(self) -> None:
        """Send, run aioquic's timers and keep-alive, until aioquic is done."""
        quic = self.quic
        settings = quic.settings
        self._last_activity = trio.current_time()
        try:
            while not self._terminated:
                now = trio.current_time()
                self._transmit(now)
                at = quic.get_timer()
                deadline = at if at is not None else math.inf
                if self.handshake_done.is_set() and not self._dead:
                    deadline = min(deadline, self._last_activity + settings.keepalive)
                with trio.move_on_at(deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                now = trio.current_time()
                if at is not None and now >= at:
                    quic.handle_timer(now=now)
                    self._process_events()
                if (not self._dead and self.handshake_done.is_set()
                        and now >= self._last_activity + settings.keepalive):
                    quic.send_ping(0)
                    self._last_activity = now
        finally:
            self._end(self.close_reason if self._dead else "connection gone")
            self.release_scope()
            self.sock.router.forget(quic)
            self.sock.sessions.discard(self)
            self.event_closed.set()


# -- one UDP socket ----------------------------------------------------------------------------


class QuicSocket:
    """A UDP socket, its connection-id router and its connections."""

    def __init__(self, transport: QuicTransport, sock: socket.socket, *, listening: bool) -> None:
        self.transport = transport
        self.raw = sock
        self.listening = listening
        host, port = sock.getsockname()[:2]
        self.local_addr = quic_multiaddr(host, port)
        server_config = transport.server_config() if listening else None
        self.router = DatagramRouter(server_config, transport.settings,
                                     reset_key=transport.swarm.identity.reset_key,
                                     admission=getattr(transport.swarm, "rcmgr", None))
        self.sessions: set[QuicSession] = set()
        self.by_conn: dict[int, QuicSession] = {}
        #: UDP segmentation offload (Linux); off after the first refusal
        self.gso = (transport.settings.offload and hasattr(socket, "CMSG_SPACE")
                    and sys.platform.startswith("linux"))
        #: generic receive offload: the kernel hands over runs of a peer's datagrams at once
        self.gro = False
        if self.gso:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError:
                pass
        self._queue: list[tuple[bytes, tuple]] = []
        self._queued = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._flush_loop)
                task_status.started()
                await self._read_loop()
        finally:
            self.raw.close()

    # -- sending -----------------------------------------------------------------------------
    def send(self, datagrams: Sequence[tuple[bytes, tuple]]) -> None:
        if self._queue:
            self._enqueue(datagrams)
            return
        if self.gso and len(datagrams) > 1:
            self._send_segmented(datagrams)
            return
        sendto = self.raw.sendto
        for i, (data, addr) in enumerate(datagrams):
            try:
                sendto(data, addr)
            except BlockingIOError:
                self._enqueue(datagrams[i:])
                return
            except OSError as exc:  # unreachable network and the like: that datagram
                log.debug("QUIC: sendto %s failed: %s", addr, exc)

    def _send_segmented(self, datagrams: Sequence[tuple[bytes, tuple]]) -> None:
        """Runs of same-size datagrams in one sendmsg each (UDP_SEGMENT): one system call
        and one trip through the stack for up to 64 datagrams."""
        sendmsg = self.raw.sendmsg
        done = 0
        for payloads, addr, segment in gso_batches(datagrams):
            try:
                if len(payloads) == 1:
                    self.raw.sendto(payloads[0], addr)
                else:
                    sendmsg(payloads, [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))],
                            0, addr)
            except BlockingIOError:
                self._enqueue(datagrams[done:])
                return
            except OSError as exc:
                if len(payloads) > 1 and exc.errno in (errno.EIO, errno.EINVAL,
                                                       errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    log.info("QUIC: UDP segmentation offload refused (%s); sending one "
                             "datagram per call", exc)
                    self.gso = False
                    self.send(datagrams[done:])
                    return
                log.debug("QUIC: sendmsg to %s failed: %s", addr, exc)
            done += len(payloads)

    def _enqueue(self, datagrams) -> None:
        room = MAX_SEND_QUEUE - len(self._queue)
        self._queue.extend(list(datagrams)[:max(room, 0)])
        self._queued.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            while self._queue:
                await trio.lowlevel.wait_writable(self.raw)
                queue, self._queue = self._queue, []
                self.send(queue)

    # -- receiving --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        recvfrom = self.raw.recvfrom
        recvmsg = self.raw.recvmsg
        gro_space = socket.CMSG_SPACE(4) if self.gro else 0
        while True:
            await trio.lowlevel.wait_readable(self.raw)
            now = trio.current_time()
            touched: dict[int, QuicSession] = {}
            for _ in range(RECV_BATCH):
                try:
                    if gro_space:
                        data, ancdata, _flags, addr = recvmsg(GRO_BUFFER, gro_space)
                    else:
                        data, addr = recvfrom(MAX_DATAGRAM)
                        ancdata = ()
                except BlockingIOError:
                    break
                except OSError as exc:  # ICMP errors surface here (ECONNREFUSED): skip
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        break
                    continue
                addr = _sockaddr_key(addr)
                segment = 0
                for level, kind, value in ancdata:  # GRO: several datagrams in one buffer
                    if level == SOL_UDP and kind == UDP_GRO and len(value) >= 2:
                        segment = int.from_bytes(value[:4].ljust(4, b"\0"), sys.byteorder)
                if segment and segment < len(data):
                    for i in range(0, len(data), segment):
                        self._datagram(data[i : i + segment], addr, now, touched)
                else:
                    self._datagram(data, addr, now, touched)
            for session in touched.values():
                try:
                    session.input_done(now)
                except Exception:
                    log.warning("QUIC: connection to %s failed", session.remote_sockaddr,
                                exc_info=True)
                    session._end("internal error")
                    session._terminated = True
                    session.kick()

    def _datagram(self, data: bytes, addr, now: float, touched: dict) -> None:
        """One datagram to its connection (a new one for a new client's Initial)."""
        try:
            routed = self.router.route(data, addr, now)
            if routed.replies:
                self.send([(r, addr) for r in routed.replies])
            conn = routed.conn
            if conn is None:
                return
            if routed.new:
                session = self._accept(conn, addr, routed.scope)
            else:
                session = self.by_conn.get(id(conn))
            if session is None:
                return
            if routed.reset:
                session._end("stateless reset from the peer (it lost the connection)")
                session._terminated = True
                session.kick()
                return
            conn.receive_datagram(data, addr, now=now)
            touched[id(conn)] = session
        except Exception:  # a bug must not take the socket down: drop that one
            log.warning("QUIC: datagram from %s dropped after an error", addr, exc_info=True)

    # -- connections -------------------------------------------------------------------------
    def _adopt(self, conn: Libp2pQuicConnection, addr, *, is_initiator: bool,
               expected_peer: bytes | None) -> QuicSession:
        session = QuicSession(self, conn, addr, is_initiator=is_initiator,
                              expected_peer=expected_peer,
                              backlog=self.transport.stream_backlog)
        self.sessions.add(session)
        self.by_conn[id(conn)] = session

        async def drive() -> None:
            try:
                await session.drive()
            finally:
                self.by_conn.pop(id(conn), None)

        self._nursery.start_soon(drive)
        return session

    def _accept(self, conn: Libp2pQuicConnection, addr, scope=None) -> QuicSession | None:
        session = self._adopt(conn, addr, is_initiator=False, expected_peer=None)
        session.scope = scope
        self._nursery.start_soon(self.transport._inbound, session)
        return session

    def connect(self, addr, expected_peer: bytes) -> QuicSession:
        config = self.transport.client_config()
        conn = self.router.client(self.transport.settings, config)
        session = self._adopt(conn, addr, is_initiator=True, expected_peer=expected_peer)
        conn.connect(addr, now=trio.current_time())
        session.kick()
        return session


# -- the transport -------------------------------------------------------------------------------


class QuicTransport:
    """QUIC v1 for a :class:`~p2pd.net.swarm.Swarm` (see the module docstring)."""

    def __init__(self, swarm, settings: QuicSettings | None = None) -> None:
        self.swarm = swarm
        self.settings = settings or QuicSettings()
        self.sockets: list[QuicSocket] = []
        self._certificate = None
        self._configs: dict[bool, object] = {}
        self._dial_sockets: dict[int, QuicSocket] = {}
        self._nursery: trio.Nursery | None = None
        swarm.transports.append(self)

    @property
    def stream_backlog(self) -> int:
        return self.swarm.options.stream_backlog

    def _config(self, is_client: bool):
        if self._certificate is None:
            from .tlscert import make_certificate

            self._certificate = make_certificate(self.swarm.identity)
        if is_client not in self._configs:
            self._configs[is_client] = make_configuration(
                self.swarm.identity, self.settings, is_client=is_client,
                certificate=self._certificate)
        return self._configs[is_client]

    def client_config(self):
        return self._config(True)

    def server_config(self):
        return self._config(False)

    # -- the swarm's transport interface ------------------------------------------------------
    def handles(self, addr: bytes) -> bool:
        return quic_target(addr) is not None

    listens = handles

    async def listen(self, addr: bytes, nursery: trio.Nursery) -> bytes:
        """Bind ``/ip4|ip6/HOST/udp/PORT/quic-v1`` and serve it; the bound address."""
        self._nursery = nursery
        host, port, family = quic_target(addr)
        if port == 0:
            # the same port for IPv4 and IPv6 when both listen on /udp/0
            port = next((s.raw.getsockname()[1] for s in self.sockets
                         if s.listening and s.raw.family != family), 0)
        try:
            raw = self._bind(host, port, family)
        except OSError:
            if port == 0 or quic_target(addr)[1] != 0:
                raise
            raw = self._bind(host, 0, family)
        qs = QuicSocket(self, raw, listening=True)
        await nursery.start(qs.run)
        self.sockets.append(qs)
        return qs.local_addr

    def _bind(self, host: str, port: int, family: int) -> socket.socket:
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            if family == socket.AF_INET6:
                raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    raw.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            raw.bind((host, port))
        except OSError as exc:
            raw.close()
            raise OSError(exc.errno, f"cannot listen on udp {host}:{port}: {exc.strerror}") \
                from None
        return raw

    async def _socket_for(self, host: str, family: int) -> QuicSocket:
        """The socket a dial leaves from: a listening one of that family (so the peer
        sees our listen port), else one bound to an ephemeral port for dialing."""
        loopback = host in ("127.0.0.1", "::1")
        candidates = [s for s in self.sockets if s.listening and s.raw.family == family]
        for s in candidates:
            bound = s.raw.getsockname()[0]
            if bound in ("0.0.0.0", "::") or (bound.startswith("127.") or bound == "::1") \
                    == loopback:
                return s
        if candidates:
            return candidates[0]
        qs = self._dial_sockets.get(family)
        if qs is None:
            nursery = self._nursery or self.swarm._nursery
            raw = self._bind("0.0.0.0" if family == socket.AF_INET else "::", 0, family)
            qs = QuicSocket(self, raw, listening=False)
            await nursery.start(qs.run)
            self._dial_sockets[family] = qs
        return qs

    async def dial(self, peer: bytes, addr: bytes):
        from .swarm import Connection

        target = quic_target(addr)
        if target is None:
            raise QuicTransportError("not a QUIC v1 address")
        host, port, family = target
        qs = await self._socket_for(host, family)
        session = qs.connect((host, port), peer)
        try:
            with trio.fail_after(self.swarm.options.handshake_timeout):
                await session.handshake_done.wait()
        except trio.TooSlowError:
            await self._abandon(session, "handshake timed out")
            raise QuicTransportError(f"QUIC handshake with {host}:{port} timed out") \
                from None
        except BaseException:
            await self._abandon(session, "dial cancelled")
            raise
        if session.handshake_error or session._dead:
            raise QuicTransportError(session.handshake_error or session.close_reason)
        if session.peer == self.swarm.me:
            await self._abandon(session, "dialed ourselves")
            raise QuicTransportError("dialed ourselves")
        return Connection(session.peer, session.public_key, "outbound",
                          quic_multiaddr(host, port), qs.local_addr, MUXER, session,
                          transport=TRANSPORT, security=SECURITY)

    async def punch(self, addr: bytes, done: Callable[[], bool], duration: float) -> None:
        """DCUtR's side that does not dial (A): UDP packets of random bytes from our
        listening socket to ``addr`` every 10-200 ms, so our router lets the other side's
        QUIC Initial in, until ``done()`` or ``duration`` seconds (go-libp2p's hole punch
        for QUIC; the other side dials as the QUIC client)."""
        target = quic_target(addr)
        if target is None:
            raise QuicTransportError("not a QUIC v1 address")
        host, port, family = target
        qs = await self._socket_for(host, family)
        with trio.move_on_after(duration):
            while not done():
                qs.send([(_punch_packet(), (host, port))])
                await trio.sleep(random.uniform(0.01, 0.2))

    async def _abandon(self, session: QuicSession, reason: str) -> None:
        session.shut(reason)

    async def _inbound(self, session: QuicSession) -> None:
        from .swarm import Connection

        with trio.move_on_after(self.swarm.options.handshake_timeout) as scope:
            await session.handshake_done.wait()
        host, port = session.remote_sockaddr[:2]
        if scope.cancelled_caught:
            log.debug("QUIC handshake from %s:%s timed out", host, port)
            session.release_scope()
            await self._abandon(session, "handshake timed out")
            return
        if session.handshake_error or session._dead:
            log.debug("QUIC handshake from %s:%s failed: %s", host, port,
                      session.handshake_error or session.close_reason)
            session.release_scope()
            return
        if session.peer == self.swarm.me:
            session.release_scope()
            await self._abandon(session, "dialed ourselves")
            return
        conn = Connection(session.peer, session.public_key, "inbound",
                          quic_multiaddr(host, port), session.sock.local_addr, MUXER, session,
                          transport=TRANSPORT, security=SECURITY)
        held, session.scope = session.scope, None  # the swarm's from here on, or released
        if not self.swarm.adopt_inbound(conn, held):
            await self._abandon(session, "too many connections")
