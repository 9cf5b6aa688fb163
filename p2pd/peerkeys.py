"""libp2p public keys and peer ids: the small part of the peer-id spec that record and
message validation needs (DHT records, pubsub signatures).

A peer id is the multihash of the protobuf ``PublicKey`` (``Type`` field 1, ``Data`` field 2):
the identity multihash when the encoded key is at most 42 bytes (Ed25519), else sha2-256.
"""

from __future__ import annotations

import hashlib

from .errors import P2PDError
from .varint import decode_uvarint

ED25519 = 1


class PeerKeyError(P2PDError, ValueError):
    """A public key or peer id that cannot be used; the message says why."""


def peer_id_from_public_key(pubkey_proto: bytes) -> bytes:
    """The peer id (multihash) of a serialized libp2p PublicKey: identity if <= 42 bytes."""
    if len(pubkey_proto) <= 42:
        return bytes([0x00, len(pubkey_proto)]) + pubkey_proto
    return b"\x12\x20" + hashlib.sha256(pubkey_proto).digest()


def parse_public_key(pubkey_proto: bytes) -> tuple[int, bytes]:
    """``(key type, key bytes)`` from a PublicKey protobuf (fields 1 varint, 2 bytes)."""
    pos, key_type, data = 0, None, None
    try:
        while pos < len(pubkey_proto):
            tag, pos = decode_uvarint(pubkey_proto, pos)
            if tag == 0x08:
                key_type, pos = decode_uvarint(pubkey_proto, pos)
            elif tag == 0x12:
                n, pos = decode_uvarint(pubkey_proto, pos)
                if pos + n > len(pubkey_proto):
                    raise PeerKeyError("public key data runs past the end")
                data, pos = pubkey_proto[pos : pos + n], pos + n
            else:
                raise PeerKeyError(f"unexpected field tag {tag} in a public key")
    except ValueError as exc:
        if isinstance(exc, PeerKeyError):
            raise
        raise PeerKeyError(f"malformed public key: {exc}") from None
    if key_type is None or data is None:
        raise PeerKeyError("public key lacks its type or data")
    return key_type, bytes(data)


def public_key_in_peer_id(peer_id: bytes) -> bytes | None:
    """The PublicKey protobuf inlined in an identity-multihash peer id, if it is one."""
    if len(peer_id) >= 2 and peer_id[0] == 0x00 and peer_id[1] == len(peer_id) - 2:
        return peer_id[2:]
    return None


RSA, SECP256K1, ECDSA = 0, 2, 3
#: go-libp2p refuses RSA keys below this size (the peer-id spec's minimum).
MIN_RSA_BITS = 2048


def verify_signature(pubkey_proto: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``data`` verifies under a serialized libp2p PublicKey of
    any type the spec defines: Ed25519 (through :func:`p2pd.native.verify`), RSA
    (PKCS#1 v1.5, SHA-256), secp256k1 and ECDSA (DER signatures over SHA-256).
    An unusable key raises :class:`PeerKeyError`; a bad signature returns False."""
    key_type, key = parse_public_key(pubkey_proto)
    if key_type == ED25519:
        from . import native

        if len(key) != 32:
            raise PeerKeyError(f"Ed25519 key of {len(key)} bytes")
        return native.verify(key, data, signature)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        if key_type == SECP256K1:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), key)
        elif key_type in (RSA, ECDSA):
            public = serialization.load_der_public_key(key)
        else:
            raise PeerKeyError(f"unknown key type {key_type}")
    except (ValueError, TypeError) as exc:
        raise PeerKeyError(f"malformed public key: {exc}") from None
    if key_type == RSA:
        if not isinstance(public, rsa.RSAPublicKey):
            raise PeerKeyError("an RSA key field holds another key type")
        if public.key_size < MIN_RSA_BITS:
            raise PeerKeyError(f"RSA key of {public.key_size} bits (minimum {MIN_RSA_BITS})")
    elif not isinstance(public, ec.EllipticCurvePublicKey):
        raise PeerKeyError("an ECDSA key field holds another key type")
    try:
        if key_type == RSA:
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    except ValueError:  # a signature that is not even DER
        return False
    return True
