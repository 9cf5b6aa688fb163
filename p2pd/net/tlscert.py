"""The libp2p TLS certificate (libp2p/specs tls/tls.md), sans-IO: making ours, checking a
peer's. Shared by TLS over TCP/WebSocket (:mod:`p2pd.net.tls`) and QUIC.

API::

    cert_der, cert_key = make_certificate(identity, now=None)
    peer_id, public_key = verify_chain([peer_cert_der], expected_peer=None, now=None)
    public_key, signature = decode_signed_key(extension_value)   # the SignedKey DER
    extension_value = encode_signed_key(public_key, signature)

``identity`` is anything with ``public_key`` (the libp2p ``PublicKey`` protobuf bytes, or a
:class:`p2pd.keys.PublicKey`) and ``sign(data) -> bytes`` with the host key: a
:class:`p2pd.net.swarm.Identity` or a :class:`p2pd.keys.PrivateKey`. ``cert_key`` is a
fresh ECDSA P-256 key (pyca/cryptography ``EllipticCurvePrivateKey``) unrelated to the host
key; the certificate is self-signed with it, valid from an hour ago for 100 years (as
go-libp2p), and carries the libp2p extension (OID 1.3.6.1.4.1.53594.1.1, not critical)
holding ``SignedKey{publicKey, signature}``, the signature being the host key's over
``"libp2p-tls-handshake:" + SubjectPublicKeyInfo DER`` of the certificate key.

:func:`verify_chain` checks what the spec asks of a received chain: exactly one
certificate, valid now, a valid self-signature, the libp2p extension present (a critical
extension we do not understand refuses the certificate, unknown non-critical ones are
ignored), no issuer/subject unique ids, and the host key's signature (every key type:
Ed25519, RSA, secp256k1, ECDSA). It returns the peer id (multihash bytes) and the
``PublicKey`` protobuf; any failure is a :class:`TlsCertError` saying what was wrong.
``now`` (a timezone-aware datetime) is for tests; it defaults to the current time.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

from ..errors import P2PDError
from ..peerkeys import PeerKeyError, peer_id_from_public_key, verify_signature

EXTENSION_OID = "1.3.6.1.4.1.53594.1.1"
SIGNATURE_PREFIX = b"libp2p-tls-handshake:"
#: validity: from an hour ago (clock skew) for 100 years, as go-libp2p does
NOT_BEFORE_SKEW = datetime.timedelta(hours=1)
VALIDITY = datetime.timedelta(days=100 * 365)
#: a certificate (or extension) larger than this is refused before parsing
MAX_CERT_SIZE = 64 * 1024
MAX_FIELD = 16 * 1024

_SEQUENCE, _OCTET_STRING = 0x30, 0x04


class TlsCertError(P2PDError, ValueError):
    """A peer's TLS certificate cannot authenticate it; the message says why."""


# -- the SignedKey structure (strict DER) ------------------------------------------------


def _der_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """``(tag, length, content start)`` of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise TlsCertError("truncated DER element")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise TlsCertError("multi-byte DER tags are not expected here")
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise TlsCertError("indefinite DER length")
    else:
        n = first & 0x7F
        if n > 4 or pos + n > len(data):
            raise TlsCertError("DER length too long or truncated")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise TlsCertError("DER length not minimally encoded")
        pos += n
    if pos + length > len(data):
        raise TlsCertError("DER element runs past the end")
    return tag, length, pos


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def encode_signed_key(public_key: bytes, signature: bytes) -> bytes:
    """The extension's value: ``SignedKey ::= SEQUENCE {publicKey, signature OCTET STRING}``."""
    return _der(_SEQUENCE, _der(_OCTET_STRING, bytes(public_key)) +
                _der(_OCTET_STRING, bytes(signature)))


def decode_signed_key(value: bytes) -> tuple[bytes, bytes]:
    """``(public key protobuf, signature)`` from the extension's DER value; anything but
    exactly that SEQUENCE of two OCTET STRINGs is a :class:`TlsCertError`."""
    value = bytes(value)
    if len(value) > MAX_CERT_SIZE:
        raise TlsCertError("the libp2p extension is too large")
    tag, length, pos = _der_header(value, 0)
    if tag != _SEQUENCE:
        raise TlsCertError("the libp2p extension is not a SignedKey SEQUENCE")
    if pos + length != len(value):
        raise TlsCertError("bytes after the SignedKey SEQUENCE")
    end = pos + length
    fields = []
    for name in ("publicKey", "signature"):
        if pos >= end:
            raise TlsCertError(f"SignedKey lacks its {name}")
        tag, n, start = _der_header(value[:end], pos)
        if tag != _OCTET_STRING:
            raise TlsCertError(f"SignedKey {name} is not an OCTET STRING")
        if n > MAX_FIELD:
            raise TlsCertError(f"SignedKey {name} is too large")
        fields.append(value[start : start + n])
        pos = start + n
    if pos != end:
        raise TlsCertError("SignedKey has more than two fields")
    if not fields[0]:
        raise TlsCertError("SignedKey has an empty public key")
    return fields[0], fields[1]


