"""Multihash: ``<varint hash code><varint digest length><digest>``.

p2pd accepts sha2-256 (32-byte digests) and identity (the data itself, bounded);
any other function is refused with :class:`InvalidCID` naming it.
"""

from ..errors import InvalidCID, InvalidVarint
from ..varint import decode_uvarint, encode_uvarint
from .multicodec import HashCode

#: Identity multihashes inline their data; bound them as kubo does (128 bytes).
MAX_IDENTITY_DIGEST = 128
SHA2_256_LEN = 32


def encode(code: int, digest: bytes) -> bytes:
    """Wrap a digest in a multihash after checking it suits the function."""
    code = _check_code(code)
    _check_length(code, len(digest))
    return encode_uvarint(code) + encode_uvarint(len(digest)) + bytes(digest)


def sha2_256(data: bytes) -> bytes:
    """The sha2-256 multihash of ``data``."""
    from .. import native  # hashing only: parsing a CID needs none of it

    return b"\x12\x20" + native.sha256(data)


def identity(data: bytes) -> bytes:
    return encode(HashCode.IDENTITY, data)


def digest(data: bytes, code: int = HashCode.SHA2_256) -> bytes:
    """Hash ``data`` with the named function and return the multihash."""
    code = _check_code(code)
    if code is HashCode.SHA2_256:
        return sha2_256(data)
    return identity(data)


def decode(mh: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Parse one multihash at ``offset``: return ``(code, digest, offset_after)``."""
    try:
        code, pos = decode_uvarint(mh, offset)
        length, pos = decode_uvarint(mh, pos)
    except InvalidVarint as exc:
        raise InvalidCID(f"malformed multihash: {exc}") from None
    code = _check_code(code)
    _check_length(code, length)
    end = pos + length
    if end > len(mh):
        raise InvalidCID(f"truncated multihash: digest needs {length} bytes, {len(mh) - pos} left")
    return code, bytes(mh[pos:end]), end


def decode_exact(mh: bytes) -> tuple[int, bytes]:
    """Parse a buffer that must hold exactly one multihash."""
    code, dig, end = decode(mh)
    if end != len(mh):
        raise InvalidCID(f"{len(mh) - end} unexpected bytes after the multihash")
    return code, dig


def verify(mh: bytes, data: bytes) -> bool:
    """True when ``data`` hashes to the multihash ``mh``."""
    code, dig = decode_exact(mh)
    if code is HashCode.SHA2_256:
        from .. import native

        return native.sha256(data) == dig
    return bytes(data) == dig


def _check_code(code: int) -> HashCode:
    try:
        return HashCode(code)
    except ValueError:
        raise InvalidCID(
            f"unsupported multihash function 0x{code:x}: "
            "p2pd accepts sha2-256 (0x12) and identity (0x00)"
        ) from None


def _check_length(code: HashCode, length: int) -> None:
    if code is HashCode.SHA2_256 and length != SHA2_256_LEN:
        raise InvalidCID(f"sha2-256 multihash must have a 32-byte digest, got {length}")
    if code is HashCode.IDENTITY and length > MAX_IDENTITY_DIGEST:
        raise InvalidCID(f"identity multihash of {length} bytes exceeds {MAX_IDENTITY_DIGEST}")
