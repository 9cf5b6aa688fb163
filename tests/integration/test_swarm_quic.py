"""Two of our swarms over QUIC v1 on real UDP sockets on 127.0.0.1: streams echo (16 MiB,
hundreds at once), identify carries the quic-v1 address, a dial that finds another peer id
is refused, a certificate without the libp2p extension is cut off, garbage datagrams and a
handshake that never finishes cost the listener a bounded amount and nothing else."""

from __future__ import annotations

import datetime
import os
import socket

import nacl.signing
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pd.net.quic import QuicTransport
from p2pd.net.quic_core import (
    Libp2pQuicConnection,
    QuicSettings,
    make_configuration,
    quic_multiaddr,
    quic_target,
)
from p2pd.net.swarm import TLS, DialError, Identity, Swarm, SwarmOptions, tcp_multiaddr
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


async def start(nursery, *, tcp: bool = False, **options) -> tuple[Swarm, QuicTransport, bytes]:
    swarm = Swarm(identity(), SwarmOptions(**options))
    transport = QuicTransport(swarm)
    swarm.set_stream_handler(ECHO, echo)
    listen = [quic_multiaddr("127.0.0.1", 0)] + ([tcp_multiaddr("127.0.0.1", 0)] if tcp else [])
    addrs = await nursery.start(swarm.run, listen)
    return swarm, transport, addrs[0]


async def echo_through(b: Swarm, a: Swarm, size: int, chunk: int = 64 * 1024) -> None:
    stream = await b.new_stream(a.me, [ECHO])
    blob = os.urandom(size)
    got = bytearray()

    async def send() -> None:
        for i in range(0, size, chunk):
            await stream.write(blob[i : i + chunk])
        await stream.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while data := await stream.read():
            got += data
    assert bytes(got) == blob


async def test_a_16_mib_stream_echoes_over_quic_and_identify_carries_quic_addresses():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, _, b_addr = await start(nursery)
        assert quic_target(a_addr)[0] == "127.0.0.1"
        with trio.fail_after(60):
            conn = await b.dial(a.me, [a_addr])
            assert (conn.transport, conn.security, conn.direction) == ("quic", TLS, "outbound")
            await echo_through(b, a, 16 << 20)
            await conn.identified.wait()
            assert a_addr in b.peerstore.peer_addrs(a.me)
            [back] = a.conns[b.me]
            await back.identified.wait()
            assert back.transport == "quic" and back.direction == "inbound"
            assert b_addr in a.peerstore.peer_addrs(b.me)
            assert len(await a.ping(b.me, 3)) == 3
        nursery.cancel_scope.cancel()


async def test_three_hundred_streams_at_once_all_echo():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        with trio.fail_after(60):
            await b.dial(a.me, [a_addr])
            async with trio.open_nursery() as streams:
                for _ in range(300):  # more than the 256 a peer may open at once
                    streams.start_soon(echo_through, b, a, 32 * 1024, 8 * 1024)
            assert len(b.conns[a.me]) == 1
        nursery.cancel_scope.cancel()


async def test_quic_is_dialed_first_when_the_peer_offers_tcp_too():
    async with trio.open_nursery() as nursery:
        a, _, _ = await start(nursery, tcp=True)
        b, _, _ = await start(nursery)
        tcp_addr = next(x for x in a.listen_addrs if quic_target(x) is None)
        with trio.fail_after(20):
            conn = await b.dial(a.me, [tcp_addr, a.listen_addrs[0]])
        assert conn.transport == "quic"
        nursery.cancel_scope.cancel()


async def test_a_dialed_peer_id_that_does_not_match_is_refused_and_the_listener_serves_on():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        c, _, _ = await start(nursery)
        wrong = identity().peer_id
        with trio.fail_after(20):
            with pytest.raises(DialError, match="(?i)peer|certificate"):
                await b.dial(wrong, [a_addr])
            await c.dial(a.me, [a_addr])
            await echo_through(c, a, 256 * 1024)
        assert wrong not in b.conns and a.me not in b.conns
        nursery.cancel_scope.cancel()


def plain_certificate():
    """A self-signed certificate without the libp2p extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not libp2p")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


async def test_a_client_certificate_without_the_libp2p_extension_is_cut_off():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, b_quic, _ = await start(nursery)
        c, _, _ = await start(nursery)
        b_quic._certificate = plain_certificate()
        with trio.fail_after(20):
            try:
                conn = await b.dial(a.me, [a_addr])
            except DialError:
                pass
            else:  # the client's side of the handshake finished first: the server closes
                await conn.gone.wait()
            assert b.me not in a.conns
            await c.dial(a.me, [a_addr])
            await echo_through(c, a, 256 * 1024)  # a serves everyone else
        nursery.cancel_scope.cancel()


async def test_garbage_datagrams_do_not_disturb_a_working_connection():
    async with trio.open_nursery() as nursery:
        a, a_quic, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        host, port, _ = quic_target(a_addr)
        junk = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await junk.bind(("127.0.0.1", 0))
        done = trio.Event()

        async def spray() -> None:
            shapes = [b"", b"\x00", b"\xc0" + os.urandom(1300), b"\x40" + os.urandom(40),
                      b"\xc3\x00\x00\x00\x01\x08" + os.urandom(1250), os.urandom(1200)]
            n = 0
            while not done.is_set():
                await junk.sendto(shapes[n % len(shapes)] or os.urandom(n % 1500),
                                  (host, port))
                n += 1
                if n % 20 == 0:
                    await trio.sleep(0)

        with trio.fail_after(60):
            await b.dial(a.me, [a_addr])
            nursery.start_soon(spray)
            await echo_through(b, a, 4 << 20)
            done.set()
        [sock] = a_quic.sockets
        assert sock.router.dropped > 0
        assert len(sock.router.pending) <= 1  # junk Initials fail to decrypt: no state
        junk.close()
        nursery.cancel_scope.cancel()


async def test_a_handshake_that_never_finishes_is_bounded():
    async with trio.open_nursery() as nursery:
        a, a_quic, a_addr = await start(nursery, handshake_timeout=1.0)
        host, port, _ = quic_target(a_addr)
        settings = QuicSettings()
        silent = Libp2pQuicConnection(
            configuration=make_configuration(identity(), settings, is_client=True),
            settings=settings)
        silent.connect((host, port), now=trio.current_time())
        raw = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await raw.bind(("127.0.0.1", 0))
        for data, addr in silent.datagrams_to_send(now=trio.current_time()):
            await raw.sendto(data, addr)  # the Initial, then nothing more
        [sock] = a_quic.sockets
        with trio.fail_after(5):
            while not sock.router.pending:
                await trio.sleep(0.01)
        with trio.fail_after(10):  # the handshake timeout, then the close drains
            while sock.router.pending or sock.sessions:
                await trio.sleep(0.05)
        assert not a.conns
        raw.close()
        nursery.cancel_scope.cancel()
