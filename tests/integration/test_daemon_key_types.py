"""Key files of every type go and js write (-id): the go daemon and ours derive the same peer
id from one file, and the go daemon completes a Noise handshake with ours (so our signature
with that key verifies); a wrong file is refused naming it. Keys are made with pyca/cryptography
here (no py-libp2p in this process: its protobufs clash with p2pclient's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from multiaddr import Multiaddr
from p2pclient import Client
from test_daemon_harness import Daemon

from p2pd.identity import (
    KEY_TYPE_ECDSA,
    KEY_TYPE_ED25519,
    KEY_TYPE_RSA,
    KEY_TYPE_SECP256K1,
    PrivateKeyRecord,
    encode_private_key,
)

P2PD = [sys.executable, "-m", "p2pd"]
DER, NONE = ser.Encoding.DER, ser.NoEncryption()


def key_file(kind: str) -> bytes:
    if kind == "rsa-pkcs1":
        k = rsa.generate_private_key(65537, 2048)
        return encode_private_key(PrivateKeyRecord(
            KEY_TYPE_RSA, k.private_bytes(DER, ser.PrivateFormat.TraditionalOpenSSL, NONE)))
    if kind == "secp256k1":
        k = ec.generate_private_key(ec.SECP256K1())
        secret = k.private_numbers().private_value.to_bytes(32, "big")
        return encode_private_key(PrivateKeyRecord(KEY_TYPE_SECP256K1, secret))
    if kind in ("ecdsa-p256", "ecdsa-p384"):
        k = ec.generate_private_key(ec.SECP256R1() if kind == "ecdsa-p256" else ec.SECP384R1())
        return encode_private_key(PrivateKeyRecord(
            KEY_TYPE_ECDSA, k.private_bytes(DER, ser.PrivateFormat.TraditionalOpenSSL, NONE)))
    if kind == "ed25519-96":  # js-libp2p's form: seed, public key, public key
        k = nacl.signing.SigningKey.generate()
        pub = bytes(k.verify_key)
        return encode_private_key(PrivateKeyRecord(KEY_TYPE_ED25519, bytes(k) + pub + pub))
    raise ValueError(kind)


@pytest.fixture(scope="module")
def go_binary() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.godaemon import GoDaemonUnavailable, go_daemon_path

    try:
        return str(go_daemon_path())
    except GoDaemonUnavailable as exc:
        pytest.skip(f"go daemon unavailable: {exc}")


class GoDaemon:
    def __init__(self, binary: str, *extra: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-gk-", dir="/tmp"))
        self.control = f"/unix{self.dir}/c.sock"
        self.proc = subprocess.Popen(
            [binary, "-listen", self.control, "-hostAddrs", "/ip4/127.0.0.1/tcp/0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [self.proc.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("Peer ID: "), (lines, self.proc.stderr.read())
        self.peer_id = lines[1].split()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.parametrize("kind", ["rsa-pkcs1", "secp256k1", "ecdsa-p256", "ecdsa-p384",
                                  "ed25519-96"])
async def test_a_key_file_gives_the_go_daemons_peer_id_and_a_handshake_go_accepts(
        go_binary, tmp_path, kind):
    path = tmp_path / f"{kind}.key"
    path.write_bytes(key_file(kind))
    same = GoDaemon(go_binary, "-id", str(path))
    same.stop()
    go = GoDaemon(go_binary)
    try:
        with Daemon("-id", str(path)) as ours:
            assert ours.peer_id == same.peer_id
            peer, addrs = await Client(Multiaddr(ours.control)).identify()
            await Client(Multiaddr(go.control)).connect(peer, addrs)  # go verifies our key
            peers = await Client(Multiaddr(ours.control)).list_peers()
            assert go.peer_id in [p.peer_id.to_base58() for p in peers]
    finally:
        go.stop()


@pytest.mark.parametrize(
    "record, message",
    [(PrivateKeyRecord(KEY_TYPE_RSA, b"\x30\x03\x02\x01\x00"), "RSA private key is not valid DER"),
     (PrivateKeyRecord(KEY_TYPE_SECP256K1, b"\x01" * 31), "secp256k1 private key must be 32 bytes"),
     (PrivateKeyRecord(KEY_TYPE_SECP256K1, b"\x00" * 32), "out of range"),
     (PrivateKeyRecord(KEY_TYPE_ECDSA, b"garbage"), "ECDSA private key is not valid DER"),
     (PrivateKeyRecord(9, b"x" * 32), "unknown key type 9"),
     (PrivateKeyRecord(KEY_TYPE_ED25519, b"\x01" * 40), "must be 32, 64 or 96 bytes")],
)
def test_a_wrong_key_file_is_refused_naming_the_file(tmp_path, record, message):
    path = tmp_path / "wrong.key"
    path.write_bytes(encode_private_key(record))
    env = {**os.environ, "P2PD_HOME": str(tmp_path / "home")}
    out = subprocess.run([*P2PD, "-listen", f"/unix{tmp_path}/c.sock", "-id", str(path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert f"p2pd: identity file {path}: " in out.stderr and message in out.stderr
    assert "Traceback" not in out.stderr


def test_an_rsa_key_of_the_wrong_kind_or_size_is_refused(tmp_path):
    from p2pd.errors import ConfigError
    from p2pd.identity import read_identity

    small = rsa.generate_private_key(65537, 1024)
    path = tmp_path / "small.key"
    path.write_bytes(encode_private_key(PrivateKeyRecord(
        KEY_TYPE_RSA, small.private_bytes(DER, ser.PrivateFormat.PKCS8, NONE))))
    with pytest.raises(ConfigError, match=f"{path}: RSA key of 1024 bits"):
        read_identity(path)
    p256 = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(encode_private_key(PrivateKeyRecord(
        KEY_TYPE_RSA, p256.private_bytes(DER, ser.PrivateFormat.PKCS8, NONE))))
    with pytest.raises(ConfigError, match="marked RSA but holds another kind"):
        read_identity(path)
