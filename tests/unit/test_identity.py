"""Identity files use the go daemon's -id format and are created private and only once."""

import os
import stat

import nacl.signing
import pytest

from p2pd.errors import ConfigError
from p2pd.identity import (
    KEY_TYPE_ED25519,
    PrivateKeyRecord,
    decode_private_key,
    encode_private_key,
    load_or_create_identity,
    read_identity,
)


def test_first_use_creates_a_0600_ed25519_key_and_later_uses_reuse_it(tmp_path):
    path = tmp_path / "identity.key"
    record, created = load_or_create_identity(path)
    assert created and record.key_type == KEY_TYPE_ED25519 and len(record.data) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created_again = load_or_create_identity(path)
    assert again == record and not created_again


def test_encoding_is_the_libp2p_private_key_protobuf():
    seed = bytes(range(32))
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    blob = encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, seed + public))
    assert blob[:4] == b"\x08\x01\x12\x40"
    assert decode_private_key(blob).data == seed + public


def test_a_32_byte_seed_file_from_py_libp2p_is_accepted(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, b"\x07" * 32)))
    assert read_identity(path).data == b"\x07" * 32


def test_mismatched_public_half_is_refused(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, b"\x07" * 64)))
    with pytest.raises(ConfigError, match="does not match"):
        read_identity(path)


@pytest.mark.parametrize("blob", [b"", b"\x08", b"\x08\x01\x12\x40abc", b"\x0b", b"\xff" * 12])
def test_garbage_key_files_are_refused_with_a_config_error(tmp_path, blob):
    path = tmp_path / "k"
    path.write_bytes(blob)
    with pytest.raises(ConfigError, match=str(path)):
        read_identity(path)


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_identity(tmp_path / "nope")


def test_key_converts_to_a_key_pair_with_the_same_public_key():
    from p2pd.identity import new_ed25519, to_key_pair

    r = new_ed25519()
    pair = to_key_pair(r)
    assert pair.public_key.to_bytes() == r.data[32:]
    assert pair.public_key.serialize() == b"\x08\x01\x12\x20" + r.data[32:]


def test_a_96_byte_js_libp2p_ed25519_key_file_gives_the_same_identity_as_64_bytes(tmp_path):
    # No libp2p import here: its crypto protos clash with p2pclient's in one process.
    from p2pd.identity import ed25519_seed

    seed = bytes(range(32))
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    js, go = tmp_path / "js.key", tmp_path / "go.key"
    js.write_bytes(encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, seed + public + public)))
    go.write_bytes(encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, seed + public)))
    assert ed25519_seed(read_identity(js)) == ed25519_seed(read_identity(go)) == seed


def test_a_96_byte_key_whose_public_copies_differ_is_refused_naming_the_file(tmp_path):
    seed = bytes(range(32))
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    path = tmp_path / "k"
    path.write_bytes(encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519,
                                                         seed + public + b"\x00" * 32)))
    with pytest.raises(ConfigError, match=f"{path}.*differ"):
        read_identity(path)
