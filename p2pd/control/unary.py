"""The hivemind fork's persistent control connections and unary calls, on trio.

A client upgrades a control connection with ``PERSISTENT_CONN_UPGRADE``; from then on it
registers unary handlers (``addUnaryHandler``, optionally balanced between several
connections) and calls handlers of other peers (``callUnary``), many calls at once, each
answered once and matched by its call id. The wire parts are in
:mod:`p2pd.control.persistent`.

Between daemons a call is one libp2p stream of the handler's protocol: the caller's
daemon writes the ``PersistentConnectionRequest`` (callUnary) as one frame and keeps the
stream open; the handler's daemon hands the call to one of the connections serving the
protocol (``requestHandling``, peer replaced by the caller's) and writes back that
client's ``unaryResponse`` as one frame. Either end going away ends the call: the caller
sending ``cancel`` (or closing its connection) resets the stream, the handler's daemon
sees the stream end and tells its client ``cancel``; a handler's connection closing
answers its pending calls with an error.

Tasks: one nursery per persistent connection (its reader, one task per outgoing call),
inside the control server's client task. Inbound calls run in the task py-libp2p gives
the protocol handler; they wait on a :class:`_Pending` that the handler's connection
fills or fails, so a connection closing never leaves one waiting.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import trio

from ..errors import NodeError
from ..net.streams import read_some
from ..proto import daemon_pb2 as pb
from . import persistent as wire
from .codec import encode_message, ok_response
from .ports import ControlNode

log = logging.getLogger(__name__)

READ_CHUNK = 64 << 10
#: Calls one connection may have in flight at once (hivemind keeps a few hundred at most).
MAX_CALLS_IN_FLIGHT = 4096
#: How long a handler's daemon waits for the caller's request on a fresh unary stream.
REQUEST_READ_TIMEOUT = 60.0
#: How long a write to a persistent client may take before its connection is given up.
WRITE_TIMEOUT = 30.0


class UnaryHub:
    """Daemon-wide registry: unary protocol -> the persistent connections serving it.

    ``claimed(proto)`` is asked before a unary handler takes a protocol, so a protocol
    held by a STREAM_HANDLER client is refused the same way ("already set").
    """

    def __init__(self, node: ControlNode, max_msg_size: int,
                 claimed: Callable[[str], bool]) -> None:
        self.node = node
        self.max_msg_size = max_msg_size
        self._claimed = claimed
        self.handlers: dict[str, wire.RoundRobin[PersistentConnection]] = {}

    # -- handler registry ---------------------------------------------------------------

    def add(self, conn: PersistentConnection, proto: str, balanced: bool) -> str | None:
        """Register; return an error message or ``None``."""
        serving = self.handlers.get(proto)
        if serving is None:
            if self._claimed(proto):
                return f"handler for protocol {proto} already set"
            self.handlers[proto] = wire.RoundRobin(conn)
            self.node.set_stream_handler(proto, self._inbound)
            return None
        if not balanced:
            return f"handler for protocol {proto} already set"
        serving.append(conn)
        return None

    def remove(self, conn: PersistentConnection, proto: str) -> str | None:
        serving = self.handlers.get(proto)
        if serving is None:
            return f"handler for protocol {proto} does not exist"
        if not serving.remove(conn):
            return f"handler for protocol {proto} was not created in this persistent connection"
        if not len(serving):
            del self.handlers[proto]
            self.node.remove_stream_handler(proto)
        return None

    def drop(self, conn: PersistentConnection) -> None:
        """Forget every registration of a closed connection."""
        for proto, serving in list(self.handlers.items()):
            while serving.remove(conn):
                pass
            if not len(serving):
                del self.handlers[proto]
                self.node.remove_stream_handler(proto)

    # -- calls to other daemons ---------------------------------------------------------

    async def call_remote(self, request: pb.PersistentConnectionRequest) -> pb.CallUnaryResponse:
        """Carry one call to the handler's daemon and return its answer.

        Raises :class:`NodeError` (or :class:`wire.PersistentProtocolError`) with the
        message for the client. A cancellation resets the stream, which the handler's
        daemon sees as the caller going away.
        """
        call = request.callUnary
        stream, _proto, _addr = await self.node.open_stream(call.peer, [call.proto], None)
        done = False
        try:
            try:
                await stream.write(encode_message(request))
                frame = await read_frame(stream, self.max_msg_size,
                                         self.node.stream_memory(stream))
            except wire.PersistentProtocolError:
                raise
            except Exception as exc:
                raise NodeError(f"unary call to {call.proto}: {_describe(exc)}") from None
            if frame is None:
                raise NodeError(
                    f"unary call to {call.proto}: the remote daemon closed the stream "
                    "without an answer"
                )
            answer = wire.decode_remote_answer(frame)
            done = True
            return answer
        finally:
            with trio.CancelScope(shield=True):
                await _end_stream(stream, reset=not done)

    # -- calls from other daemons -------------------------------------------------------

    async def _inbound(self, stream) -> None:
        """A unary stream from a caller's daemon: hand the call to a client, answer once."""
        try:
            with trio.CancelScope(deadline=trio.current_time() + REQUEST_READ_TIMEOUT) as t:
                frame = await read_frame(stream, self.max_msg_size,
                                         self.node.stream_memory(stream))
            if t.cancelled_caught:
                raise trio.TooSlowError
            if frame is None:
                raise wire.PersistentProtocolError("unary stream closed before a request")
            request = wire.decode_remote_call(frame)
        except Exception as exc:  # garbage, too big, too slow, reset: nothing to answer
            log.debug("unary stream refused: %r", exc)
            await _end_stream(stream, reset=True)
            return
        proto = str(stream.get_protocol() or request.callUnary.proto)
        call = pb.CallUnaryRequest()
        call.CopyFrom(request.callUnary)
        call.peer = self.node.stream_peer(stream)  # now the caller, as the fork does
        call.proto = proto
        call.data = request.callUnary.data  # present even if empty: hivemind's proto requires it
        call_id = request.callId
        pending = None
        for conn in (self.handlers.get(proto) or wire.RoundRobin()).take():
            pending = await conn.hand_over(call_id, call)
            if pending is not None:
                break
        if pending is None:
            answer = pb.CallUnaryResponse(
                error=f"no handler for {proto} can take call {_uuid(call_id)} now".encode()
            )
            await _answer(stream, call_id, answer)
            return
        try:
            result = await pending.wait_or_caller_gone(stream)
        finally:
            pending.conn.forget(call_id, pending)
        if result is None:  # the caller went away: the client stops handling it
            await pending.conn.send_quietly(wire.cancelled(call_id))
            await _end_stream(stream, reset=True)
            return
        await _answer(stream, call_id, result)


