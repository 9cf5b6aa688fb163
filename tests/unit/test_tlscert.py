"""The libp2p TLS certificate (p2pd.net.tlscert): ours verify for every host key type, the
spec's test vectors parse, and certificates that cannot authenticate a peer are refused
with a message saying why."""

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from p2pd.blocks.multibase import b58encode
from p2pd.keys import ECDSA, ED25519, RSA, SECP256K1, load_private_key
from p2pd.net import tlscert
from p2pd.net.tlscert import TlsCertError
from p2pd.peerkeys import peer_id_from_public_key

DER, NONE = serialization.Encoding.DER, serialization.NoEncryption()
PKCS8 = serialization.PrivateFormat.PKCS8
NOW = datetime.datetime.now(datetime.UTC)

_RSA = None


def host_key(key_type: int):
    global _RSA
    if key_type == ED25519:
        return load_private_key(ED25519, os.urandom(32))
    if key_type == SECP256K1:
        return load_private_key(SECP256K1, os.urandom(31) + b"\x01")
    if key_type == RSA:
        if _RSA is None:  # 2048-bit generation is slow; one per run is enough
            _RSA = rsa.generate_private_key(65537, 2048).private_bytes(DER, PKCS8, NONE)
        return load_private_key(RSA, _RSA)
    data = ec.generate_private_key(ec.SECP256R1()).private_bytes(DER, PKCS8, NONE)
    return load_private_key(ECDSA, data)


KEY_TYPES = pytest.mark.parametrize("key_type", [ED25519, RSA, SECP256K1, ECDSA],
                                    ids=["ed25519", "rsa", "secp256k1", "ecdsa"])


@KEY_TYPES
def test_our_certificate_authenticates_every_host_key_type(key_type):
    key = host_key(key_type)
    der, cert_key = tlscert.make_certificate(key)
    public = key.public_key.serialize()
    peer = peer_id_from_public_key(public)
    assert tlscert.verify_chain([der], expected_peer=peer) == (peer, public)
    cert = x509.load_der_x509_certificate(der)
    assert isinstance(cert_key.curve, ec.SECP256R1)
    assert cert.public_key() == cert_key.public_key()
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(tlscert.EXTENSION_OID))
    assert not ext.critical
    assert tlscert.decode_signed_key(ext.value.value)[0] == public


def test_a_swarm_identity_makes_a_certificate_too():
    from p2pd.net.swarm import Identity

    key = host_key(ED25519)
    public = key.public_key.serialize()
    ident = Identity(public, peer_id_from_public_key(public), key.sign)
    der, _ = tlscert.make_certificate(ident)
    assert tlscert.verify_chain([der])[0] == ident.peer_id


SPEC_VECTORS = {  # libp2p/specs tls/tls.md "Test vectors" 1-3
    "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv": "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77",  # noqa: E501
    "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE": "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a",  # noqa: E501
    "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs": "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd300a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6b5d46899cef0",  # noqa: E501
}
SPEC_INVALID = "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406e52e084e34a3fd56eef0d0df"  # noqa: E501


@pytest.mark.parametrize("peer", sorted(SPEC_VECTORS))
def test_the_spec_test_vectors_authenticate_their_peer_ids(peer):
    got, _ = tlscert.verify_chain([bytes.fromhex(SPEC_VECTORS[peer])])
    assert b58encode(got) == peer


def test_the_spec_invalid_vector_is_refused_for_its_signature():
    with pytest.raises(TlsCertError, match="signature does not verify"):
        tlscert.verify_chain([bytes.fromhex(SPEC_INVALID)])


def build(key_type=ED25519, *, extension=True, value=None, critical=False, extra=None,
          not_before=None, not_after=None, sign_with=None):
    """A certificate shaped like ours with one thing changed."""
    host = host_key(key_type)
    cert_key = ec.generate_private_key(ec.SECP256R1())
    spki = cert_key.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if value is None:
        sig = host.sign(tlscert.SIGNATURE_PREFIX + spki)
        value = tlscert.encode_signed_key(host.public_key.serialize(), sig)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(cert_key.public_key()).serial_number(1)
         .not_valid_before(not_before or NOW - datetime.timedelta(hours=1))
         .not_valid_after(not_after or NOW + datetime.timedelta(days=1)))
    if extension:
        b = b.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(tlscert.EXTENSION_OID), value), critical=critical)
    if extra is not None:
        b = b.add_extension(extra, critical=True)
    cert = b.sign(sign_with or cert_key, hashes.SHA256())
    return cert.public_bytes(DER), host


def test_a_certificate_without_the_libp2p_extension_is_refused():
    der, _ = build(extension=False)
    with pytest.raises(TlsCertError, match="lacks the libp2p public key extension"):
        tlscert.verify_chain([der])


