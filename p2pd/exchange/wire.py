"""Bitswap messages (proto/bitswap.proto), sans-IO, with every untrusted size bounded.

:func:`decode_message` turns one frame into a :class:`BitswapMessage`:

* wantlist entries (at most ``MAX_ENTRIES``; a CID that does not parse makes the whole
  message invalid, as a peer that sends one is broken or hostile);
* blocks: 1.0.0 ``blocks`` (raw bytes, CIDv0 implied) and 1.1.0+ ``payload`` (a CID
  prefix + data). The CID of a received block is *derived* from its bytes: the digests
  of every block of a message are computed in one native batch call, so the CID a block
  is filed under always names exactly its bytes; the engine then keeps only blocks it
  asked for. Only sha2-256 and identity prefixes are accepted;
* block presences (HAVE / DONT_HAVE) of at most ``MAX_ENTRIES`` CIDs.

Anything malformed raises :class:`BitswapWireError` saying what was wrong. A frame longer
than ``MAX_MESSAGE`` is refused by the framing before its body is buffered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from .. import native
from ..blocks.cid import CID
from ..blocks.multicodec import Codec, HashCode
from ..errors import InvalidCID, InvalidVarint, P2PDError
from ..framing import FrameDecoder, encode_frame
from ..proto import bitswap_pb2 as pb
from ..varint import decode_uvarint, encode_uvarint

PROTOCOL_120 = "/ipfs/bitswap/1.2.0"
PROTOCOL_110 = "/ipfs/bitswap/1.1.0"
PROTOCOL_100 = "/ipfs/bitswap/1.0.0"
PROTOCOL_ANY = "/ipfs/bitswap"
#: Preference order when we open a stream (Helia and kubo speak 1.2.0).
PROTOCOLS = (PROTOCOL_120, PROTOCOL_110, PROTOCOL_100)

#: Largest message accepted or sent (Helia's and kubo's limit: 4 MiB).
MAX_MESSAGE = 4 << 20
#: Largest block in a message (the network-wide convention is 2 MiB).
MAX_BLOCK = 2 << 20
#: Most wantlist entries / presences / blocks in one message.
MAX_ENTRIES = 8192
#: Payload budget of one outgoing message (leaves room for presences and framing).
SEND_BUDGET = MAX_MESSAGE - (64 << 10)


class BitswapWireError(P2PDError, ValueError):
    """A peer sent bytes that are not a valid Bitswap message."""


@dataclass(slots=True)
class WantEntry:
    cid: CID
    priority: int = 1
    cancel: bool = False
    want_have: bool = False  # False: want the block
    send_dont_have: bool = False


@dataclass(slots=True)
class BitswapMessage:
    wants: list[WantEntry] = field(default_factory=list)
    full: bool = False
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    haves: list[CID] = field(default_factory=list)
    dont_haves: list[CID] = field(default_factory=list)
    pending_bytes: int = 0

    def is_empty(self) -> bool:
        return not (self.wants or self.full or self.blocks or self.haves or self.dont_haves)


class BitswapFrameDecoder(FrameDecoder):
    __slots__ = ()
    error = BitswapWireError

    def __init__(self, max_frame: int = MAX_MESSAGE, *, memory=None) -> None:
        super().__init__(max_frame, memory=memory)


# -- CID prefixes -----------------------------------------------------------------------


def cid_prefix(cid: CID) -> bytes:
    """``varint(version) varint(codec) varint(hash code) varint(digest length)``."""
    code, n = _mh_header(cid.multihash)
    return encode_uvarint(cid.version) + encode_uvarint(int(cid.codec)) + encode_uvarint(code) \
        + encode_uvarint(n)


def _mh_header(mh: bytes) -> tuple[int, int]:
    code, pos = decode_uvarint(mh, 0)
    n, _ = decode_uvarint(mh, pos)
    return code, n


def parse_prefix(prefix: bytes) -> tuple[int, int, int, int]:
    try:
        version, pos = decode_uvarint(prefix, 0)
        codec, pos = decode_uvarint(prefix, pos)
        code, pos = decode_uvarint(prefix, pos)
        length, pos = decode_uvarint(prefix, pos)
    except (InvalidVarint, IndexError) as exc:
        raise BitswapWireError(f"malformed CID prefix: {exc}") from None
    if pos != len(prefix):
        raise BitswapWireError("trailing bytes after the CID prefix")
    if version not in (0, 1):
        raise BitswapWireError(f"CID prefix with unsupported version {version}")
    if version == 0 and (codec != Codec.DAG_PB or code != HashCode.SHA2_256 or length != 32):
        raise BitswapWireError("CIDv0 prefix must be dag-pb, sha2-256, 32 bytes")
    if code == HashCode.SHA2_256:
        if length != 32:
            raise BitswapWireError(f"sha2-256 prefix with digest length {length}")
    elif code != HashCode.IDENTITY:
        raise BitswapWireError(f"unsupported multihash code 0x{code:x} in a block prefix")
    return version, codec, code, length


# -- decoding ---------------------------------------------------------------------------


def decode_message(frame: bytes) -> BitswapMessage:
    if len(frame) > MAX_MESSAGE:
        raise BitswapWireError(f"message of {len(frame)} bytes exceeds {MAX_MESSAGE}")
    msg = pb.Message()
    try:
        msg.ParseFromString(frame)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BitswapWireError(f"not a Bitswap message: {exc}") from None
    out = BitswapMessage(pending_bytes=max(0, msg.pendingBytes))
    if msg.HasField("wantlist"):
        entries = msg.wantlist.entries
        if len(entries) > MAX_ENTRIES:
            raise BitswapWireError(f"wantlist of {len(entries)} entries exceeds {MAX_ENTRIES}")
        out.full = msg.wantlist.full
        for e in entries:
            out.wants.append(WantEntry(
                cid=_cid(e.block, "wantlist entry"),
                priority=e.priority,
                cancel=e.cancel,
                want_have=e.wantType == pb.Message.Wantlist.Have,
                send_dont_have=e.sendDontHave,
            ))
    if len(msg.blockPresences) > MAX_ENTRIES:
        raise BitswapWireError(f"{len(msg.blockPresences)} block presences exceed {MAX_ENTRIES}")
    for p in msg.blockPresences:
        cid = _cid(p.cid, "block presence")
        (out.dont_haves if p.type == pb.Message.DontHave else out.haves).append(cid)
    if len(msg.blocks) + len(msg.payload) > MAX_ENTRIES:
        raise BitswapWireError("too many blocks in one message")
    # Blocks: derive each CID from the bytes (one native batch hash for the message).
    pending: list[tuple[int, int, bytes]] = []  # (version, codec, data) hashed with sha2-256
    for data in msg.blocks:  # 1.0.0: CIDv0
        _check_block(data)
        pending.append((0, Codec.DAG_PB, data))
    for blk in msg.payload:
        _check_block(blk.data)
        version, codec, code, _length = parse_prefix(blk.prefix)
        if code == HashCode.IDENTITY:
            continue  # inline blocks are never sent as payload by honest peers; ignore
        pending.append((version, codec, blk.data))
    if pending:
        digests = native.sha256_many([d for _v, _c, d in pending])
        for (version, codec, data), digest in zip(pending, digests, strict=True):
            mh = b"\x12\x20" + digest
            try:
                cid = CID(0, Codec.DAG_PB, mh) if version == 0 else CID.v1(codec, mh)
            except InvalidCID as exc:
                raise BitswapWireError(f"block with an invalid CID prefix: {exc}") from None
            out.blocks.append((cid, data))
    return out


def _cid(raw: bytes, what: str) -> CID:
    try:
        return CID.from_bytes(raw)
    except InvalidCID as exc:
        raise BitswapWireError(f"{what} with an invalid CID: {exc}") from None


def _check_block(data: bytes) -> None:
    if len(data) > MAX_BLOCK:
        raise BitswapWireError(f"block of {len(data)} bytes exceeds {MAX_BLOCK}")


# -- encoding ---------------------------------------------------------------------------


def encode_message(msg: BitswapMessage, protocol: str = PROTOCOL_120) -> bytes:
    """One message as a frame (length-prefixed), in the dialect of ``protocol``.

    1.0.0 and 1.1.0 peers get no want-have entries and no presences (they would not
    understand them); 1.0.0 peers get blocks in the old ``blocks`` field.
    """
    pbm = pb.Message()
    v12 = protocol == PROTOCOL_120
    if msg.wants or msg.full:
        wl = pbm.wantlist
        wl.full = msg.full
        for w in msg.wants:
            if w.want_have and not v12:
                continue
            e = wl.entries.add()
            e.block = w.cid.to_bytes()
            e.priority = max(-(2**31), min(2**31 - 1, w.priority))
            e.cancel = w.cancel
            if v12:
                e.wantType = pb.Message.Wantlist.Have if w.want_have else pb.Message.Wantlist.Block
                e.sendDontHave = w.send_dont_have
    for cid, data in msg.blocks:
        if protocol == PROTOCOL_100:
            pbm.blocks.append(data)
        else:
            blk = pbm.payload.add()
            blk.prefix = cid_prefix(cid)
            blk.data = data
    if v12:
        for cid in msg.haves:
            pbm.blockPresences.add(cid=cid.to_bytes(), type=pb.Message.Have)
        for cid in msg.dont_haves:
            pbm.blockPresences.add(cid=cid.to_bytes(), type=pb.Message.DontHave)
        if msg.pending_bytes:
            pbm.pendingBytes = min(msg.pending_bytes, 2**31 - 1)
    return encode_frame(pbm.SerializeToString())
