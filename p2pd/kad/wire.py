"""``/ipfs/kad/1.0.0`` messages: varint-delimited protobuf (proto/kad.proto), sans-IO.

:func:`decode_message` turns one frame into a :class:`KadMessage` with every untrusted
size bounded: at most ``MAX_PEERS`` closer and provider peers (the rest are dropped,
not trusted), ``MAX_ADDRS`` addresses of at most ``MAX_ADDR_BYTES`` each per peer, and
keys, ids and record values of bounded length. Anything that is not a valid message
raises :class:`KadWireError` naming the problem; a frame longer than ``MAX_MESSAGE`` is
refused by the framing before it is buffered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from google.protobuf.message import DecodeError

from ..errors import P2PDError
from ..framing import FrameDecoder, encode_frame
from ..proto import kad_pb2 as pb

PROTOCOL = "/ipfs/kad/1.0.0"
MAX_MESSAGE = 4 << 20
MAX_PEERS = 64
MAX_ADDRS = 16
MAX_ADDR_BYTES = 512
MAX_ID_BYTES = 128
MAX_KEY_BYTES = 2048
MAX_VALUE_BYTES = 1 << 20


class KadWireError(P2PDError, ValueError):
    """A peer sent bytes that are not a valid Kademlia message."""


class MessageType(IntEnum):
    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class Connection(IntEnum):
    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


@dataclass(slots=True)
class PeerInfo:
    id: bytes
    addrs: list[bytes] = field(default_factory=list)
    connection: Connection = Connection.NOT_CONNECTED


@dataclass(slots=True)
class Record:
    key: bytes
    value: bytes
    time_received: str = ""


@dataclass(slots=True)
class KadMessage:
    type: MessageType
    key: bytes = b""
    record: Record | None = None
    closer: list[PeerInfo] = field(default_factory=list)
    providers: list[PeerInfo] = field(default_factory=list)


class KadFrameDecoder(FrameDecoder):
    __slots__ = ()
    error = KadWireError

    def __init__(self, max_frame: int = MAX_MESSAGE, *, memory=None) -> None:
        super().__init__(max_frame, memory=memory)


def _peers(items) -> list[PeerInfo]:
    out = []
    for p in items:
        if len(out) == MAX_PEERS:
            break
        if not p.id or len(p.id) > MAX_ID_BYTES:
            continue  # an unusable entry is skipped, the rest still count
        addrs = [a for a in p.addrs if 0 < len(a) <= MAX_ADDR_BYTES][:MAX_ADDRS]
        conn = Connection(p.connection) if p.connection in Connection._value2member_map_ else (
            Connection.NOT_CONNECTED)
        out.append(PeerInfo(bytes(p.id), [bytes(a) for a in addrs], conn))
    return out


def decode_message(frame: bytes) -> KadMessage:
    if len(frame) > MAX_MESSAGE:
        raise KadWireError(f"message of {len(frame)} bytes exceeds {MAX_MESSAGE}")
    msg = pb.Message()
    try:
        msg.ParseFromString(frame)
    except DecodeError as exc:
        raise KadWireError(f"not a Kademlia message: {exc}") from None
    if msg.type not in MessageType._value2member_map_:
        raise KadWireError(f"unknown message type {msg.type}")
    if len(msg.key) > MAX_KEY_BYTES:
        raise KadWireError(f"key of {len(msg.key)} bytes exceeds {MAX_KEY_BYTES}")
    record = None
    if msg.HasField("record"):
        if len(msg.record.key) > MAX_KEY_BYTES or len(msg.record.value) > MAX_VALUE_BYTES:
            raise KadWireError("record key or value too large")
        record = Record(bytes(msg.record.key), bytes(msg.record.value), msg.record.timeReceived)
    return KadMessage(MessageType(msg.type), bytes(msg.key), record, _peers(msg.closerPeers),
                      _peers(msg.providerPeers))


def encode_message(m: KadMessage) -> bytes:
    """One frame (length prefix included)."""
    msg = pb.Message(type=int(m.type), key=m.key)
    if m.record is not None:
        msg.record.key = m.record.key
        msg.record.value = m.record.value
        msg.record.timeReceived = m.record.time_received
    for dst, peers in ((msg.closerPeers, m.closer), (msg.providerPeers, m.providers)):
        for p in peers:
            dst.add(id=p.id, addrs=p.addrs, connection=int(p.connection))
    return encode_frame(msg.SerializeToString())
