"""The node's own signing key, for every key type the peer-id spec defines, without
py-libp2p: Ed25519 on PyNaCl, RSA, secp256k1 and ECDSA on pyca/cryptography.

Encodings (libp2p/specs peer-ids.md): a ``PublicKey`` protobuf is ``Type`` (field 1) and
``Data`` (field 2); Ed25519 data is the 32-byte key, RSA and ECDSA data is PKIX
(SubjectPublicKeyInfo) DER, secp256k1 data is the 33-byte compressed point. Private keys
come as :class:`p2pd.identity.PrivateKeyRecord` data: the Ed25519 seed (from the 32/64/96
byte forms), PKCS#1 DER for RSA, the 32-byte scalar for secp256k1, SEC1 or PKCS#8 DER for
ECDSA. Signatures: Ed25519; RSASSA-PKCS1-v1_5 with SHA-256; ECDSA (DER) over SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protobuf import field_bytes, field_varint

ED25519, RSA, SECP256K1, ECDSA = 1, 0, 2, 3


def public_key_proto(key_type: int, data: bytes) -> bytes:
    return field_varint(1, key_type) + field_bytes(2, data)


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_type: int
    data: bytes

    def serialize(self) -> bytes:
        """The PublicKey protobuf (what identify carries and peer ids hash)."""
        return public_key_proto(self.key_type, self.data)

    def to_bytes(self) -> bytes:
        return self.data


class PrivateKey:
    """Signs with one key; ``public_key`` is its :class:`PublicKey`."""

    def __init__(self, key_type: int, impl, data: bytes = b"") -> None:
        self.key_type = key_type
        self._impl = impl
        self._data = bytes(data)
        self.public_key = PublicKey(key_type, self._public_data())

    def derive(self, info: bytes, length: int = 32) -> bytes:
        """A secret of ``length`` bytes bound to this key and ``info`` (HKDF-SHA256 over the
        private key data, as go-libp2p derives its QUIC stateless reset key): the same after
        a restart with the same key, useless to anyone who lacks it."""
        if not self._data:
            raise ValueError("this key was made without its data: nothing to derive from")
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(hashes.SHA256(), length, None, info).derive(self._data)

    def _public_data(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        impl = self._impl
        if self.key_type == ED25519:
            return bytes(impl.verify_key)
        if self.key_type == SECP256K1:
            return impl.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.CompressedPoint)
        return impl.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        if self.key_type == ED25519:
            return self._impl.sign(bytes(data)).signature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding

        if self.key_type == RSA:
            return self._impl.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())
        signature = self._impl.sign(bytes(data), ec.ECDSA(hashes.SHA256()))
        if self.key_type == SECP256K1:
            return _low_s(signature)
        return signature

    def get_public_key(self) -> PublicKey:
        return self.public_key


@dataclass(frozen=True, slots=True)
class KeyPair:
    private_key: PrivateKey
    public_key: PublicKey


#: the order of the secp256k1 group
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _low_s(signature: bytes) -> bytes:
    """The secp256k1 signature with ``s`` in the lower half: go (btcec) makes only those and
    js (noble-secp256k1) refuses the others, so an unnormalised one fails half the time."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    r, s = decode_dss_signature(signature)
    if s > SECP256K1_N // 2:
        return encode_dss_signature(r, SECP256K1_N - s)
    return signature


def load_private_key(key_type: int, data: bytes) -> PrivateKey:
    """A signing key from its libp2p private-key data; ``ValueError`` if it is malformed."""
    if key_type == ED25519:
        import nacl.signing

        if len(data) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, not {len(data)}")
        return PrivateKey(ED25519, nacl.signing.SigningKey(bytes(data)), data)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == SECP256K1:
        if len(data) != 32:
            raise ValueError(f"a secp256k1 key is 32 bytes, not {len(data)}")
        scalar = int.from_bytes(data, "big")
        return PrivateKey(SECP256K1, ec.derive_private_key(scalar, ec.SECP256K1()), data)
    if key_type == RSA:
        impl = serialization.load_der_private_key(bytes(data), password=None)
        if not isinstance(impl, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return PrivateKey(RSA, impl, data)
    if key_type == ECDSA:
        impl = serialization.load_der_private_key(bytes(data), password=None)
        if not isinstance(impl, ec.EllipticCurvePrivateKey):
            raise ValueError("not an ECDSA private key")
        return PrivateKey(ECDSA, impl, data)
    raise ValueError(f"unknown key type {key_type}")
