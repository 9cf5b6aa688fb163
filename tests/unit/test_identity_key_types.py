"""Key files of every type go and js write are accepted when read (no py-libp2p here): RSA
as PKCS#1 or PKCS#8 DER, secp256k1 as its 32-byte secret, ECDSA as SEC1 or PKCS#8 DER."""

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from p2pd.errors import ConfigError
from p2pd.identity import (
    KEY_TYPE_ECDSA,
    KEY_TYPE_RSA,
    KEY_TYPE_SECP256K1,
    SECP256K1_ORDER,
    PrivateKeyRecord,
    encode_private_key,
    read_identity,
)

DER, NONE = ser.Encoding.DER, ser.NoEncryption()
PKCS1, PKCS8 = ser.PrivateFormat.TraditionalOpenSSL, ser.PrivateFormat.PKCS8


def write(tmp_path, key_type: int, data: bytes):
    path = tmp_path / "id.key"
    path.write_bytes(encode_private_key(PrivateKeyRecord(key_type, data)))
    return path


@pytest.mark.parametrize("fmt", [PKCS1, PKCS8])
def test_rsa_key_files_in_both_der_forms_are_read(tmp_path, fmt):
    data = rsa.generate_private_key(65537, 2048).private_bytes(DER, fmt, NONE)
    assert read_identity(write(tmp_path, KEY_TYPE_RSA, data)).data == data


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
@pytest.mark.parametrize("fmt", [PKCS1, PKCS8])
def test_ecdsa_key_files_on_gos_curves_are_read(tmp_path, curve, fmt):
    data = ec.generate_private_key(curve).private_bytes(DER, fmt, NONE)
    assert read_identity(write(tmp_path, KEY_TYPE_ECDSA, data)).key_type == KEY_TYPE_ECDSA


def test_ecdsa_on_another_curve_and_a_mislabelled_key_are_refused(tmp_path):
    data = ec.generate_private_key(ec.SECP256K1()).private_bytes(DER, PKCS8, NONE)
    with pytest.raises(ConfigError, match="ECDSA curve secp256k1 is not supported"):
        read_identity(write(tmp_path, KEY_TYPE_ECDSA, data))
    data = ed25519.Ed25519PrivateKey.generate().private_bytes(DER, PKCS8, NONE)
    with pytest.raises(ConfigError, match="marked ECDSA but holds another kind"):
        read_identity(write(tmp_path, KEY_TYPE_ECDSA, data))


def test_secp256k1_secrets_in_range_are_read_and_the_order_is_not(tmp_path):
    assert read_identity(write(tmp_path, KEY_TYPE_SECP256K1, b"\x00" * 31 + b"\x01"))
    top = (SECP256K1_ORDER - 1).to_bytes(32, "big")
    assert read_identity(write(tmp_path, KEY_TYPE_SECP256K1, top)).data == top
    with pytest.raises(ConfigError, match="out of range"):
        read_identity(write(tmp_path, KEY_TYPE_SECP256K1, SECP256K1_ORDER.to_bytes(32, "big")))


def test_secp256k1_signatures_are_low_s():
    """js (noble-secp256k1) refuses high-s signatures, go (btcec) makes only low-s ones."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from p2pd.keys import SECP256K1, SECP256K1_N, load_private_key
    from p2pd.peerkeys import verify_signature

    key = load_private_key(SECP256K1, b"\x00" * 31 + b"\x07")
    for i in range(64):  # an unnormalised signer makes a high s in half of them
        sig = key.sign(b"message %d" % i)
        assert decode_dss_signature(sig)[1] <= SECP256K1_N // 2
        assert verify_signature(key.public_key.serialize(), b"message %d" % i, sig)
