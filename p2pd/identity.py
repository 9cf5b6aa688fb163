"""The node's identity: a libp2p private key, stored as the go daemon's ``-id`` files are.

File format (libp2p/specs peer-ids/peer-ids.md): the protobuf
``PrivateKey { required KeyType Type = 1; required bytes Data = 2; }``. For Ed25519,
``Data`` is the 32-byte seed followed by the 32-byte public key (64 bytes), as go-libp2p
writes it (js-libp2p's key files hold 96: seed, public key, public key again).
py-libp2p 0.8 writes and reads only the 32-byte seed, so it cannot load a go daemon's
key file; we encode and decode Ed25519 ourselves and accept all three forms. The other
key types are as go-libp2p and js-libp2p write them: RSA as PKCS#1 DER (PKCS#8 is
taken too), secp256k1 as the raw 32-byte secret, ECDSA as SEC1 (or PKCS#8) DER. Each
file is checked when read, so a wrong one is refused naming the file, before any
network I/O; every type then signs through p2pd/keys.py (PyNaCl, pyca/cryptography).

A new key file is created with mode 0600 and ``O_EXCL``, so a secret key is never
readable by others, not even for an instant, and two racing first starts cannot
overwrite each other's key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from .errors import ConfigError
from .varint import decode_uvarint, encode_uvarint

KEY_TYPE_RSA = 0
KEY_TYPE_ED25519 = 1
KEY_TYPE_SECP256K1 = 2
KEY_TYPE_ECDSA = 3

KEY_TYPE_NAMES = {KEY_TYPE_RSA: "RSA", KEY_TYPE_ED25519: "Ed25519",
                  KEY_TYPE_SECP256K1: "secp256k1", KEY_TYPE_ECDSA: "ECDSA"}
#: py-libp2p refuses larger RSA keys; go-libp2p refuses smaller ones.
RSA_BITS = (2048, 4096)
#: The order of the secp256k1 group: a secret is an integer in [1, n).
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: The curves go-libp2p's ECDSA keys use.
ECDSA_CURVES = ("secp256r1", "secp384r1", "secp521r1")

#: Key files are tiny; refuse to read anything larger (a 4096-bit RSA key is ~2.4 KiB).
MAX_KEY_FILE = 64 << 10


@dataclass(slots=True, frozen=True)
class PrivateKeyRecord:
    """A decoded libp2p ``PrivateKey`` protobuf: key type and raw key bytes."""

    key_type: int
    data: bytes


def encode_private_key(record: PrivateKeyRecord) -> bytes:
    """Encode the ``PrivateKey`` protobuf (fields in order, both always present)."""
    return (
        b"\x08"
        + encode_uvarint(record.key_type)
        + b"\x12"
        + encode_uvarint(len(record.data))
        + record.data
    )


def decode_private_key(blob: bytes) -> PrivateKeyRecord:
    """Decode a ``PrivateKey`` protobuf; raise :class:`ConfigError` if it is not one."""
    key_type: int | None = None
    data: bytes | None = None
    pos = 0
    try:
        while pos < len(blob):
            tag, pos = decode_uvarint(blob, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                value, pos = decode_uvarint(blob, pos)
                if field == 1:
                    key_type = value
            elif wire == 2:
                length, pos = decode_uvarint(blob, pos)
                if pos + length > len(blob):
                    raise ConfigError("private key protobuf is truncated")
                if field == 2:
                    data = bytes(blob[pos : pos + length])
                pos += length
            else:
                raise ConfigError(f"private key protobuf has an unexpected wire type {wire}")
    except ValueError as exc:  # InvalidVarint
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"private key protobuf is malformed: {exc}") from None
    if key_type is None or data is None:
        raise ConfigError("private key protobuf lacks its Type or Data field")
    return PrivateKeyRecord(key_type, data)


def new_ed25519() -> PrivateKeyRecord:
    """A fresh Ed25519 key in go-libp2p's 64-byte form."""
    signing = nacl.signing.SigningKey.generate()
    return PrivateKeyRecord(KEY_TYPE_ED25519, bytes(signing) + bytes(signing.verify_key))


