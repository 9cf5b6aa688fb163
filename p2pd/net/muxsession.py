"""What our two stream muxers (Yamux, mplex) share: one trio task reading the secure
channel and dispatching frames, serialized whole-frame writes, the accept backlog and an
orderly end. A subclass supplies the frame decoder (``_feed``), the dispatch
(``_dispatch``), what it says on a protocol error (``_on_protocol_error``) and its streams.

Implements py-libp2p's ``IMuxedConn`` so its swarm runs our muxers unchanged.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import trio
from libp2p.abc import IMuxedConn
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable

log = logging.getLogger(__name__)

#: How long one write to the secure channel may take before the connection is given up.
WRITE_TIMEOUT = 30.0


class ProtocolError(Exception):
    """The peer broke the muxer's rules; the connection ends."""


class MuxSession(IMuxedConn):
    def __init__(self, secured_conn: Any, peer_id: Any, is_initiator: bool | None,
                 on_close: Any, backlog: int) -> None:
        self.secured_conn = secured_conn
        self.peer_id = peer_id
        self.on_close = on_close
        self._initiator = secured_conn.is_initiator if is_initiator is None else is_initiator
        self.streams: dict = {}
        self._accept_send, self._accept_recv = trio.open_memory_channel[Any](backlog)
        self._write_lock = trio.Lock()
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
        if self._dead or self._write_failed:
            raise MuxedConnUnavailable(self._close_reason)
        try:
            async with self._write_lock:
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
            # What already arrived stays readable: a peer may send its answer, close its
            # side and the connection at once.
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
