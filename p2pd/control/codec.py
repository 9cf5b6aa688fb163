"""Sans-IO codec for the libp2p daemon control protocol.

Every message on the control socket is a protobuf preceded by its length as an
unsigned varint (go-libp2p-daemon specs/CONTROL.md). :class:`FrameDecoder` is fed
bytes as they arrive and hands out whole frames; it never touches a socket, so the
trio server (:mod:`p2pd.control.server`), the CLI client and the fuzz tests share it.

The length is untrusted: a frame longer than ``max_frame`` is refused before any of
its body is buffered, so a client announcing 2**62 bytes costs nothing.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from ..errors import InvalidVarint, P2PDError
from ..proto import daemon_pb2 as pb
from ..varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

#: Largest control message accepted by default. Requests are small (a CONNECT with
#: a few dozen addresses is a few KiB); 4 MiB leaves room for extensions.
DEFAULT_MAX_FRAME = 4 << 20


class ControlProtocolError(P2PDError, ValueError):
    """A control-socket peer sent bytes that are not a valid daemon-protocol message."""


class FrameDecoder:
    """Split a byte stream into varint-length-delimited frames.

    Feed bytes with :meth:`receive_data`, take frames with :meth:`next_frame` until it
    returns ``None`` (more bytes needed). After the last frame of the protocol
    exchange (for example a STREAM_OPEN request), :meth:`take_unconsumed` returns the
    bytes that already arrived behind it: they belong to the piped stream.
    """

    __slots__ = ("_buf", "_max_frame", "_eof")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self._buf = bytearray()
        self._max_frame = max_frame
        self._eof = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; an empty ``data`` means the peer closed its side."""
        if not data:
            self._eof = True
        else:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """Return the next complete frame, or ``None`` if more bytes are needed.

        Raises :class:`ControlProtocolError` for a malformed or oversized length
        prefix, and for a frame cut short by end of stream.
        """
        buf = self._buf
        header_end = -1
        for i in range(min(len(buf), MAX_VARINT_BYTES)):
            if not buf[i] & 0x80:
                header_end = i + 1
                break
        if header_end < 0:
            if len(buf) >= MAX_VARINT_BYTES:
                raise ControlProtocolError("message length prefix is longer than 9 bytes")
            if self._eof and buf:
                raise ControlProtocolError("stream ended inside a message length prefix")
            return None
        try:
            length, offset = decode_uvarint(buf[:header_end])
        except InvalidVarint as exc:
            raise ControlProtocolError(f"invalid message length prefix: {exc}") from None
        if length > self._max_frame:
            raise ControlProtocolError(
                f"message of {length} bytes exceeds the limit of {self._max_frame} bytes"
            )
        end = offset + length
        if len(buf) < end:
            if self._eof:
                raise ControlProtocolError(
                    f"stream ended after {len(buf) - offset} of {length} message bytes"
                )
            return None
        frame = bytes(buf[offset:end])
        del buf[:end]
        return frame

    def take_unconsumed(self) -> bytes:
        """Return and forget every buffered byte not yet returned as a frame."""
        data = bytes(self._buf)
        self._buf.clear()
        return data


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its varint length."""
    return encode_uvarint(len(payload)) + payload


def encode_message(message) -> bytes:
    """Serialize a protobuf message as one frame."""
    return encode_frame(message.SerializeToString())


def decode_request(frame: bytes) -> pb.Request:
    """Parse a Request; refuse bytes that are not one or that name no known type."""
    request = pb.Request()
    try:
        request.ParseFromString(frame)
    except DecodeError as exc:
        raise ControlProtocolError(f"request is not a valid protobuf Request: {exc}") from None
    if not request.HasField("type"):
        raise ControlProtocolError("request has no type")
    if request.type not in pb.Request.Type.values():
        raise ControlProtocolError(f"unknown request type {request.type}")
    return request


def decode_response(frame: bytes) -> pb.Response:
    """Parse a Response (used by the CLI client)."""
    response = pb.Response()
    try:
        response.ParseFromString(frame)
    except DecodeError as exc:
        raise ControlProtocolError(f"response is not a valid protobuf Response: {exc}") from None
    return response


def ok_response(**fields) -> pb.Response:
    """A Response of type OK carrying ``fields``."""
    return pb.Response(type=pb.Response.OK, **fields)


def error_response(message: str) -> pb.Response:
    """A Response of type ERROR; the message tells the client what was wrong."""
    return pb.Response(type=pb.Response.ERROR, error=pb.ErrorResponse(msg=message))
