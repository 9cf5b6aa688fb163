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
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicErrorCode, pull_quic_header
from aioquic.tls import Epoch
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
from p2pd.net.rcmgr import Limits
from p2pd.net.swarm import (
    TLS,
    DialError,
    Identity,
    StreamError,
    StreamReset,
    Swarm,
    SwarmOptions,
    tcp_multiaddr,
)
from p2pd.peerkeys import peer_id_from_public_key

ECHO = "/echo/1.0.0"
HOLD = "/hold/1.0.0"


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


async def echo(stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def hold(stream) -> None:
    """Reads nothing: what the peer sends stays buffered."""
    await trio.sleep_forever()


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


async def test_an_initial_flood_from_many_sources_gets_retries_and_a_real_peer_connects():
    """300 valid Initials from 300 source addresses (127.0.0.2-127.0.1.45, as spoofed ones
    would arrive) that never go on: they take at most half the resource manager's pending
    slots (what unvalidated sources may hold), the rest are answered with a Retry (no
    state, no slot), and a real peer dialing during the flood answers its Retry, takes a
    slot of the other half, connects and echoes."""
    async with trio.open_nursery() as nursery:
        a, a_quic, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        host, port, _ = quic_target(a_addr)
        settings = a_quic.settings
        held = a.rcmgr.unvalidated_slots
        assert held < settings.retry_above and held < a.rcmgr.limits.max_pending_inbound
        config = make_configuration(identity(), settings, is_client=True)
        flooders = []
        for i in range(300):
            raw = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await raw.bind((f"127.0.{(i + 2) // 256}.{(i + 2) % 256}", 0))
            c = Libp2pQuicConnection(configuration=config, settings=settings)
            c.connect((host, port), now=trio.current_time())
            [(initial, _)] = c.datagrams_to_send(now=trio.current_time())[:1]
            flooders.append((raw, initial))
        [sock] = a_quic.sockets
        with trio.fail_after(30):
            for raw, initial in flooders:
                await raw.sendto(initial, (host, port))
            while sock.router.retries_sent < 300 - held:
                await trio.sleep(0.01)
            # the flood holds half the slots (its handshakes never go on); ours must answer
            # a Retry to be let in
            assert len(sock.router.pending) == held
            assert a.rcmgr.pending == a.rcmgr.pending_unvalidated == held
            conn = await b.dial(a.me, [a_addr])
            await echo_through(b, a, 1 << 20)
        assert conn.transport == "quic"
        assert sock.router.retries_sent == 300 - held + 1  # the flood's, ours
        assert a.rcmgr.pending == held  # ours took a slot for its handshake and freed it
        assert a.rcmgr.peer_conns == {b.me: 1}
        retried = 0
        for raw, _ in flooders:  # what came back to the flooders: Retry packets
            with trio.move_on_after(0.5):
                data, _ = await raw.recvfrom(2048)
                retried += (data[0] & 0xF0) == 0xF0  # long header, v1 Retry (type 3)
            if retried == 300 - held:
                break
        for raw, _ in flooders:
            raw.close()
        assert retried == 300 - held
        nursery.cancel_scope.cancel()


async def test_initials_from_one_ip_past_its_rate_are_refused_and_another_peer_connects():
    """80 Initials from 127.0.0.9 (loopback not exempt here): the first ``inbound_burst``
    take a pending slot, the rest are refused before any handshake work with a
    CONNECTION_REFUSED close (counted under inbound_rate); a peer on 127.0.0.1 connects and
    echoes meanwhile, and the flood's slots come back once their handshakes time out."""
    limits = Limits(exempt_loopback=False, inbound_rate=0.01, inbound_burst=5,
                    max_conns_per_ip=64)
    async with trio.open_nursery() as nursery:
        a, a_quic, a_addr = await start(nursery, limits=limits, handshake_timeout=2.0)
        b, _, _ = await start(nursery)
        host, port, _ = quic_target(a_addr)
        settings = a_quic.settings
        config = make_configuration(identity(), settings, is_client=True)
        raw = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await raw.bind(("127.0.0.9", 0))
        clients = {}
        [sock] = a_quic.sockets
        with trio.fail_after(30):
            for _ in range(80):
                c = Libp2pQuicConnection(configuration=config, settings=settings)
                c.connect((host, port), now=trio.current_time())
                [(initial, _)] = c.datagrams_to_send(now=trio.current_time())[:1]
                clients[c.host_cid] = c
                await raw.sendto(initial, (host, port))
            while sock.router.refused < 75:
                await trio.sleep(0.01)
            assert a.rcmgr.refused["inbound_rate"] == 75
            assert len(sock.router.pending) == 5 and a.rcmgr.pending == 5
            assert a.rcmgr.ip_conns == {"127.0.0.9": 5}
            refused = 0
            while refused < 75:  # each refused client is told so
                data, _ = await raw.recvfrom(4096)
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                c = clients[header.destination_cid]
                c.receive_datagram(data, (host, port), now=trio.current_time())
                ended = c._close_event
                if ended is not None and ended.error_code == QuicErrorCode.CONNECTION_REFUSED:
                    refused += 1
            conn = await b.dial(a.me, [a_addr])
            await echo_through(b, a, 1 << 20)
            assert conn.transport == "quic" and a.rcmgr.ip_conns["127.0.0.1"] == 1
            while a.rcmgr.pending:  # the flood's five time out
                await trio.sleep(0.05)
        assert a.rcmgr.ip_conns == {"127.0.0.1": 1} and a.rcmgr.pending_unvalidated == 0
        raw.close()
        nursery.cancel_scope.cancel()


async def test_a_peer_leaving_quic_data_unread_past_its_share_is_reset_and_others_go_on():
    """b pushes 6 x 1 MiB on streams a never reads, with a memory share of 2 MiB per peer:
    a resets the streams whose data would pass b's share (b's reads see the reset) and
    holds no more than the share, while c's 8 MiB echo through a goes on."""
    limits = Limits(memory=64 << 20, memory_per_peer=2 << 20)
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery, limits=limits)
        a.set_stream_handler(HOLD, hold)
        b, _, _ = await start(nursery)
        c, _, _ = await start(nursery)
        with trio.fail_after(30):
            await b.dial(a.me, [a_addr])
            await c.dial(a.me, [a_addr])
            streams = [await b.new_stream(a.me, [HOLD]) for _ in range(6)]
            reset = []

            async def push(stream) -> None:
                try:
                    await stream.write(os.urandom(1 << 20))
                    await stream.read()
                except (StreamReset, StreamError):
                    reset.append(stream)

            async with trio.open_nursery() as pushers:
                for stream in streams:
                    pushers.start_soon(push, stream)
                await echo_through(c, a, 8 << 20)
                # 6 MiB against a 2 MiB share: at most two streams keep all they sent
                while len(reset) < 4:
                    await trio.sleep(0.01)
                pushers.cancel_scope.cancel()
        memory = a.rcmgr.memory
        assert 4 <= len(reset) == memory.streams_reset <= 6
        assert memory.peers.get(b.me, 0) <= 2 << 20
        assert a.rcmgr.summary()["Refused"]["memory_stream_reset"] == len(reset)
        assert not a.rcmgr.refused  # no connection or stream refused: c's went on
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
        assert a.rcmgr.pending == 1 and a.rcmgr.conns["inbound"] == 1  # a slot, at once
        with trio.fail_after(10):  # the handshake timeout, then the close drains
            while sock.router.pending or sock.sessions:
                await trio.sleep(0.05)
        assert not a.conns
        assert a.rcmgr.pending == 0 and a.rcmgr.conns["inbound"] == 0
        raw.close()
        nursery.cancel_scope.cancel()


