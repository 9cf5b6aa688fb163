"""Sans-IO parts of the hivemind fork's persistent control connection.

After ``PERSISTENT_CONN_UPGRADE`` a control connection carries many unary calls at once:
the client sends ``PersistentConnectionRequest`` frames, the daemon answers with
``PersistentConnectionResponse`` frames, each naming the 16-byte call id (a UUID) the
client chose (learning-at-home/go-libp2p-daemon ``persistent_stream.go``).

Frames are bounded by ``-persistentConnMaxMsgSize``. The go daemon drops the whole
connection on a frame over the limit; :class:`PersistentFrameDecoder` instead skips the
frame's body without buffering it and reports its call id (the first field, as every
protobuf encoder writes fields in order), so the sender gets a precise error for that one
call and the connection goes on. Nothing here touches a socket; the trio side is
:mod:`p2pd.control.unary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError

from .. import framing
from ..errors import InvalidVarint
from ..proto import daemon_pb2 as pb
from ..varint import MAX_VARINT_BYTES, decode_uvarint
from .codec import ControlProtocolError

CALL_ID_BYTES = 16
#: The call id put on a reply to a frame whose own call id is unreadable: the nil UUID,
#: so clients that parse every call id as a UUID (hivemind does) still can.
NIL_CALL_ID = bytes(CALL_ID_BYTES)
#: Bytes of an oversized frame's body kept to find its call id (tag + length + 16 bytes).
_HEAD_BYTES = 2 + 1 + CALL_ID_BYTES

DEFAULT_MAX_MSG_SIZE = 4 << 20


class PersistentProtocolError(ControlProtocolError):
    """A persistent-connection frame that is not a valid request.

    ``call_id`` is the frame's call id when it could be read (the reply names it),
    else :data:`NIL_CALL_ID`.
    """

    def __init__(self, message: str, call_id: bytes = NIL_CALL_ID) -> None:
        super().__init__(message)
        self.call_id = call_id


class StreamFrameDecoder(framing.FrameDecoder):
    """Frames of a unary libp2p stream between daemons: over the limit is fatal there."""

    __slots__ = ()
    error = PersistentProtocolError


@dataclass(slots=True, frozen=True)
class Frame:
    """A whole frame within the size limit."""

    payload: bytes


@dataclass(slots=True, frozen=True)
class Oversized:
    """A frame over the limit, skipped; ``call_id`` is ``None`` when unreadable."""

    length: int
    call_id: bytes | None


class PersistentFrameDecoder:
    """Varint-delimited frames; a frame over ``max_size`` becomes :class:`Oversized`.

    Feed bytes with :meth:`receive_data` (``b""`` at end of stream), take events with
    :meth:`next_event` until it returns ``None``. A bad length prefix, or a stream ending
    inside a frame, raises :class:`PersistentProtocolError`: past that the framing is lost.
    Memory held is at most one frame within the limit plus a few bytes.
    """

    __slots__ = ("_buf", "_max", "_eof", "_skip_left", "_skip_len", "_skip_head")

    def __init__(self, max_size: int = DEFAULT_MAX_MSG_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be positive")
        self._buf = bytearray()
        self._max = max_size
        self._eof = False
        self._skip_left = 0
        self._skip_len = 0
        self._skip_head = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            self._eof = True
            return
        if self._skip_left:
            data = self._skip(memoryview(data))
        self._buf += data

    def _skip(self, data: memoryview) -> memoryview:
        """Swallow the oversized frame's body from ``data``; return what follows it."""
        take = min(self._skip_left, len(data))
        room = _HEAD_BYTES - len(self._skip_head)
        if room > 0:
            self._skip_head += data[: min(room, take)]
        self._skip_left -= take
        return data[take:]

    def next_event(self) -> Frame | Oversized | None:
        if self._skip_left:
            if self._eof:
                raise PersistentProtocolError(
                    f"stream ended inside an oversized message of {self._skip_len} bytes"
                )
            return None
        if self._skip_len:  # an oversized frame was skipped completely
            event = Oversized(self._skip_len, call_id_of(bytes(self._skip_head)))
            self._skip_len = 0
            self._skip_head.clear()
            return event
        buf = self._buf
        header_end = -1
        for i in range(min(len(buf), MAX_VARINT_BYTES)):
            if not buf[i] & 0x80:
                header_end = i + 1
                break
        if header_end < 0:
            if len(buf) >= MAX_VARINT_BYTES:
                raise PersistentProtocolError("message length prefix is longer than 9 bytes")
            if self._eof and buf:
                raise PersistentProtocolError("stream ended inside a message length prefix")
            return None
        try:
            length, offset = decode_uvarint(buf[:header_end])
        except InvalidVarint as exc:
            raise PersistentProtocolError(f"invalid message length prefix: {exc}") from None
        if length > self._max:
            rest = memoryview(bytes(buf[offset:]))
            buf.clear()
            self._skip_len = length
            self._skip_left = length
            self._buf += self._skip(rest)
            return self.next_event()
        end = offset + length
        if len(buf) < end:
            if self._eof:
                raise PersistentProtocolError(
                    f"stream ended after {len(buf) - offset} of {length} message bytes"
                )
            return None
        frame = bytes(buf[offset:end])
        del buf[:end]
        return Frame(frame)

    @property
    def max_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held: never more than one frame within the limit, plus its header."""
        return len(self._buf) + len(self._skip_head)


def call_id_of(head: bytes) -> bytes | None:
    """The call id from the first bytes of a request or response, if field 1 comes first."""
    if len(head) < 2 or head[0] != 0x0A:  # field 1, length-delimited
        return None
    try:
        length, offset = decode_uvarint(head, 1)
    except InvalidVarint:
        return None
    if length != CALL_ID_BYTES or len(head) < offset + length:
        return None
    return bytes(head[offset : offset + length])


def decode_persistent_request(frame: bytes) -> pb.PersistentConnectionRequest:
    """Parse and check one client frame: a 16-byte call id and exactly one message."""
    request = pb.PersistentConnectionRequest()
    try:
        request.ParseFromString(frame)
    except DecodeError as exc:
        raise PersistentProtocolError(
            f"message is not a valid PersistentConnectionRequest: {exc}",
            call_id_of(frame[:_HEAD_BYTES]) or NIL_CALL_ID,
        ) from None
    if len(request.callId) != CALL_ID_BYTES:
        raise PersistentProtocolError(
            f"callId must be {CALL_ID_BYTES} bytes (a UUID), not {len(request.callId)}"
        )
    kind = request.WhichOneof("message")
    if kind is None:
        raise PersistentProtocolError(
            "PersistentConnectionRequest names no message (addUnaryHandler, "
            "removeUnaryHandler, callUnary, unaryResponse or cancel)",
            request.callId,
        )
    if kind == "callUnary":
        cu = request.callUnary
        if not cu.proto:
            raise PersistentProtocolError("callUnary names no protocol", request.callId)
        if not cu.peer:
            raise PersistentProtocolError("callUnary names no peer", request.callId)
    if kind in ("addUnaryHandler", "removeUnaryHandler"):
        if not getattr(request, kind).proto:
            raise PersistentProtocolError(f"{kind} names no protocol", request.callId)
    return request


def decode_remote_call(frame: bytes) -> pb.PersistentConnectionRequest:
    """Parse the frame a caller's daemon sends on a unary stream: a callUnary."""
    request = pb.PersistentConnectionRequest()
    try:
        request.ParseFromString(frame)
    except DecodeError as exc:
        raise PersistentProtocolError(
            f"unary stream: not a PersistentConnectionRequest: {exc}"
        ) from None
    if len(request.callId) != CALL_ID_BYTES or not request.HasField("callUnary"):
        raise PersistentProtocolError("unary stream: expected a callUnary with a 16-byte call id")
    return request


