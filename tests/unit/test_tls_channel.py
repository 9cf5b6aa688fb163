"""libp2p TLS 1.3 over an in-memory byte stream (p2pd.net.tls): both sides authenticate
each other for every key type, ALPN settles the muxer, data crosses intact, and a peer
whose certificate cannot authenticate it is refused by the other side."""

import datetime

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pd.keys import ECDSA, ED25519, RSA, SECP256K1, load_private_key
from p2pd.net.channel import ByteStream
from p2pd.net.tls import TlsError, TlsSecurity
from p2pd.net.tlscert import TlsCertError
from p2pd.peerkeys import peer_id_from_public_key

YAMUX, MPLEX = "/yamux/1.0.0", "/mplex/6.7.0"
TYPES = {"ed25519": ED25519, "rsa": RSA, "secp256k1": SECP256K1, "ecdsa": ECDSA}


_KEYS: dict[int, bytes] = {}


def host_key(key_type: int):
    """A host key of ``key_type`` (one per type and run: RSA generation is slow)."""
    if key_type not in _KEYS:
        der = serialization.Encoding.DER
        pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        if key_type == RSA:
            from cryptography.hazmat.primitives.asymmetric import rsa

            data = rsa.generate_private_key(65537, 2048).private_bytes(der, pkcs8, none)
            _KEYS[key_type] = data
        elif key_type == ECDSA:
            _KEYS[key_type] = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                der, pkcs8, none)
    if key_type in (ED25519, SECP256K1):
        import os

        return load_private_key(key_type, os.urandom(31) + b"\x01")
    return load_private_key(key_type, _KEYS[key_type])


def pipe():
    a, b = trio.testing.memory_stream_pair()
    return ByteStream(a), ByteStream(b)


def peer_of(key) -> bytes:
    return peer_id_from_public_key(key.public_key.serialize())


async def connect(client: TlsSecurity, server: TlsSecurity, expected=None):
    """``(client channel, server channel)``, or the exceptions each side raised."""
    a, b = pipe()
    out = {}

    async def side(name, sec, raw, initiator, exp):
        try:
            out[name] = await sec.handshake(raw, initiator, exp)
        except Exception as exc:
            out[name] = exc
            await raw.close()

    async with trio.open_nursery() as n:
        n.start_soon(side, "client", client, a, True, expected)
        n.start_soon(side, "server", server, b, False, None)
    return out["client"], out["server"]


@pytest.mark.parametrize("client_type", sorted(TYPES))
@pytest.mark.parametrize("server_type", sorted(TYPES))
async def test_both_sides_authenticate_every_key_type(client_type, server_type):
    ck, sk = host_key(TYPES[client_type]), host_key(TYPES[server_type])
    c, s = await connect(TlsSecurity(ck, [YAMUX, MPLEX]), TlsSecurity(sk, [YAMUX, MPLEX]),
                         expected=peer_of(sk))
    assert c.remote_peer == peer_of(sk) and s.remote_peer == peer_of(ck)
    assert c.remote_public_key == sk.public_key.serialize()
    assert c.is_initiator and not s.is_initiator
    assert c.muxer == s.muxer == YAMUX
    await c.write(b"hello")
    assert await s.read(5) == b"hello"
    await s.write(b"back")
    assert await c.read() == b"back"


async def test_alpn_takes_the_clients_first_muxer_the_server_has():
    c, s = await connect(TlsSecurity(host_key(ED25519), [MPLEX, YAMUX]),
                         TlsSecurity(host_key(ED25519), [YAMUX, MPLEX]))
    assert c.muxer == s.muxer == MPLEX
    c, s = await connect(TlsSecurity(host_key(ED25519), ["/other/1"]),
                         TlsSecurity(host_key(ED25519), [YAMUX]))
    assert c.muxer is None and s.muxer is None  # "libp2p": multistream picks the muxer


async def test_large_writes_cross_intact_both_ways_and_close_ends_the_reader():
    c, s = await connect(TlsSecurity(host_key(ED25519), [YAMUX]),
                         TlsSecurity(host_key(ED25519), [YAMUX]))
    blob = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4

    async def send(ch):
        for i in range(0, len(blob), 100_000):
            await ch.write(blob[i:i + 100_000])

    async with trio.open_nursery() as n:
        n.start_soon(send, c)
        n.start_soon(send, s)
        assert await s.read(len(blob)) == blob
        assert await c.read(len(blob)) == blob
    await c.close()
    assert await s.read() == b""


async def test_the_dialer_refuses_a_peer_other_than_the_dialed_one():
    wanted = peer_of(host_key(ED25519))
    c, s = await connect(TlsSecurity(host_key(ED25519), [YAMUX]),
                         TlsSecurity(host_key(ED25519), [YAMUX]), expected=wanted)
    assert isinstance(c, TlsCertError) and "not the dialed" in str(c)


def plain_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no libp2p here")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


async def test_a_certificate_without_the_extension_is_refused_on_either_side():
    bad = TlsSecurity(host_key(ED25519), [YAMUX], certificate=plain_certificate())
    good = TlsSecurity(host_key(ED25519), [YAMUX])
    c, s = await connect(bad, good)
    assert isinstance(s, TlsCertError) and "lacks the libp2p public key extension" in str(s)
    if not isinstance(c, Exception):  # the client finished first; the server closed it
        assert await c.read() == b""
    c, s = await connect(good, bad)
    assert isinstance(c, TlsCertError) and "lacks the libp2p" in str(c)


async def test_garbage_instead_of_a_client_hello_is_a_tls_error():
    a, b = pipe()
    server = TlsSecurity(host_key(ED25519), [YAMUX])
    await a.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    with pytest.raises(TlsError, match="TLS handshake failed"):
        await server.handshake(b, False)


async def test_a_peer_that_hangs_up_mid_handshake_is_a_tls_error():
    a, b = pipe()
    server = TlsSecurity(host_key(ED25519), [YAMUX])
    await a.close()
    with pytest.raises(TlsError, match="closed the connection during the TLS handshake"):
        await server.handshake(b, False)
