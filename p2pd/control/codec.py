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

from .. import framing
from ..errors import P2PDError
from ..proto import daemon_pb2 as pb

#: Largest control message accepted by default. Requests are small (a CONNECT with
#: a few dozen addresses is a few KiB); 4 MiB leaves room for extensions.
DEFAULT_MAX_FRAME = 4 << 20


class ControlProtocolError(P2PDError, ValueError):
    """A control-socket peer sent bytes that are not a valid daemon-protocol message."""


class FrameDecoder(framing.FrameDecoder):
    """Frames of the control protocol; malformed input raises :class:`ControlProtocolError`."""

    __slots__ = ()
    error = ControlProtocolError


encode_frame = framing.encode_frame


def encode_message(message) -> bytes:
    """Serialize a protobuf message as one frame."""
    return encode_frame(message.SerializeToString())


_REQUEST_TYPES = frozenset(pb.Request.Type.values())


def decode_request(frame: bytes) -> pb.Request:
    """Parse a Request; refuse bytes that are not one or that name no known type."""
    request = pb.Request()
    try:
        request.ParseFromString(frame)
    except DecodeError as exc:
        raise ControlProtocolError(f"request is not a valid protobuf Request: {exc}") from None
    if not request.HasField("type"):
        raise ControlProtocolError("request has no type")
    if request.type not in _REQUEST_TYPES:
        raise ControlProtocolError(f"unknown request type {request.type}")
    return request


def is_persistent_upgrade(request: pb.Request) -> bool:
    """Type 9 without a ``peerStore`` payload: the fork's PERSISTENT_CONN_UPGRADE.

    p2pclient's PEERSTORE is type 9 too, always with ``peerStore`` set.
    """
    return request.type == pb.Request.PERSISTENT_CONN_UPGRADE and not request.HasField("peerStore")


def decode_remove_stream_handler(frame: bytes) -> pb.RemoveStreamHandlerRequest:
    """The fork's REMOVE_STREAM_HANDLER (type 10) request, carried in field 9.

    :class:`pb.Request` reads field 9 as ``peerStore``, so the frame is parsed again with
    the fork's layout.
    """
    message = pb.RemoveStreamHandlerFrame()
    try:
        message.ParseFromString(frame)
    except DecodeError as exc:
        raise ControlProtocolError(
            f"REMOVE_STREAM_HANDLER request is not a valid protobuf message: {exc}"
        ) from None
    if not message.HasField("removeStreamHandler"):
        raise ControlProtocolError(
            "REMOVE_STREAM_HANDLER request without a RemoveStreamHandlerRequest"
        )
    return message.removeStreamHandler


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
