"""Content identifiers (CIDv0 and CIDv1), per github.com/multiformats/cid.

Binary forms:
  * v0: a bare sha2-256 multihash (34 bytes: ``0x12 0x20 <digest>``), codec dag-pb.
  * v1: ``<varint 1><varint codec><multihash>``.

String forms: v0 is bare base58btc (``Qm...``, no multibase prefix); v1 is a
multibase string, base32 lower case (``b...``) by default. Anything malformed
raises :class:`InvalidCID` with a message saying what was wrong.
"""

from __future__ import annotations

from ..errors import InvalidCID, InvalidVarint
from ..varint import decode_uvarint, encode_uvarint
from . import multibase, multihash
from .multibase import Multibase
from .multicodec import Codec, HashCode

#: Longest CID text we parse; far above any real one (base2 of a 128-byte identity).
MAX_CID_TEXT = 2048
MAX_CID_BYTES = 256

class CID:
    """An immutable, hashable CID. Build with :meth:`decode`, :meth:`v0`, :meth:`v1`.

    Written out rather than a frozen dataclass: every CLI command that names a CID
    imports this module, and dataclasses costs ~7 ms of imports at each start
    (bench/cli.py)."""

    __slots__ = ("version", "codec", "multihash")
    version: int
    codec: Codec
    multihash: bytes

    def __init__(self, version: int, codec: Codec, multihash: bytes) -> None:
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "multihash", multihash)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CID is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"CID is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.version, self.codec, self.multihash) == (
            other.version, other.codec, other.multihash)

    def __hash__(self) -> int:
        return hash((self.version, self.codec, self.multihash))

    def __reduce__(self):
        return (self.__class__, (self.version, self.codec, self.multihash))

    # -- construction -----------------------------------------------------------------
    @classmethod
    def v0(cls, sha256_digest: bytes) -> CID:
        if len(sha256_digest) != 32:
            raise InvalidCID(f"CIDv0 needs a 32-byte sha2-256 digest, got {len(sha256_digest)}")
        return cls(0, Codec.DAG_PB, b"\x12\x20" + bytes(sha256_digest))

    @classmethod
    def v1(cls, codec: int, mh: bytes) -> CID:
        multihash.decode_exact(mh)
        return cls(1, _codec(codec), bytes(mh))

    @classmethod
    def for_block(cls, data: bytes, codec: int = Codec.RAW, version: int = 1) -> CID:
        """The CID (sha2-256) of a block's bytes."""
        mh = multihash.sha2_256(data)
        if version == 0:
            if codec != Codec.DAG_PB:
                raise InvalidCID("CIDv0 can only name dag-pb blocks")
            return cls(0, Codec.DAG_PB, mh)
        if version != 1:
            raise InvalidCID(f"unsupported CID version {version}")
        return cls(1, _codec(codec), mh)

    @classmethod
    def decode(cls, value: CIDLike) -> CID:
        """Parse a CID from its text or binary form (or return it if already a CID)."""
        if isinstance(value, CID):
            return value
        if isinstance(value, str):
            return cls.from_string(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(value))
        raise InvalidCID(f"cannot read a CID from {type(value).__name__}")

    @classmethod
    def from_string(cls, text: str) -> CID:
        if not text:
            raise InvalidCID("empty CID string")
        if len(text) > MAX_CID_TEXT:
            raise InvalidCID(f"CID string of {len(text)} characters is too long")
        if text.startswith("Qm") and len(text) != 46:
            # Not worth a multibase lookup: "Q" is no multibase prefix, but the user
            # plainly meant a CIDv0.
            raise InvalidCID(
                f"invalid CID {_clip(text)}: not a valid base58btc CIDv0 (a CIDv0 is 46 "
                f"characters starting with Qm; this has {len(text)})")
        if len(text) == 46 and text.startswith("Qm"):
            try:
                data = multibase.b58decode(text)
            except InvalidCID as exc:
                raise InvalidCID(f"invalid CIDv0 {_clip(text)}: {exc}") from None
            if len(data) != 34 or data[:2] != b"\x12\x20":
                raise InvalidCID(f"{text!r} is not a valid CIDv0")
            return cls(0, Codec.DAG_PB, data)
        try:
            _base, data = multibase.decode(text)
            cid = cls.from_bytes(data)
        except InvalidCID as exc:
            # Name the text the user gave, not just the bytes it decoded to.
            raise InvalidCID(f"invalid CID {_clip(text)}: {exc}") from None
        if cid.version == 0:
            raise InvalidCID(
                f"invalid CID {_clip(text)}: a CIDv0 must not carry a multibase prefix"
            )
        return cid

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        cid, end = cls.read(data)
        if end != len(data):
            raise InvalidCID(f"{len(data) - end} unexpected bytes after the CID")
        return cid

    @classmethod
    def read(cls, data: bytes, offset: int = 0) -> tuple[CID, int]:
        """Parse one binary CID at ``offset`` (as embedded in a dag-pb link or a wire message)."""
        data = bytes(data)
        if len(data) - offset < 2:
            raise InvalidCID("truncated CID: fewer than 2 bytes")
        if data[offset] == 0x12 and data[offset + 1] == 0x20:
            end = offset + 34
            if end > len(data):
                raise InvalidCID("truncated CIDv0: needs 34 bytes")
            return cls(0, Codec.DAG_PB, data[offset:end]), end
        try:
            version, pos = decode_uvarint(data, offset)
            if version != 1:
                raise InvalidCID(f"unsupported CID version {version}")
            codec, pos = decode_uvarint(data, pos)
        except InvalidVarint as exc:
            raise InvalidCID(f"malformed CID: {exc}") from None
        codec = _codec(codec)
        _code, _digest, end = multihash.decode(data, pos)
        if end - offset > MAX_CID_BYTES:
            raise InvalidCID("CID longer than 256 bytes")
        return cls(1, codec, data[pos:end]), end

    # -- views ------------------------------------------------------------------------
    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return encode_uvarint(1) + encode_uvarint(self.codec) + self.multihash

    def encode(self, base: Multibase | None = None) -> str:
        """Text form: base58btc for v0, base32 (or ``base``) for v1."""
        if self.version == 0:
            if base not in (None, Multibase.BASE58BTC):
                raise InvalidCID("a CIDv0 can only be written in base58btc; convert it to v1 first")
            return multibase.b58encode(self.multihash)
        return multibase.encode(self.to_bytes(), base or Multibase.BASE32)

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    @property
    def hash_code(self) -> HashCode:
        return multihash.decode_exact(self.multihash)[0]

    @property
    def digest(self) -> bytes:
        return multihash.decode_exact(self.multihash)[1]

    def to_v1(self) -> CID:
        return self if self.version == 1 else CID(1, self.codec, self.multihash)

    def to_v0(self) -> CID:
        if self.version == 0:
            return self
        if self.codec != Codec.DAG_PB or self.hash_code != HashCode.SHA2_256:
            raise InvalidCID("only dag-pb sha2-256 CIDs have a v0 form")
        return CID(0, Codec.DAG_PB, self.multihash)

    def verify(self, data: bytes) -> bool:
        """True when ``data`` is the block this CID names."""
        return multihash.verify(self.multihash, data)


def _codec(code: int) -> Codec:
    try:
        return Codec(code)
    except ValueError:
        raise InvalidCID(
            f"unsupported multicodec 0x{code:x}: p2pd knows raw (0x55), dag-pb (0x70), "
            "libp2p-key (0x72)"
        ) from None


def _clip(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


#: What :meth:`CID.decode` accepts.
CIDLike = CID | str | bytes | bytearray | memoryview
