"""A small client of the hivemind fork's persistent control connection, for the tests.

It speaks what hivemind's ``ControlClient`` speaks (hivemind/p2p/p2p_daemon_bindings/
control.py): PERSISTENT_CONN_UPGRADE, then PersistentConnectionRequest frames out and
PersistentConnectionResponse frames in, matched by 16-byte call ids. hivemind itself
cannot be imported here (its package pulls in torch), so this is a re-statement of that
protocol from the fork's proto, written on trio with p2pd's generated messages.

Two layers: :meth:`send` / :meth:`receive` move raw messages (for bad-input tests);
:meth:`run` starts a reader that answers handler requests with registered async
functions and resolves :meth:`call` futures, as hivemind does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import trio

from p2pd.control.codec import FrameDecoder, encode_frame, encode_message
from p2pd.proto import daemon_pb2 as pb

Handler = Callable[[bytes, bytes], Awaitable[bytes]]


class DaemonError(Exception):
    """The daemon answered a call with daemonError."""


class HandlerError(Exception):
    """The remote handler answered with an error."""


class Cancelled(Exception):
    """The daemon answered a call with cancel."""


async def connect(control: str) -> trio.SocketStream:
    assert control.startswith("/unix/")
    return await trio.open_unix_socket(control[len("/unix") :])


async def read_message(stream: trio.SocketStream, decoder: FrameDecoder, message):
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            message.ParseFromString(frame)
            return message
        data = await stream.receive_some(1 << 16)
        if not data:
            raise EOFError("daemon closed the connection")
        decoder.receive_data(data)


async def request(control: str, req: pb.Request) -> pb.Response:
    """One plain control request, one response."""
    stream = await connect(control)
    try:
        await stream.send_all(encode_message(req))
        return await read_message(stream, FrameDecoder(8 << 20), pb.Response())
    finally:
        await stream.aclose()


class PersistentClient:
    def __init__(self, stream: trio.SocketStream, max_size: int = 16 << 20) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_size)
        self.handlers: dict[str, Handler] = {}
        self._waiters: dict[bytes, trio.MemorySendChannel] = {}
        self._handling: dict[bytes, trio.CancelScope] = {}
        #: call ids the daemon told us to stop handling (cancel)
        self.cancelled: list[bytes] = []
        self.cancel_seen = trio.Event()
        #: responses nobody waited for
        self.unexpected: list[pb.PersistentConnectionResponse] = []
        self._lock = trio.Lock()

    @classmethod
    async def open(cls, control: str, **kw) -> PersistentClient:
        stream = await connect(control)
        client = cls(stream, **kw)
        await stream.send_all(encode_message(pb.Request(type=pb.Request.PERSISTENT_CONN_UPGRADE)))
        response = await read_message(stream, client.decoder, pb.Response())
        if response.type != pb.Response.OK:
            raise DaemonError(response.error.msg)
        return client

    async def aclose(self) -> None:
        await self.stream.aclose()

    # -- raw layer --------------------------------------------------------------------

    async def send(self, req: pb.PersistentConnectionRequest) -> None:
        async with self._lock:
            await self.stream.send_all(encode_message(req))

    async def send_raw(self, payload: bytes) -> None:
        async with self._lock:
            await self.stream.send_all(encode_frame(payload))

    async def receive(self) -> pb.PersistentConnectionResponse:
        return await read_message(self.stream, self.decoder, pb.PersistentConnectionResponse())

    # -- hivemind-like layer ----------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Read responses until the daemon closes; answer handler requests."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    resp = await self.receive()
                except (EOFError, trio.ClosedResourceError, trio.BrokenResourceError):
                    nursery.cancel_scope.cancel()
                    return
                call_id = resp.callId
                kind = resp.WhichOneof("message")
                if kind == "requestHandling":
                    nursery.start_soon(self._handle, call_id, resp.requestHandling)
                elif kind == "cancel" and call_id in self._handling:
                    self.cancelled.append(call_id)
                    self.cancel_seen.set()
                    self._handling[call_id].cancel()
                elif call_id in self._waiters:
                    self._waiters.pop(call_id).send_nowait(resp)
                else:
                    self.unexpected.append(resp)

    async def _handle(self, call_id: bytes, req: pb.CallUnaryRequest) -> None:
        with trio.CancelScope() as scope:
            self._handling[call_id] = scope
            try:
                data = await self.handlers[req.proto](req.data, req.peer)
                result = pb.CallUnaryResponse(response=data)
            except Exception as exc:  # the handler's error goes back to the caller
                result = pb.CallUnaryResponse(error=repr(exc).encode())
            await self.send(pb.PersistentConnectionRequest(callId=call_id, unaryResponse=result))
        self._handling.pop(call_id, None)

    async def roundtrip(
        self, req: pb.PersistentConnectionRequest
    ) -> pb.PersistentConnectionResponse:
        send, receive = trio.open_memory_channel(1)
        self._waiters[req.callId] = send
        await self.send(req)
        return await receive.receive()

    async def add_unary_handler(self, proto: str, handler: Handler, balanced: bool = False):
        self.handlers[proto] = handler
        resp = await self.roundtrip(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                addUnaryHandler=pb.AddUnaryHandlerRequest(proto=proto, balanced=balanced),
            )
        )
        _raise_for(resp)

    async def remove_unary_handler(self, proto: str) -> None:
        resp = await self.roundtrip(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                removeUnaryHandler=pb.RemoveUnaryHandlerRequest(proto=proto),
            )
        )
        _raise_for(resp)

    async def call(
        self,
        peer: bytes,
        proto: str,
        data: bytes,
        call_id: bytes | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """A unary call; on ``timeout`` send cancel (as hivemind's wait_for does) and raise."""
        call_id = call_id or uuid.uuid4().bytes
        req = pb.PersistentConnectionRequest(
            callId=call_id, callUnary=pb.CallUnaryRequest(peer=peer, proto=proto, data=data)
        )
        send, receive = trio.open_memory_channel(1)
        self._waiters[call_id] = send
        await self.send(req)
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            resp = await receive.receive()
        if scope.cancelled_caught:
            await self.send(pb.PersistentConnectionRequest(callId=call_id, cancel=pb.Cancel()))
            with trio.fail_after(10):  # the daemon confirms with cancel
                resp = await receive.receive()
            assert resp.HasField("cancel"), resp
            raise TimeoutError("unary call timed out")
        return _result(resp)


def _raise_for(resp: pb.PersistentConnectionResponse) -> None:
    if resp.HasField("daemonError"):
        raise DaemonError(resp.daemonError.message)
    assert resp.WhichOneof("message") is None, resp


def _result(resp: pb.PersistentConnectionResponse) -> bytes:
    kind = resp.WhichOneof("message")
    if kind == "daemonError":
        raise DaemonError(resp.daemonError.message)
    if kind == "cancel":
        raise Cancelled()
    assert kind == "callUnaryResponse", resp
    if resp.callUnaryResponse.HasField("error"):
        raise HandlerError(resp.callUnaryResponse.error.decode(errors="replace"))
    return resp.callUnaryResponse.response