class _Pending:
    """One inbound call handed to a client, waiting for its unaryResponse."""

    __slots__ = ("conn", "_done", "_result", "_gone")

    def __init__(self, conn: PersistentConnection) -> None:
        self.conn = conn
        self._done = trio.Event()
        self._result: pb.CallUnaryResponse | None = None
        self._gone = False

    def resolve(self, result: pb.CallUnaryResponse) -> None:
        if not self._done.is_set():
            self._result = result
            self._done.set()

    def _caller_gone(self) -> None:
        if not self._done.is_set():
            self._gone = True
            self._done.set()

    async def wait_or_caller_gone(self, stream) -> pb.CallUnaryResponse | None:
        """The client's answer, or ``None`` once the caller's stream ends first (its
        close or reset, as the go daemon's ``notifyWhenClosed``)."""
        watch = getattr(stream, "on_remote_end", None)
        if watch is not None and watch(self._caller_gone):
            # no task and no read: the held multistream echo and Yamux ACK ride on the answer
            await self._done.wait()
            return None if self._gone else self._result
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch_caller() -> None:
                nonlocal gone
                try:
                    await stream.read()
                except Exception:
                    pass
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_caller)
            await self._done.wait()
            nursery.cancel_scope.cancel()
        return None if gone and self._result is None else self._result


