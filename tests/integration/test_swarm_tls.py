"""Two of our swarms over TCP (and WebSocket) with libp2p TLS 1.3: the security protocol is
negotiated in order of preference, the muxer comes from ALPN, streams echo; a peer whose
certificate cannot authenticate it is cut off and the swarm keeps serving."""

from __future__ import annotations

import datetime

import nacl.signing
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pd.net.channel import ByteStream, ChannelClosed, negotiate_out
from p2pd.net.swarm import (
    MPLEX,
    NOISE,
    TLS,
    YAMUX,
    DialError,
    Identity,
    Swarm,
    SwarmOptions,
    tcp_multiaddr,
    tcp_target,
)
from p2pd.net.tls import TlsSecurity
from p2pd.peerkeys import peer_id_from_public_key

ECHO = "/echo/1.0.0"


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


async def echo(stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def start(nursery, ws: bool = False, **options) -> tuple[Swarm, bytes]:
    swarm = Swarm(identity(), SwarmOptions(**options))
    swarm.set_stream_handler(ECHO, echo)
    [addr] = await nursery.start(swarm.run, [tcp_multiaddr("127.0.0.1", 0, ws=ws)])
    return swarm, addr


async def echo_through(b: Swarm, a: Swarm, size: int = 1 << 20) -> None:
    stream = await b.new_stream(a.me, [ECHO])
    blob = bytes(range(256)) * (size // 256)
    got = bytearray()

    async def send():
        for i in range(0, len(blob), 65536):
            await stream.write(blob[i:i + 65536])
        await stream.close()

    async with trio.open_nursery() as n:
        n.start_soon(send)
        while data := await stream.read():
            got += data
    assert bytes(got) == blob


@pytest.mark.parametrize("ws", [False, True], ids=["tcp", "ws"])
@pytest.mark.parametrize("muxers", [(YAMUX, MPLEX), (MPLEX, YAMUX)], ids=["yamux", "mplex"])
async def test_two_swarms_echo_over_tls_with_the_muxer_from_alpn(ws, muxers):
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, ws=ws)
        b, _ = await start(nursery, muxers=muxers)
        with trio.fail_after(20):
            conn = await b.dial(a.me, [addr])
            assert conn.security == TLS and conn.muxer == muxers[0]
            await echo_through(b, a)
            [back] = a.conns[b.me]
            assert back.security == TLS and back.muxer == muxers[0]
            assert back.remote_public_key == b.identity.public_key
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("dialer, listener, expected", [
    ((TLS, NOISE), (NOISE,), NOISE),
    ((NOISE,), (TLS, NOISE), NOISE),
    ((NOISE, TLS), (TLS, NOISE), NOISE),
    ((TLS,), (NOISE, TLS), TLS),
])
async def test_security_is_the_dialers_first_choice_the_listener_has(dialer, listener, expected):
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, security=listener)
        b, _ = await start(nursery, security=dialer)
        with trio.fail_after(10):
            conn = await b.dial(a.me, [addr])
            assert conn.security == expected
            await echo_through(b, a, 4096)
        nursery.cancel_scope.cancel()


async def test_no_common_security_protocol_is_a_dial_error():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, security=(TLS,))
        b, _ = await start(nursery, security=(NOISE,))
        with pytest.raises(DialError, match="speaks none of"):
            await b.dial(a.me, [addr])
        nursery.cancel_scope.cancel()


async def test_plaintext_is_refused():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery)
        host, port, _ = tcp_target(addr)
        raw = ByteStream(await trio.open_tcp_stream(host, port))
        with pytest.raises(Exception, match="speaks none of"):
            with trio.fail_after(5):
                await negotiate_out(raw, ["/plaintext/2.0.0"])
        await raw.close()
        nursery.cancel_scope.cancel()


async def test_the_wrong_peer_behind_a_tls_address_is_refused():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, security=(TLS,))
        b, _ = await start(nursery, security=(TLS,))
        with pytest.raises(DialError, match="peer id mismatch"):
            await b.dial(identity().peer_id, [addr])
        nursery.cancel_scope.cancel()


def plain_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no libp2p here")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


async def test_a_client_without_the_extension_is_cut_off_and_the_swarm_keeps_serving():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery)
        host, port, _ = tcp_target(addr)
        bad = TlsSecurity(identity(), [YAMUX], certificate=plain_certificate())
        for _ in range(3):
            raw = ByteStream(await trio.open_tcp_stream(host, port))
            with trio.fail_after(5):
                assert await negotiate_out(raw, [TLS]) == TLS
                try:
                    channel = await bad.handshake(raw, True)
                except Exception:
                    pass  # our side saw the swarm's certificate and the close
                else:
                    await channel.write(b"\x13/multistream/1.0.0\n")
                    try:
                        assert await channel.read() == b""  # the swarm closed it
                    except ChannelClosed:
                        pass  # or reset it
            await raw.close()
        assert not a.conns
        b, _ = await start(nursery)
        with trio.fail_after(10):
            await b.dial(a.me, [addr])
            await echo_through(b, a, 4096)
        nursery.cancel_scope.cancel()


async def test_a_listener_without_the_extension_is_refused_by_the_dialer():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, security=(TLS,))
        a._tls_security = TlsSecurity(a.identity, a.options.muxers,
                                      certificate=plain_certificate())
        b, _ = await start(nursery)
        with pytest.raises(DialError, match="lacks the libp2p public key extension"):
            await b.dial(a.me, [addr])
        nursery.cancel_scope.cancel()