def _raw_spki_and_unique_ids(tbs: bytes) -> tuple[bytes, bool]:
    """The SubjectPublicKeyInfo DER exactly as the certificate carries it, and whether
    an issuerUniqueID or subjectUniqueID ([1] / [2]) follows it."""
    tag, length, pos = _der_header(tbs, 0)
    if tag != _SEQUENCE:
        raise TlsCertError("TBSCertificate is not a SEQUENCE")
    end = pos + length
    items = []
    while pos < end:
        tag, n, start = _der_header(tbs[:end], pos)
        items.append((tag, tbs[pos : start + n]))
        pos = start + n
    if items and items[0][0] == 0xA0:  # [0] version
        items = items[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(items) < 6:
        raise TlsCertError("TBSCertificate is missing fields")
    unique = any(tag in (0x81, 0xA1, 0x82, 0xA2) for tag, _ in items[6:])
    return items[5][1], unique


# -- making ours -------------------------------------------------------------------------


def _public_key_bytes(identity) -> bytes:
    key = identity.public_key
    return key.serialize() if hasattr(key, "serialize") else bytes(key)


def make_certificate(identity, now: datetime.datetime | None = None):
    """``(certificate DER, certificate private key)`` for ``identity`` (see the module doc)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    signature = identity.sign(SIGNATURE_PREFIX + spki)
    value = encode_signed_key(_public_key_bytes(identity), signature)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, os.urandom(8).hex())])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(8), "big") >> 1 or 1)
        .not_valid_before(now - NOT_BEFORE_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(EXTENSION_OID), value),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER), key


# -- checking a peer's -------------------------------------------------------------------


def verify_chain(der_certs: Sequence[bytes], expected_peer: bytes | None = None,
                 now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """``(peer id, PublicKey protobuf)`` authenticated by a peer's certificate chain, or
    :class:`TlsCertError`; ``expected_peer`` (the dialed peer id) must then match."""
    from cryptography import x509

    if len(der_certs) != 1:
        raise TlsCertError(f"the peer sent {len(der_certs)} certificates, not exactly one")
    der = bytes(der_certs[0])
    if len(der) > MAX_CERT_SIZE:
        raise TlsCertError(f"the peer's certificate is {len(der)} bytes (at most "
                           f"{MAX_CERT_SIZE})")
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except ValueError as exc:
        raise TlsCertError(f"the peer's certificate does not parse: {exc}") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        raise TlsCertError(f"the peer's certificate is not valid before "
                           f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    if now > cert.not_valid_after_utc:
        raise TlsCertError(f"the peer's certificate expired at "
                           f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    spki, unique_ids = _raw_spki_and_unique_ids(cert.tbs_certificate_bytes)
    if unique_ids:
        raise TlsCertError("the peer's certificate carries issuer/subject unique ids")
    try:
        cert.verify_directly_issued_by(cert)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError (unsupported key)
        raise TlsCertError(f"the peer's certificate self-signature is not valid "
                           f"({type(exc).__name__}: {exc})") from None
    signed_key = None
    for ext in extensions:
        oid = ext.oid.dotted_string
        if oid == EXTENSION_OID:
            if signed_key is not None:
                raise TlsCertError("the peer's certificate has the libp2p extension twice")
            signed_key = ext.value.value
        elif ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise TlsCertError(f"the peer's certificate has a critical extension we do not "
                               f"understand ({oid})")
    if signed_key is None:
        raise TlsCertError("the peer's certificate lacks the libp2p public key extension "
                           f"({EXTENSION_OID})")
    public_key, signature = decode_signed_key(signed_key)
    try:
        ok = verify_signature(public_key, SIGNATURE_PREFIX + spki, signature)
    except PeerKeyError as exc:
        raise TlsCertError(f"the libp2p extension's host key is unusable: {exc}") from None
    if not ok:
        raise TlsCertError("the libp2p extension's signature does not verify under its host key")
    peer = peer_id_from_public_key(public_key)
    if expected_peer is not None and peer != bytes(expected_peer):
        raise TlsCertError(f"peer id mismatch: the peer authenticated as {_show(peer)}, "
                           f"not the dialed {_show(bytes(expected_peer))}")
    return peer, public_key


def _show(peer: bytes) -> str:
    from ..blocks.multibase import b58encode

    return b58encode(peer)
