"""Pubsub RPCs (proto/pubsub.proto), sans-IO: bounded decoding, message signing and
verification (StrictSign), message ids.

:func:`decode_rpc` turns one frame into an :class:`RPC` of plain dataclasses, refusing (with
:class:`PubsubWireError`) anything malformed or over the limits: a frame over
``MAX_RPC``, more than ``MAX_SUBSCRIPTIONS`` subscriptions, ``MAX_MESSAGES`` messages,
``MAX_IDS`` message ids per IHAVE/IWANT in all, ``MAX_CONTROL`` control entries, topics
longer than ``MAX_TOPIC`` bytes. Message data size is the router's limit (configurable).

Signing (pubsub spec, "Message Signing"): the signature covers
``b"libp2p-pubsub:" + Message{from, data, seqno, topic}`` serialized without the
``signature`` and ``key`` fields. The author's key comes from ``key`` or, for Ed25519, from
the identity peer id in ``from``; it must match ``from``. Verification goes through
:func:`p2pd.native.verify` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from .. import native
from ..errors import P2PDError
from ..framing import FrameDecoder, encode_frame
from ..peerkeys import (
    ED25519,
    PeerKeyError,
    parse_public_key,
    peer_id_from_public_key,
    public_key_in_peer_id,
)
from ..proto import pubsub_pb2 as pb

MESHSUB_11 = "/meshsub/1.1.0"
MESHSUB_10 = "/meshsub/1.0.0"
FLOODSUB = "/floodsub/1.0.0"
PROTOCOLS = (MESHSUB_11, MESHSUB_10, FLOODSUB)

SIGN_PREFIX = b"libp2p-pubsub:"
MAX_RPC = (1 << 20) + (64 << 10)
MAX_SUBSCRIPTIONS = 1024
MAX_MESSAGES = 1024
MAX_IDS = 5000
MAX_CONTROL = 1024
MAX_TOPIC = 1024
MAX_PX_PEERS = 16


class PubsubWireError(P2PDError, ValueError):
    """Bytes that are not a valid pubsub RPC."""


class PubsubFrameDecoder(FrameDecoder):
    __slots__ = ()
    error = PubsubWireError

    def __init__(self, max_frame: int = MAX_RPC, *, memory=None) -> None:
        super().__init__(max_frame, memory=memory)


@dataclass(slots=True)
class Message:
    topic: str
    data: bytes
    from_peer: bytes = b""
    seqno: bytes = b""
    signature: bytes = b""
    key: bytes = b""

    def signed_bytes(self) -> bytes:
        m = pb.Message(topic=self.topic, data=self.data)
        if self.from_peer:
            m.__setattr__("from", self.from_peer)
        if self.seqno:
            m.seqno = self.seqno
        return SIGN_PREFIX + _deterministic(m)


@dataclass(slots=True)
class Prune:
    topic: str
    peers: list[bytes] = field(default_factory=list)
    backoff: int | None = None


@dataclass(slots=True)
class Control:
    ihave: list[tuple[str, list[bytes]]] = field(default_factory=list)
    iwant: list[bytes] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.ihave or self.iwant or self.graft or self.prune)


@dataclass(slots=True)
class RPC:
    subscriptions: list[tuple[bool, str]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    control: Control = field(default_factory=Control)

    def is_empty(self) -> bool:
        return not (self.subscriptions or self.messages) and self.control.is_empty()


def _deterministic(m) -> bytes:
    return m.SerializeToString(deterministic=True)


def _topic(t: str | bytes) -> str:
    if not isinstance(t, str):  # proto2 hands back bytes for invalid UTF-8
        raise PubsubWireError("topic is not valid UTF-8")
    if len(t.encode()) > MAX_TOPIC:
        raise PubsubWireError(f"topic longer than {MAX_TOPIC} bytes")
    return t


def decode_rpc(frame: bytes) -> RPC:
    if len(frame) > MAX_RPC:
        raise PubsubWireError(f"RPC of {len(frame)} bytes exceeds {MAX_RPC}")
    r = pb.RPC()
    try:
        r.ParseFromString(frame)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise PubsubWireError(f"not a pubsub RPC: {exc}") from None
    if len(r.subscriptions) > MAX_SUBSCRIPTIONS:
        raise PubsubWireError(f"{len(r.subscriptions)} subscriptions in one RPC")
    if len(r.publish) > MAX_MESSAGES:
        raise PubsubWireError(f"{len(r.publish)} messages in one RPC")
    out = RPC()
    for s in r.subscriptions:
        out.subscriptions.append((bool(s.subscribe), _topic(s.topicid)))
    for m in r.publish:
        out.messages.append(Message(
            topic=_topic(m.topic), data=m.data, from_peer=getattr(m, "from"), seqno=m.seqno,
            signature=m.signature, key=m.key))
    if r.HasField("control"):
        c = r.control
        n = len(c.ihave) + len(c.iwant) + len(c.graft) + len(c.prune)
        if n > MAX_CONTROL:
            raise PubsubWireError(f"{n} control entries in one RPC")
        ids = sum(len(x.messageIDs) for x in c.ihave) + sum(len(x.messageIDs) for x in c.iwant)
        if ids > MAX_IDS:
            raise PubsubWireError(f"{ids} message ids in one RPC")
        out.control.ihave = [(_topic(x.topicID), list(x.messageIDs)) for x in c.ihave]
        out.control.iwant = [i for x in c.iwant for i in x.messageIDs]
        out.control.graft = [_topic(x.topicID) for x in c.graft]
        for x in c.prune:
            if len(x.peers) > MAX_PX_PEERS:
                raise PubsubWireError(f"prune with {len(x.peers)} exchange peers")
            out.control.prune.append(Prune(_topic(x.topicID), [p.peerID for p in x.peers],
                                           x.backoff if x.HasField("backoff") else None))
    return out


def encode_rpc(rpc: RPC) -> bytes:
    """One RPC as a length-prefixed frame."""
    r = pb.RPC()
    for sub, topic in rpc.subscriptions:
        r.subscriptions.add(subscribe=sub, topicid=topic)
    for m in rpc.messages:
        pm = r.publish.add(data=m.data, topic=m.topic)
        if m.from_peer:
            setattr(pm, "from", m.from_peer)
        if m.seqno:
            pm.seqno = m.seqno
        if m.signature:
            pm.signature = m.signature
        if m.key:
            pm.key = m.key
    c = rpc.control
    if not c.is_empty():
        for topic, ids in c.ihave:
            r.control.ihave.add(topicID=topic, messageIDs=ids)
        if c.iwant:
            r.control.iwant.add(messageIDs=c.iwant)
        for topic in c.graft:
            r.control.graft.add(topicID=topic)
        for p in c.prune:
            x = r.control.prune.add(topicID=p.topic)
            for peer in p.peers:
                x.peers.add(peerID=peer)
            if p.backoff is not None:
                x.backoff = p.backoff
    return encode_frame(r.SerializeToString())


# -- ids and signatures -----------------------------------------------------------------------


def default_msg_id(m: Message) -> bytes:
    """``from || seqno`` (the spec's default, and js-libp2p's for StrictSign)."""
    return m.from_peer + m.seqno


def sign(m: Message, signing_key, public_key_proto: bytes) -> Message:
    """Sign ``m`` in place with a PyNaCl Ed25519 ``SigningKey``; ``from`` must be set."""
    m.signature = signing_key.sign(m.signed_bytes()).signature
    if public_key_in_peer_id(m.from_peer) is None:
        m.key = public_key_proto
    return m


class SignatureError(P2PDError, ValueError):
    """A message whose author or signature is not valid under StrictSign."""


def author_key(m: Message) -> bytes:
    """The author's raw Ed25519 key, checked against ``from``."""
    if not m.from_peer or not m.seqno or not m.signature:
        raise SignatureError("unsigned message (StrictSign needs from, seqno and signature)")
    proto = m.key or public_key_in_peer_id(m.from_peer)
    if proto is None:
        raise SignatureError("no public key for the author (key field empty, hashed peer id)")
    if m.key and peer_id_from_public_key(m.key) != m.from_peer:
        raise SignatureError("the key field does not match the author's peer id")
    try:
        key_type, key = parse_public_key(proto)
    except PeerKeyError as exc:
        raise SignatureError(str(exc)) from None
    if key_type != ED25519 or len(key) != 32:
        raise SignatureError(f"unsupported author key type {key_type}")
    return key


def verify(m: Message) -> None:
    """Raise :class:`SignatureError` unless ``m`` is validly signed by its author."""
    key = author_key(m)
    if len(m.seqno) != 8:
        raise SignatureError(f"seqno of {len(m.seqno)} bytes (8 expected)")
    if not native.verify(key, m.signed_bytes(), m.signature):
        raise SignatureError("bad signature")