async def test_a_close_reaches_the_peer_at_once():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        gone = trio.Event()

        class Watch:
            def peer_disconnected(self, peer: bytes) -> None:
                gone.set()

        a.listeners.append(Watch())
        with trio.fail_after(10):
            await b.dial(a.me, [a_addr])
            while b.me not in a.conns:
                await trio.sleep(0.01)
            start_time = trio.current_time()
            await b.disconnect(a.me)
            await gone.wait()
        # CONNECTION_CLOSE, not the idle timeout or aioquic's 3-PTO drain
        assert trio.current_time() - start_time < 0.5
        nursery.cancel_scope.cancel()


async def test_an_idle_connection_times_out_and_keepalive_keeps_one_up():
    async def pair(settings: QuicSettings):
        a = Swarm(identity(), SwarmOptions())
        QuicTransport(a, settings)
        b = Swarm(identity(), SwarmOptions())
        QuicTransport(b, settings)
        [a_addr] = await nursery.start(a.run, [quic_multiaddr("127.0.0.1", 0)])
        await nursery.start(b.run, [quic_multiaddr("127.0.0.1", 0)])
        return a, b, await b.dial(a.me, [a_addr])

    async with trio.open_nursery() as nursery:
        _, idle_b, idle = await pair(QuicSettings(idle_timeout=1.0, keepalive=1000.0))
        _, kept_b, kept = await pair(QuicSettings(idle_timeout=1.0, keepalive=0.3))
        with trio.fail_after(10):
            await idle.gone.wait()
        assert not kept.closed and kept.session.is_established  # pinged all along
        assert len(await kept_b.ping(kept.peer, 1)) == 1
        nursery.cancel_scope.cancel()


async def test_key_updates_during_a_transfer_keep_the_bytes_intact():
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        with trio.fail_after(60):
            conn = await b.dial(a.me, [a_addr])
            phases = []

            async def rekey() -> None:
                for _ in range(3):
                    await trio.sleep(0.05)
                    conn.session.quic.request_key_update()
                    conn.session.kick()
                    phases.append(conn.session.quic._cryptos[Epoch.ONE_RTT].send.key_phase)

            async with trio.open_nursery() as inner:
                inner.start_soon(rekey)
                await echo_through(b, a, 8 << 20)
            assert len(set(phases)) == 2  # the key phase flipped back and forth
            await echo_through(b, a, 64 * 1024)
        nursery.cancel_scope.cancel()


