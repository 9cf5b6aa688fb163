"""mplex frames, sans-IO (libp2p/specs mplex/README.md, /mplex/6.7.0).

A frame is ``uvarint(stream_id << 3 | flag)``, ``uvarint(length)`` and ``length`` bytes.
Flags: NewStream 0 (its data is the stream's name), MessageReceiver 1, MessageInitiator 2,
CloseReceiver 3, CloseInitiator 4, ResetReceiver 5, ResetInitiator 6. "Initiator" flags are
sent by the side that opened the stream, "Receiver" flags by the other; so an odd flag is
about a stream the receiving side opened, and ids are separate per opener.

:class:`MplexDecoder` cuts received bytes (in any cut) into ``(stream_id, flag, data)`` and
refuses, with :class:`MplexWireError`, a bad varint, the unused flag 7 and a frame over
``max_message`` bytes (the spec's 1 MiB) before reading its body.
"""

from __future__ import annotations

from ..errors import InvalidVarint, P2PDError
from ..varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

NEW_STREAM = 0
MESSAGE_RECEIVER = 1
MESSAGE_INITIATOR = 2
CLOSE_RECEIVER = 3
CLOSE_INITIATOR = 4
RESET_RECEIVER = 5
RESET_INITIATOR = 6

#: The spec's bound on one message.
MAX_MESSAGE = 1 << 20
#: Largest stream id (the header varint holds id << 3 in at most 63 bits).
MAX_STREAM_ID = (1 << 60) - 1


class MplexWireError(P2PDError):
    """The peer broke mplex framing; the connection must end."""


def frame(stream_id: int, flag: int, data: bytes = b"") -> bytes:
    return encode_uvarint(stream_id << 3 | flag) + encode_uvarint(len(data)) + data


def _varint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """``(value, next)`` or ``None`` while the varint is incomplete."""
    end = min(len(buf), pos + MAX_VARINT_BYTES)
    for i in range(pos, end):
        if not buf[i] & 0x80:
            try:
                return decode_uvarint(buf, pos)
            except InvalidVarint as exc:
                raise MplexWireError(f"bad mplex varint: {exc}") from None
    if end - pos >= MAX_VARINT_BYTES:
        raise MplexWireError("mplex varint longer than 9 bytes")
    return None


class MplexDecoder:
    __slots__ = ("max_message", "_buf")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        pos = 0
        out: list[tuple[int, int, bytes]] = []
        while True:
            head = _varint(buf, pos)
            if head is None:
                break
            header, at = head
            flag = header & 7
            if flag == 7:
                raise MplexWireError("mplex frame with the unused flag 7")
            size = _varint(buf, at)
            if size is None:
                break
            length, at = size
            if length > self.max_message:
                raise MplexWireError(
                    f"mplex frame of {length} bytes exceeds the {self.max_message}-byte limit")
            end = at + length
            if end > len(buf):
                break
            out.append((header >> 3, flag, bytes(buf[at:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out