def test_the_extension_may_be_marked_critical():
    der, host = build(critical=True)
    assert tlscert.verify_chain([der])[1] == host.public_key.serialize()


@KEY_TYPES
def test_a_host_signature_over_other_bytes_is_refused(key_type):
    host = host_key(key_type)
    bad = tlscert.encode_signed_key(host.public_key.serialize(),
                                    host.sign(tlscert.SIGNATURE_PREFIX + b"another key"))
    der, _ = build(key_type, value=bad)
    with pytest.raises(TlsCertError, match="signature does not verify"):
        tlscert.verify_chain([der])


def test_a_signature_by_another_host_key_is_refused():
    other = host_key(ED25519)
    der, _ = build()
    cert = x509.load_der_x509_certificate(der)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(tlscert.EXTENSION_OID))
    _, sig = tlscert.decode_signed_key(ext.value.value)
    der2, _ = build(value=tlscert.encode_signed_key(other.public_key.serialize(), sig))
    with pytest.raises(TlsCertError, match="signature does not verify"):
        tlscert.verify_chain([der2])


def test_a_bad_self_signature_is_refused():
    der, _ = build(sign_with=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TlsCertError, match="self-signature is not valid"):
        tlscert.verify_chain([der])


@KEY_TYPES
def test_a_peer_id_other_than_the_dialed_one_is_refused(key_type):
    der, host = build(key_type)
    dialed = peer_id_from_public_key(host_key(ED25519).public_key.serialize())
    with pytest.raises(TlsCertError, match=f"not the dialed {b58encode(dialed)}"):
        tlscert.verify_chain([der], expected_peer=dialed)


def test_an_expired_or_not_yet_valid_certificate_is_refused():
    der, _ = build(not_before=NOW - datetime.timedelta(days=10),
                   not_after=NOW - datetime.timedelta(days=1))
    with pytest.raises(TlsCertError, match="expired"):
        tlscert.verify_chain([der])
    der, _ = tlscert.make_certificate(host_key(ED25519))
    with pytest.raises(TlsCertError, match="expired"):
        tlscert.verify_chain([der], now=NOW + datetime.timedelta(days=101 * 365))
    with pytest.raises(TlsCertError, match="not valid before"):
        tlscert.verify_chain([der], now=NOW - datetime.timedelta(days=1))


def test_a_chain_of_other_than_one_certificate_is_refused():
    der, _ = tlscert.make_certificate(host_key(ED25519))
    for chain in ([], [der, der]):
        with pytest.raises(TlsCertError, match="not exactly one"):
            tlscert.verify_chain(chain)


def test_an_unknown_critical_extension_is_refused():
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    der, _ = build(extra=unknown)
    with pytest.raises(TlsCertError, match="critical extension we do not understand"):
        tlscert.verify_chain([der])


def test_a_known_critical_extension_is_accepted():
    der, _ = build(extra=x509.BasicConstraints(ca=False, path_length=None))
    tlscert.verify_chain([der])


def test_garbage_instead_of_a_certificate_is_refused():
    with pytest.raises(TlsCertError, match="does not parse"):
        tlscert.verify_chain([b"\x30\x03\x02\x01\x01"])


@pytest.mark.parametrize("value, why", [
    (b"", "truncated"),
    (b"\x04\x00", "not a SignedKey SEQUENCE"),
    (b"\x30\x02\x04\x00", "lacks its signature"),
    (b"\x30\x04\x04\x00\x04\x00", "empty public key"),
    (b"\x30\x05\x04\x01\x01\x04\x05", "runs past the end"),
    (b"\x30\x05\x04\x01\x01\x02\x00", "signature is not an OCTET STRING"),
    (b"\x30\x07\x04\x01\x01\x04\x00\x05\x00", "more than two fields"),
    (b"\x30\x05\x04\x01\x01\x04\x00\x00", "bytes after"),
    (b"\x30\x81\x05\x04\x01\x01\x04\x00", "not minimally encoded"),
    (b"\x30\x80\x04\x01\x01\x04\x00\x00\x00", "indefinite"),
])
def test_malformed_signed_keys_are_refused(value, why):
    with pytest.raises(TlsCertError, match=why):
        tlscert.decode_signed_key(value)


@KEY_TYPES
def test_an_unusable_host_key_in_the_extension_is_refused(key_type):
    value = tlscert.encode_signed_key(b"\x08\x07\x12\x01\x00", b"sig")
    der, _ = build(key_type, value=value)
    with pytest.raises(TlsCertError, match="host key is unusable"):
        tlscert.verify_chain([der])
