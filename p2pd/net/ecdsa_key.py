"""ECDSA identity keys in py-libp2p's key interface, on pyca/cryptography.

py-libp2p 0.8 has no usable ECDSA key (its ``ECCPrivateKey`` neither signs nor encodes
as libp2p does), so a go or js key file of type ECDSA could not be a node's identity.
The encodings are libp2p/specs peer-ids.md's: the private key is DER (SEC1
``ECPrivateKey`` as go writes it, or PKCS#8), the public key is PKIX
(SubjectPublicKeyInfo) DER, and signatures are ASN.1 DER over SHA-256.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from libp2p.crypto.keys import KeyType, PrivateKey, PublicKey


class ECDSAPublicKey(PublicKey):
    def __init__(self, impl: ec.EllipticCurvePublicKey) -> None:
        self.impl = impl

    def to_bytes(self) -> bytes:
        return self.impl.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ECDSAPublicKey:
        impl = serialization.load_der_public_key(data)
        if not isinstance(impl, ec.EllipticCurvePublicKey):
            raise ValueError("not an ECDSA public key")
        return cls(impl)

    def get_type(self) -> KeyType:
        return KeyType.ECDSA

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self.impl.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


class ECDSAPrivateKey(PrivateKey):
    def __init__(self, impl: ec.EllipticCurvePrivateKey) -> None:
        self.impl = impl

    @classmethod
    def from_bytes(cls, data: bytes) -> ECDSAPrivateKey:
        impl = serialization.load_der_private_key(data, password=None)
        if not isinstance(impl, ec.EllipticCurvePrivateKey):
            raise ValueError("not an ECDSA private key")
        return cls(impl)

    def to_bytes(self) -> bytes:
        return self.impl.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,  # SEC1, as go writes it
            serialization.NoEncryption(),
        )

    def get_type(self) -> KeyType:
        return KeyType.ECDSA

    def sign(self, data: bytes) -> bytes:
        return self.impl.sign(data, ec.ECDSA(hashes.SHA256()))

    def get_public_key(self) -> PublicKey:
        return ECDSAPublicKey(self.impl.public_key())
