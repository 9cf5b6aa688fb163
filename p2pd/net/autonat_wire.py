"""AutoNAT v1 (``/libp2p/autonat/1.0.0``) and v2 (``/libp2p/autonat/2/dial-request``,
``/libp2p/autonat/2/dial-back``) messages, sans-IO (libp2p specs autonat-v1.md, autonat-v2.md).

Every message is uvarint-length-prefixed on its stream. Decoders refuse (with
:class:`AutonatWireError`) a message over :data:`MAX_MESSAGE`, more than :data:`MAX_ADDRS`
addresses, an address over :data:`MAX_ADDR_LEN` bytes, and anything malformed. Fields of a
newer version are skipped.

v1: ``Message{type 1, dial 2 {peer 1 {id 1, addrs 2*}}, dialResponse 3 {status 1,
statusText 2, addr 3}}``.
v2: ``Message{oneof dialRequest 1 {addrs 1*, nonce 2 fixed64}, dialResponse 2 {status 1,
addrIdx 2, dialStatus 3}, dialDataRequest 3 {addrIdx 1, numBytes 2}, dialDataResponse 4
{data 1}}``; ``DialBack{nonce 1 fixed64}``; ``DialBackResponse{status 1}``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import P2PDError
from ..protobuf import field_bytes, field_varint, iter_fields
from ..varint import encode_uvarint

V1 = "/libp2p/autonat/1.0.0"
V2_REQUEST = "/libp2p/autonat/2/dial-request"
V2_BACK = "/libp2p/autonat/2/dial-back"

MAX_MESSAGE = 8 * 1024
MAX_ADDRS = 64
MAX_ADDR_LEN = 512
#: v2's DialDataResponse carries at most this much per message
MAX_DIAL_DATA = 4096

# v1
DIAL, DIAL_RESPONSE = 0, 1
OK, E_DIAL_ERROR, E_DIAL_REFUSED, E_BAD_REQUEST, E_INTERNAL_ERROR = 0, 100, 101, 200, 300
V1_STATUSES = {OK, E_DIAL_ERROR, E_DIAL_REFUSED, E_BAD_REQUEST, E_INTERNAL_ERROR}

# v2 DialResponse.status and DialStatus
R_INTERNAL_ERROR, R_REQUEST_REJECTED, R_DIAL_REFUSED, R_OK = 0, 100, 101, 200
D_UNUSED, D_DIAL_ERROR, D_DIAL_BACK_ERROR, D_OK = 0, 100, 101, 200


class AutonatWireError(P2PDError):
    """An AutoNAT message we refuse."""


def framed(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


def _fields(data: bytes):
    if len(data) > MAX_MESSAGE:
        raise AutonatWireError(f"autonat message of {len(data)} bytes (limit {MAX_MESSAGE})")
    try:
        return list(iter_fields(data))
    except ValueError as exc:
        raise AutonatWireError(f"malformed autonat message: {exc}") from None


def _addr(value, addrs: list[bytes]) -> None:
    if not isinstance(value, bytes):
        raise AutonatWireError("an address that is not bytes")
    if len(addrs) >= MAX_ADDRS:
        raise AutonatWireError(f"more than {MAX_ADDRS} addresses")
    if not value or len(value) > MAX_ADDR_LEN:
        raise AutonatWireError(f"an address of {len(value)} bytes")
    addrs.append(value)


def _int(value) -> int:
    if not isinstance(value, int):
        raise AutonatWireError("a number field that is not a varint")
    return value


def _sub(value) -> bytes:
    if not isinstance(value, bytes):
        raise AutonatWireError("a message field that is not length-delimited")
    return value


def field_fixed64(num: int, value: int) -> bytes:
    return encode_uvarint(num << 3 | 1) + struct.pack("<Q", value)


# -- v1 --------------------------------------------------------------------------------------


@dataclass(slots=True)
class V1Message:
    type: int = DIAL
    peer_id: bytes = b""
    addrs: list[bytes] = field(default_factory=list)
    status: int | None = None
    status_text: str = ""
    addr: bytes = b""

    def encode(self) -> bytes:
        out = field_varint(1, self.type)
        if self.type == DIAL:
            peer = field_bytes(1, self.peer_id) + b"".join(field_bytes(2, a) for a in self.addrs)
            out += field_bytes(2, field_bytes(1, peer))
        else:
            resp = field_varint(1, self.status or 0)
            if self.status_text:
                resp += field_bytes(2, self.status_text.encode())
            if self.addr:
                resp += field_bytes(3, self.addr)
            out += field_bytes(3, resp)
        return out


def decode_v1(data: bytes) -> V1Message:
    msg = V1Message(type=-1)
    for num, _wire, value in _fields(data):
        if num == 1:
            msg.type = _int(value)
        elif num == 2:
            for n2, _w, v2 in _fields(_sub(value)):
                if n2 != 1:
                    continue
                for n3, _w3, v3 in _fields(_sub(v2)):
                    if n3 == 1:
                        msg.peer_id = _sub(v3)
                    elif n3 == 2:
                        _addr(v3, msg.addrs)
        elif num == 3:
            for n2, _w, v2 in _fields(_sub(value)):
                if n2 == 1:
                    msg.status = _int(v2)
                elif n2 == 2:
                    try:
                        msg.status_text = _sub(v2).decode()[:512]
                    except UnicodeDecodeError:
                        raise AutonatWireError("statusText is not UTF-8") from None
                elif n2 == 3:
                    msg.addr = _sub(v2)[:MAX_ADDR_LEN]
    if msg.type not in (DIAL, DIAL_RESPONSE):
        raise AutonatWireError(f"unknown autonat v1 message type {msg.type}")
    if msg.type == DIAL_RESPONSE and msg.status not in V1_STATUSES:
        raise AutonatWireError(f"unknown autonat v1 status {msg.status}")
    return msg


# -- v2 --------------------------------------------------------------------------------------


@dataclass(slots=True)
class DialRequest:
    addrs: list[bytes]
    nonce: int


@dataclass(slots=True)
class DialResponse:
    status: int
    addr_idx: int = 0
    dial_status: int = D_UNUSED


@dataclass(slots=True)
class DialDataRequest:
    addr_idx: int
    num_bytes: int


@dataclass(slots=True)
class DialDataResponse:
    data: bytes


V2Message = DialRequest | DialResponse | DialDataRequest | DialDataResponse


def encode_v2(msg: V2Message) -> bytes:
    if isinstance(msg, DialRequest):
        body = b"".join(field_bytes(1, a) for a in msg.addrs) + field_fixed64(2, msg.nonce)
        return field_bytes(1, body)
    if isinstance(msg, DialResponse):
        body = field_varint(1, msg.status) + field_varint(2, msg.addr_idx)
        body += field_varint(3, msg.dial_status)
        return field_bytes(2, body)
    if isinstance(msg, DialDataRequest):
        return field_bytes(3, field_varint(1, msg.addr_idx) + field_varint(2, msg.num_bytes))
    return field_bytes(4, field_bytes(1, msg.data))


def _fixed64(value) -> int:
    if not isinstance(value, bytes) or len(value) != 8:
        raise AutonatWireError("a nonce that is not fixed64")
    return struct.unpack("<Q", value)[0]


def decode_v2(data: bytes) -> V2Message:
    """One ``Message`` of the dial-request stream: exactly one of its four kinds."""
    found: V2Message | None = None
    for num, _wire, value in _fields(data):
        if num not in (1, 2, 3, 4):
            continue
        if found is not None:
            raise AutonatWireError("an autonat v2 message with more than one kind")
        inner = _fields(_sub(value))
        if num == 1:
            addrs: list[bytes] = []
            nonce = None
            for n, _w, v in inner:
                if n == 1:
                    _addr(v, addrs)
                elif n == 2:
                    nonce = _fixed64(v)
            if nonce is None:
                raise AutonatWireError("a DialRequest without a nonce")
            found = DialRequest(addrs, nonce)
        elif num == 2:
            resp = DialResponse(R_INTERNAL_ERROR)
            for n, _w, v in inner:
                if n == 1:
                    resp.status = _int(v)
                elif n == 2:
                    resp.addr_idx = _int(v)
                elif n == 3:
                    resp.dial_status = _int(v)
            found = resp
        elif num == 3:
            req = DialDataRequest(0, 0)
            for n, _w, v in inner:
                if n == 1:
                    req.addr_idx = _int(v)
                elif n == 2:
                    req.num_bytes = _int(v)
            found = req
        else:
            chunk = b""
            for n, _w, v in inner:
                if n == 1:
                    chunk = _sub(v)
            if len(chunk) > MAX_DIAL_DATA:
                raise AutonatWireError(f"dial data of {len(chunk)} bytes (limit {MAX_DIAL_DATA})")
            found = DialDataResponse(chunk)
    if found is None:
        raise AutonatWireError("an empty autonat v2 message")
    return found


def encode_dial_back(nonce: int) -> bytes:
    return field_fixed64(1, nonce)


def decode_dial_back(data: bytes) -> int:
    nonce = None
    for num, _wire, value in _fields(data):
        if num == 1:
            nonce = _fixed64(value)
    if nonce is None:
        raise AutonatWireError("a DialBack without a nonce")
    return nonce


def encode_dial_back_response() -> bytes:
    return field_varint(1, 0)


def decode_dial_back_response(data: bytes) -> int:
    status = 0
    for num, _wire, value in _fields(data):
        if num == 1:
            status = _int(value)
    return status
