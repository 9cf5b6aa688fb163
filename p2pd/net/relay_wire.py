"""Circuit relay v2 messages (``/libp2p/circuit/relay/0.2.0/hop`` and ``.../stop``) and the
reservation voucher (a signed envelope, RFC 0002), sans-IO (libp2p spec relay/circuit-v2.md).

``HopMessage{type 1, peer 2 {id 1, addrs 2*}, reservation 3 {expire 1, addrs 2*, voucher 3},
limit 4 {duration 1, data 2}, status 5}``; ``StopMessage{type 1, peer 2, limit 3, status 4}``.
Each is uvarint-length-prefixed on its stream; after a ``STATUS: OK`` for a CONNECT the
stream carries the relayed connection's bytes. Decoders refuse (:class:`RelayWireError`) a
message over :data:`MAX_MESSAGE`, more than :data:`MAX_ADDRS` addresses and anything
malformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import P2PDError
from ..protobuf import field_bytes, field_varint, iter_fields
from ..varint import encode_uvarint

HOP = "/libp2p/circuit/relay/0.2.0/hop"
STOP = "/libp2p/circuit/relay/0.2.0/stop"
MAX_MESSAGE = 4096
MAX_ADDRS = 32

# HopMessage.Type and StopMessage.Type
RESERVE, CONNECT, STATUS = 0, 1, 2
STOP_CONNECT, STOP_STATUS = 0, 1

OK = 100
RESERVATION_REFUSED = 200
RESOURCE_LIMIT_EXCEEDED = 201
PERMISSION_DENIED = 202
CONNECTION_FAILED = 203
NO_RESERVATION = 204
MALFORMED_MESSAGE = 400
UNEXPECTED_MESSAGE = 401
STATUS_NAMES = {
    OK: "OK", RESERVATION_REFUSED: "RESERVATION_REFUSED",
    RESOURCE_LIMIT_EXCEEDED: "RESOURCE_LIMIT_EXCEEDED", PERMISSION_DENIED: "PERMISSION_DENIED",
    CONNECTION_FAILED: "CONNECTION_FAILED", NO_RESERVATION: "NO_RESERVATION",
    MALFORMED_MESSAGE: "MALFORMED_MESSAGE", UNEXPECTED_MESSAGE: "UNEXPECTED_MESSAGE",
}

#: the voucher's signed-envelope domain and payload type (the bytes 0x03 0x02, as go and js
#: write it: the multicodec number big-endian, not its varint)
VOUCHER_DOMAIN = b"libp2p-relay-rsvp"
VOUCHER_TYPE = b"\x03\x02"


class RelayWireError(P2PDError):
    """A relay message we refuse."""


@dataclass(slots=True)
class Limit:
    duration: int = 0  # seconds, 0: none
    data: int = 0  # bytes each way, 0: none


@dataclass(slots=True)
class Reservation:
    expire: int = 0
    addrs: list[bytes] = field(default_factory=list)
    voucher: bytes = b""


@dataclass(slots=True)
class Message:
    """A HopMessage (``stop=False``) or StopMessage (``stop=True``)."""

    type: int
    peer_id: bytes = b""
    peer_addrs: list[bytes] = field(default_factory=list)
    reservation: Reservation | None = None
    limit: Limit | None = None
    status: int | None = None
    stop: bool = False

    def encode(self) -> bytes:
        out = bytearray(field_varint(1, self.type))
        if self.peer_id:
            peer = field_bytes(1, self.peer_id) + b"".join(field_bytes(2, a)
                                                          for a in self.peer_addrs)
            out += field_bytes(2, peer)
        if self.reservation is not None and not self.stop:
            r = self.reservation
            body = field_varint(1, r.expire) + b"".join(field_bytes(2, a) for a in r.addrs)
            if r.voucher:
                body += field_bytes(3, r.voucher)
            out += field_bytes(3, body)
        if self.limit is not None:
            body = b""
            if self.limit.duration:
                body += field_varint(1, self.limit.duration)
            if self.limit.data:
                body += field_varint(2, self.limit.data)
            out += field_bytes(3 if self.stop else 4, body)
        if self.status is not None:
            out += field_varint(4 if self.stop else 5, self.status)
        return bytes(out)

    def framed(self) -> bytes:
        body = self.encode()
        return encode_uvarint(len(body)) + body


def _fields(data: bytes):
    if len(data) > MAX_MESSAGE:
        raise RelayWireError(f"relay message of {len(data)} bytes (limit {MAX_MESSAGE})")
    try:
        return list(iter_fields(data))
    except ValueError as exc:
        raise RelayWireError(f"malformed relay message: {exc}") from None


def _bytes(value) -> bytes:
    if not isinstance(value, bytes):
        raise RelayWireError("a field that should be length-delimited is not")
    return value


def _int(value) -> int:
    if not isinstance(value, int):
        raise RelayWireError("a field that should be a varint is not")
    return value


def _addr(value, into: list[bytes]) -> None:
    value = _bytes(value)
    if len(into) >= MAX_ADDRS:
        raise RelayWireError(f"more than {MAX_ADDRS} addresses")
    if not value or len(value) > 512:
        raise RelayWireError(f"an address of {len(value)} bytes")
    into.append(value)


def decode(data: bytes, *, stop: bool) -> Message:
    """One HopMessage (``stop=False``) or StopMessage (``stop=True``), without its prefix."""
    msg = Message(type=-1, stop=stop)
    limit_field, status_field = (3, 4) if stop else (4, 5)
    for num, _wire, value in _fields(data):
        if num == 1:
            msg.type = _int(value)
        elif num == 2:
            for n, _w, v in _fields(_bytes(value)):
                if n == 1:
                    msg.peer_id = _bytes(v)
                elif n == 2:
                    _addr(v, msg.peer_addrs)
            if not msg.peer_id:
                raise RelayWireError("a Peer without an id")
        elif num == 3 and not stop:
            r = Reservation()
            for n, _w, v in _fields(_bytes(value)):
                if n == 1:
                    r.expire = _int(v)
                elif n == 2:
                    _addr(v, r.addrs)
                elif n == 3:
                    r.voucher = _bytes(v)
            msg.reservation = r
        elif num == limit_field:
            lim = Limit()
            for n, _w, v in _fields(_bytes(value)):
                if n == 1:
                    lim.duration = _int(v)
                elif n == 2:
                    lim.data = _int(v)
            msg.limit = lim
        elif num == status_field:
            msg.status = _int(value)
    valid = (STOP_CONNECT, STOP_STATUS) if stop else (RESERVE, CONNECT, STATUS)
    if msg.type not in valid:
        raise RelayWireError(f"unknown {'stop' if stop else 'hop'} message type {msg.type}")
    return msg


# -- the reservation voucher ---------------------------------------------------------------


def voucher_payload(relay: bytes, peer: bytes, expiration: int) -> bytes:
    return field_bytes(1, relay) + field_bytes(2, peer) + field_varint(3, expiration)


def _signed_bytes(domain: bytes, payload_type: bytes, payload: bytes) -> bytes:
    return b"".join(encode_uvarint(len(p)) + p for p in (domain, payload_type, payload))


def make_voucher(public_key: bytes, sign, relay: bytes, peer: bytes, expiration: int) -> bytes:
    """The signed envelope of a reservation voucher (``public_key``: the relay's PublicKey
    protobuf; ``sign``: its signer)."""
    payload = voucher_payload(relay, peer, expiration)
    signature = sign(_signed_bytes(VOUCHER_DOMAIN, VOUCHER_TYPE, payload))
    return (field_bytes(1, public_key) + field_bytes(2, VOUCHER_TYPE) + field_bytes(3, payload)
            + field_bytes(5, signature))


def open_voucher(envelope: bytes, verify) -> tuple[bytes, bytes, int, bytes]:
    """``(relay, peer, expiration, signer's PublicKey)`` of a voucher whose signature
    ``verify(public_key, message, signature)`` accepts; RelayWireError otherwise."""
    key = ptype = payload = signature = b""
    for num, _w, value in _fields(envelope):
        if num == 1:
            key = _bytes(value)
        elif num == 2:
            ptype = _bytes(value)
        elif num == 3:
            payload = _bytes(value)
        elif num == 5:
            signature = _bytes(value)
    if ptype != VOUCHER_TYPE:
        raise RelayWireError(f"not a reservation voucher (payload type {ptype.hex()})")
    if not verify(key, _signed_bytes(VOUCHER_DOMAIN, ptype, payload), signature):
        raise RelayWireError("the voucher's signature does not verify")
    relay = peer = b""
    expiration = 0
    for num, _w, value in _fields(payload):
        if num == 1:
            relay = _bytes(value)
        elif num == 2:
            peer = _bytes(value)
        elif num == 3:
            expiration = _int(value)
    return relay, peer, expiration, key