async def test_a_peer_opening_more_streams_than_allowed_is_cut_off():
    async with trio.open_nursery() as nursery:
        a = Swarm(identity(), SwarmOptions())
        QuicTransport(a, QuicSettings(max_streams=16))
        a.set_stream_handler(ECHO, echo)
        [a_addr] = await nursery.start(a.run, [quic_multiaddr("127.0.0.1", 0)])
        b, _, _ = await start(nursery)
        c, _, _ = await start(nursery)
        with trio.fail_after(20):
            conn = await b.dial(a.me, [a_addr])
            conn.session.quic._remote_max_streams_bidi = 10_000  # ignore a's limit
            for _ in range(40):
                stream = await conn.session.open_stream()
                conn.session.quic.send_stream_data(stream.stream_id, b"x")
            conn.session.kick()
            await conn.gone.wait()
            # STREAM_LIMIT_ERROR from a, with aioquic's reason
            assert "too many streams" in conn.session.close_reason.lower()
            await c.dial(a.me, [a_addr])
            await echo_through(c, a, 64 * 1024)  # a serves everyone else
        nursery.cancel_scope.cancel()


def _have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _have_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv4_and_ipv6_listen_on_the_same_udp_port_and_both_are_dialed():
    async with trio.open_nursery() as nursery:
        a = Swarm(identity(), SwarmOptions())
        QuicTransport(a)
        a.set_stream_handler(ECHO, echo)
        v4, v6 = await nursery.start(a.run, [quic_multiaddr("127.0.0.1", 0),
                                             quic_multiaddr("::1", 0)])
        assert quic_target(v4)[1] == quic_target(v6)[1]
        assert quic_target(v6)[2] == socket.AF_INET6
        b, _, _ = await start(nursery)  # IPv4 only: dials ::1 from a socket of its own
        with trio.fail_after(20):
            conn = await b.dial(a.me, [v6])
            assert quic_target(conn.remote_addr)[0] == "::1"
            await echo_through(b, a, 256 * 1024)
        nursery.cancel_scope.cancel()


async def test_a_peer_that_lost_the_connection_answers_with_a_stateless_reset():
    async with trio.open_nursery() as nursery:
        a, a_quic, a_addr = await start(nursery)
        b, _, _ = await start(nursery)
        with trio.fail_after(10):
            conn = await b.dial(a.me, [a_addr])
            while b.me not in a.conns:
                await trio.sleep(0.01)
            # a loses every trace of the connection, saying nothing (a crash, a restart
            # of the QUIC state): b would wait for its 30 s idle timeout without the reset
            [sock] = a_quic.sockets
            [lost] = list(sock.sessions)
            sock.router.forget(lost.quic)
            sock.by_conn.pop(id(lost.quic), None)
            lost._end("forgotten")
            start_time = trio.current_time()
            with pytest.raises((StreamError, StreamReset)):
                await conn.open_stream(["/ipfs/ping/1.0.0"], 5)
            await conn.gone.wait()
        assert "stateless reset" in conn.session.close_reason
        assert trio.current_time() - start_time < 2 and sock.router.resets_sent >= 1
        nursery.cancel_scope.cancel()


LAZY_SCRIPT = r'''
import sys, nacl.signing, trio
from p2pd.net.addrs import quic_multiaddr
from p2pd.net.swarm import Identity, Swarm, SwarmOptions, tcp_multiaddr
from p2pd.net.swarmhost import LazyQuic
from p2pd.peerkeys import peer_id_from_public_key

def identity():
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)

async def echo(stream):
    while data := await stream.read():
        await stream.write(data)
    await stream.close()

async def main():
    async with trio.open_nursery() as nursery:
        a, b = Swarm(identity(), SwarmOptions()), Swarm(identity(), SwarmOptions())
        LazyQuic(a), LazyQuic(b)
        await nursery.start(a.run, [tcp_multiaddr("127.0.0.1", 0)])
        print("tcp only, aioquic imported:", "aioquic" in sys.modules)
        b.set_stream_handler("/echo/1.0.0", echo)
        b_addrs = await nursery.start(b.run, [quic_multiaddr("127.0.0.1", 0)])
        a.peerstore.add_addrs(b.me, b_addrs)
        stream = await a.new_stream(b.me, ["/echo/1.0.0"])
        await stream.write(b"over quic")
        await stream.close()
        print("echo:", (await stream.read()).decode(), type(a.transports[0]).__name__,
              a.connection(b.me).transport)
        nursery.cancel_scope.cancel()

trio.run(main)
'''


def test_a_node_that_does_not_use_quic_never_imports_aioquic():
    """aioquic and its TLS cost ~55 ms of start-up: the QUIC transport is made when a
    quic-v1 address is first listened on or dialed (in a fresh interpreter: other tests
    here import aioquic), and then it works as the real one."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LAZY_SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "tcp only, aioquic imported: False", out.stdout
    assert lines[1] == "echo: over quic QuicTransport quic", out.stdout