def decode_remote_answer(frame: bytes) -> pb.CallUnaryResponse:
    """Parse the handler daemon's answer on a unary stream: a unaryResponse."""
    answer = pb.PersistentConnectionRequest()
    try:
        answer.ParseFromString(frame)
    except DecodeError as exc:
        raise PersistentProtocolError(
            f"the remote daemon's answer is not a PersistentConnectionRequest: {exc}"
        ) from None
    if not answer.HasField("unaryResponse"):
        raise PersistentProtocolError("the remote daemon answered without a unaryResponse")
    return answer.unaryResponse


# -- responses to the client --------------------------------------------------------------


def ok(call_id: bytes) -> pb.PersistentConnectionResponse:
    """Success with nothing to return (handler added or removed)."""
    return pb.PersistentConnectionResponse(callId=call_id)


def daemon_error(call_id: bytes, message: str) -> pb.PersistentConnectionResponse:
    return pb.PersistentConnectionResponse(
        callId=call_id, daemonError=pb.DaemonError(message=message)
    )


def cancelled(call_id: bytes) -> pb.PersistentConnectionResponse:
    return pb.PersistentConnectionResponse(callId=call_id, cancel=pb.Cancel())


def unary_result(call_id: bytes, result: pb.CallUnaryResponse) -> pb.PersistentConnectionResponse:
    return pb.PersistentConnectionResponse(callId=call_id, callUnaryResponse=result)


def request_handling(call_id: bytes, call: pb.CallUnaryRequest) -> pb.PersistentConnectionResponse:
    return pb.PersistentConnectionResponse(callId=call_id, requestHandling=call)


def too_big(length: int, limit: int) -> str:
    return (
        f"message of {length} bytes exceeds the persistent connection limit of {limit} bytes "
        "(-persistentConnMaxMsgSize); it was dropped"
    )


# -- balanced handlers --------------------------------------------------------------------

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """The handlers of one protocol, taken in turn (the fork's balanced handlers)."""

    __slots__ = ("_items", "_next")

    def __init__(self, first: T | None = None) -> None:
        self._items: list[T] = [] if first is None else [first]
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self):
        return iter(list(self._items))

    def append(self, item: T) -> None:
        self._items.append(item)

    def remove(self, item: T) -> bool:
        """Remove ``item``; ``False`` if absent. The turn order of the others is kept."""
        try:
            index = self._items.index(item)
        except ValueError:
            return False
        del self._items[index]
        if index < self._next:
            self._next -= 1
        if self._next >= len(self._items):
            self._next = 0
        return True

    def take(self) -> list[T]:
        """Every item, starting with the one whose turn it is; the turn moves on by one."""
        items = self._items
        if not items:
            return []
        start = self._next
        self._next = (start + 1) % len(items)
        return items[start:] + items[:start]
