"""The libp2p TLS certificate extension on arbitrary input: the SignedKey decoder and the
chain check give their own error or a result, nothing else; SignedKey round-trips."""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pd.net.tlscert import (
    EXTENSION_OID,
    TlsCertError,
    decode_signed_key,
    encode_signed_key,
    verify_chain,
)

CERT_KEY = ec.generate_private_key(ec.SECP256R1())
NOW = datetime.datetime.now(datetime.UTC)


def der_like():
    """Bytes that often look like DER: tags, lengths and OCTET STRINGs mixed with noise."""
    piece = st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\x30", b"\x04", b"\x81", b"\x82\x01\x00", b"\x80", b"\x00"]),
        st.binary(max_size=40).map(lambda b: b"\x04" + bytes([len(b)]) + b),
    )
    return st.lists(piece, max_size=8).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.binary(max_size=300), der_like(),
                 der_like().map(lambda b: b"\x30" + bytes([len(b) & 0x7F]) + b)))
def test_signed_key_decoder_refuses_garbage_cleanly(data):
    try:
        public_key, signature = decode_signed_key(data)
    except TlsCertError:
        return
    assert public_key and encode_signed_key(public_key, signature) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.binary(max_size=5000))
def test_signed_key_round_trips(public_key, signature):
    assert decode_signed_key(encode_signed_key(public_key, signature)) == (public_key, signature)


def cert_with(value: bytes) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(CERT_KEY.public_key()).serial_number(1)
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(EXTENSION_OID),
                                                      value), critical=False)
            .sign(CERT_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(der_like(), st.tuples(der_like(), der_like()).map(
    lambda t: encode_signed_key(t[0] or b"\x08", t[1]))))
def test_a_certificate_with_any_extension_value_is_refused_cleanly(value):
    try:
        verify_chain([cert_with(value)])
    except TlsCertError:
        return
    raise AssertionError("a random extension authenticated a peer")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_certificates_are_refused_cleanly(data):
    try:
        verify_chain([data])
    except TlsCertError:
        return
    raise AssertionError("garbage authenticated a peer")