class PersistentConnection:
    """One upgraded control connection."""

    def __init__(self, hub: UnaryHub, stream: trio.SocketStream) -> None:
        self.hub = hub
        self.stream = stream
        self.decoder = wire.PersistentFrameDecoder(hub.max_msg_size)
        #: frames waiting for the write on the socket (see :meth:`send`)
        self._out: list[bytes] = []
        self._writing = False
        self._sent = trio.Event()
        self._send_error: BaseException | None = None
        #: call id -> cancel scope of this client's own calls in flight
        self._calls: dict[bytes, trio.CancelScope] = {}
        #: call id -> inbound call this client is handling
        self._handling: dict[bytes, _Pending] = {}
        self._closed = False

    async def serve(self, leftover: bytes) -> None:
        """Answer the upgrade, then serve frames until the client closes or breaks."""
        try:
            await self.stream.send_all(encode_message(ok_response()))
            if leftover:
                self.decoder.receive_data(leftover)
            async with trio.open_nursery() as nursery:
                await self._read_loop(nursery)
                nursery.cancel_scope.cancel()  # the client is gone: so are its calls
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._closed = True
            self.hub.drop(self)
            failure = pb.CallUnaryResponse(error=b"the handler's client disconnected")
            for pending in list(self._handling.values()):
                pending.resolve(failure)
            self._handling.clear()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                event = self.decoder.next_event()
            except wire.PersistentProtocolError as exc:  # framing lost: nothing can follow
                await self.send_quietly(wire.daemon_error(exc.call_id, str(exc)))
                return
            if event is None:
                data = await self.stream.receive_some(READ_CHUNK)
                self.decoder.receive_data(data)
                if not data:
                    try:
                        if self.decoder.next_event() is None:
                            return
                    except wire.PersistentProtocolError:
                        return
                continue
            if isinstance(event, wire.Oversized):
                await self._oversized(event)
                continue
            try:
                request = wire.decode_persistent_request(event.payload)
            except wire.PersistentProtocolError as exc:
                await self.send(wire.daemon_error(exc.call_id, str(exc)))
                continue
            await self._dispatch(request, nursery)

    async def _oversized(self, event: wire.Oversized) -> None:
        message = wire.too_big(event.length, self.decoder.max_size)
        call_id = event.call_id
        if call_id is not None and call_id in self._handling:  # a handler's answer: tell both
            self._handling[call_id].resolve(pb.CallUnaryResponse(error=message.encode()))
        await self.send(wire.daemon_error(call_id or wire.NIL_CALL_ID, message))

    async def _dispatch(self, request: pb.PersistentConnectionRequest, nursery) -> None:
        call_id = request.callId
        kind = request.WhichOneof("message")
        if kind == "unaryResponse":
            pending = self._handling.get(call_id)
            if pending is None:
                log.debug("unaryResponse for call %s nobody waits for", _uuid(call_id))
            else:
                pending.resolve(request.unaryResponse)
            return
        if kind == "cancel":
            scope = self._calls.get(call_id)
            if scope is not None:
                scope.cancel()
            return
        if call_id in self._calls:
            await self.send(
                wire.daemon_error(
                    call_id,
                    f"call id {_uuid(call_id)} is already in use by a call in flight on "
                    "this connection; use a fresh UUID per call",
                )
            )
            return
        if kind == "addUnaryHandler":
            add = request.addUnaryHandler
            error = self.hub.add(self, add.proto, add.balanced)
            await self.send(
                wire.ok(call_id) if error is None else wire.daemon_error(call_id, error)
            )
        elif kind == "removeUnaryHandler":
            error = self.hub.remove(self, request.removeUnaryHandler.proto)
            await self.send(
                wire.ok(call_id) if error is None else wire.daemon_error(call_id, error)
            )
        elif len(self._calls) >= MAX_CALLS_IN_FLIGHT:
            await self.send(
                wire.daemon_error(
                    call_id,
                    f"{MAX_CALLS_IN_FLIGHT} calls are already in flight on this connection; "
                    "wait for some to finish",
                )
            )
        else:  # callUnary
            scope = trio.CancelScope()
            self._calls[call_id] = scope
            nursery.start_soon(self._call, request, scope)

    async def _call(self, request: pb.PersistentConnectionRequest, scope: trio.CancelScope) -> None:
        call_id = request.callId
        try:
            with scope:
                try:
                    answer = await self.hub.call_remote(request)
                    response = wire.unary_result(call_id, answer)
                except (NodeError, wire.PersistentProtocolError) as exc:
                    response = wire.daemon_error(call_id, str(exc))
            if scope.cancelled_caught:
                response = wire.cancelled(call_id)
        finally:
            del self._calls[call_id]
        await self.send_quietly(response)

    # -- used by the hub for inbound calls ----------------------------------------------

    async def hand_over(self, call_id: bytes, call: pb.CallUnaryRequest) -> _Pending | None:
        """Take an inbound call: ``None`` if closed, broken, or the call id is pending here."""
        if self._closed or call_id in self._handling:
            return None
        pending = _Pending(self)
        self._handling[call_id] = pending
        try:
            await self.send(wire.request_handling(call_id, call))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.forget(call_id, pending)
            return None
        return pending

    def forget(self, call_id: bytes, pending: _Pending) -> None:
        if self._handling.get(call_id) is pending:
            del self._handling[call_id]

    # -- writing ------------------------------------------------------------------------

    async def send(self, response: pb.PersistentConnectionResponse) -> None:
        """Write one frame to the client, returning once it is on the socket.

        Frames from calls that answer in the same scheduling round go out in one write
        (one system call and one wake-up of the client for many calls): the first
        sender yields once before writing, and frames handed over while a write is on
        the socket join the next one. A failed write (or one the client does not take
        for :data:`WRITE_TIMEOUT`) fails every frame of its batch and closes the connection.
        """
        if self._send_error is not None:
            raise trio.BrokenResourceError(f"control connection write failed: {self._send_error!r}")
        self._out.append(encode_message(response))
        if self._writing:
            sent = self._sent
            # the frame is queued whole and goes out even if this caller is cancelled
            with trio.CancelScope(shield=True):
                await sent.wait()
            if self._send_error is not None:
                raise trio.BrokenResourceError(
                    f"control connection write failed: {self._send_error!r}"
                )
            return
        self._writing = True
        try:
            await trio.lowlevel.cancel_shielded_checkpoint()  # let this round's answers join
            while self._out:
                frames, self._out = self._out, []
                sent, self._sent = self._sent, trio.Event()
                try:
                    # whole frames or none: the sender's cancellation (an inbound call's
                    # stream ending) must not cut a frame, which would end the client's
                    # connection; a client that does not read for WRITE_TIMEOUT is given up
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = trio.current_time() + WRITE_TIMEOUT
                        await self.stream.send_all(frames[0] if len(frames) == 1
                                                   else b"".join(frames))
                    if scope.cancelled_caught:
                        raise TimeoutError(
                            f"the client did not take its answers within {WRITE_TIMEOUT:g} s")
                except BaseException as exc:
                    # broken or stalled: the framing may be lost, so the connection ends
                    # here (its reader sees it closed)
                    self._send_error = exc
                    self._out.clear()
                    self.stream.socket.close()
                    raise
                finally:
                    sent.set()
        finally:
            self._writing = False

    async def send_quietly(self, response: pb.PersistentConnectionResponse) -> None:
        try:
            await self.send(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def read_frame(stream, max_size: int, memory=None) -> bytes | None:
    """One varint-delimited frame from a libp2p stream; ``None`` at EOF before any byte.
    ``memory``: the peer's share the partial frame counts in (p2pd/framing.py).

    Bytes after the frame are left unread on purpose: the only thing that follows on a
    unary stream is its end.
    """
    with wire.StreamFrameDecoder(max_size, memory=memory) as decoder:
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            data = await read_some(stream)
            if not data:
                if not decoder.buffered:
                    return None
                decoder.receive_data(b"")
                return decoder.next_frame()
            decoder.receive_data(data)


async def _answer(stream, call_id: bytes, result: pb.CallUnaryResponse) -> None:
    try:  # the answer and our close in one frame
        await stream.write_and_close(
            encode_message(pb.PersistentConnectionRequest(callId=call_id, unaryResponse=result))
        )
    except Exception as exc:
        log.debug("unary answer not delivered: %r", exc)
        await _end_stream(stream, reset=True)


async def _end_stream(stream, *, reset: bool) -> None:
    try:
        if reset:
            await stream.reset()
        else:
            await stream.close()
    except Exception:
        try:
            await stream.reset()
        except Exception:
            pass


def _uuid(call_id: bytes) -> str:
    try:
        return str(uuid.UUID(bytes=call_id))
    except ValueError:
        return call_id.hex()


def _describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__