def ed25519_seed(record: PrivateKeyRecord) -> bytes:
    """The 32-byte seed of an Ed25519 record; checks the embedded public key if present."""
    data = record.data
    if len(data) == 32:
        return data
    if len(data) in (64, 96):
        # 64: seed + public (go-libp2p); 96: seed + public + public (js-libp2p's key files).
        seed, public = data[:32], data[32:64]
        if len(data) == 96 and data[64:] != public:
            raise ConfigError("Ed25519 private key: the two embedded public keys differ")
        if bytes(nacl.signing.SigningKey(seed).verify_key) != public:
            raise ConfigError("Ed25519 private key: embedded public key does not match the seed")
        return seed
    raise ConfigError(f"Ed25519 private key must be 32, 64 or 96 bytes, not {len(data)}")


def read_identity(path: str | os.PathLike[str]) -> PrivateKeyRecord:
    """Read a key file (the go daemon's ``-id`` format)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(f"identity file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read identity file {path}: {exc.strerror or exc}") from None
    if len(blob) > MAX_KEY_FILE:
        raise ConfigError(f"identity file {path} is larger than {MAX_KEY_FILE} bytes")
    try:
        record = decode_private_key(blob)
    except ConfigError as exc:
        raise ConfigError(f"identity file {path}: {exc}") from None
    try:
        check_private_key(record)
    except ConfigError as exc:
        raise ConfigError(f"identity file {path}: {exc}") from None
    return record


def check_private_key(record: PrivateKeyRecord) -> None:
    """Refuse a key the node could not run with; the message says what is wrong with it."""
    kind = record.key_type
    if kind == KEY_TYPE_ED25519:
        ed25519_seed(record)
    elif kind == KEY_TYPE_SECP256K1:
        if len(record.data) != 32:
            raise ConfigError(f"secp256k1 private key must be 32 bytes, not {len(record.data)}")
        if not 0 < int.from_bytes(record.data, "big") < SECP256K1_ORDER:
            raise ConfigError("secp256k1 private key is out of range (0 or >= the group order)")
    elif kind in (KEY_TYPE_RSA, KEY_TYPE_ECDSA):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        name = KEY_TYPE_NAMES[kind]
        try:
            key = serialization.load_der_private_key(record.data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name} private key is not valid DER ({exc})") from None
        if kind == KEY_TYPE_RSA:
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigError("the key is marked RSA but holds another kind of key")
            if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
                raise ConfigError(f"RSA key of {key.key_size} bits: between {RSA_BITS[0]} and "
                                  f"{RSA_BITS[1]} bits are supported")
        else:
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ConfigError("the key is marked ECDSA but holds another kind of key")
            if key.curve.name not in ECDSA_CURVES:
                raise ConfigError(f"ECDSA curve {key.curve.name} is not supported "
                                  "(P-256, P-384 or P-521)")
    else:
        raise ConfigError(f"unknown key type {kind} (0 RSA, 1 Ed25519, 2 secp256k1, 3 ECDSA)")


def write_identity(path: str | os.PathLike[str], record: PrivateKeyRecord) -> None:
    """Create ``path`` (mode 0600, must not exist) holding ``record``, durably."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, encode_private_key(record))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_identity(path: str | os.PathLike[str]) -> tuple[PrivateKeyRecord, bool]:
    """Return ``(record, created)``: the key at ``path``, made (Ed25519) on first use."""
    path = Path(path)
    if path.exists():
        return read_identity(path), False
    record = new_ed25519()
    try:
        write_identity(path, record)
    except FileExistsError:  # another first start won the race: use its key
        return read_identity(path), False
    except OSError as exc:
        raise ConfigError(f"cannot create identity file {path}: {exc.strerror or exc}") from None
    return record, True


def to_key_pair(record: PrivateKeyRecord):
    """The node's signing key pair (p2pd.keys: no py-libp2p)."""
    from .keys import KeyPair, load_private_key

    check_private_key(record)
    data = ed25519_seed(record) if record.key_type == KEY_TYPE_ED25519 else record.data
    try:
        private = load_private_key(record.key_type, data)
    except (ValueError, TypeError) as exc:
        name = KEY_TYPE_NAMES[record.key_type]
        raise ConfigError(f"malformed {name} private key: {exc}") from None
    return KeyPair(private, private.public_key)
