"""QUIC v1 against a real third-party peer: the go-libp2p daemon (hivemind's fork, QUIC v1
on by default, quic-go underneath). Ours dials it and it dials ours over /udp/N/quic-v1 on
127.0.0.1, every key type on our side: the libp2p TLS handshake inside QUIC authenticates
both ways, identify and ping work, and a 64 MiB stream echoes each way through the go
daemon's control socket (its stream handler on one side, STREAM_OPEN on the other)."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio
from harness.gocontrol import GoPeer, echo_over
from test_tls_interop import KEY_TYPES, identity

from p2pd.net.quic import QuicTransport
from p2pd.net.quic_core import quic_multiaddr, quic_target
from p2pd.net.swarm import TLS, Swarm, SwarmOptions, tcp_multiaddr

pytestmark = [pytest.mark.interop]
ECHO = "/echo/1.0.0"
BIG = 64 << 20


def go_peer() -> GoPeer:
    try:
        return GoPeer()
    except Exception as exc:  # the wheel could not be fetched: say so
        pytest.skip(f"go daemon unavailable: {exc}")


async def echo_handler(stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def start(nursery, kind: str = "ed25519") -> tuple[Swarm, bytes]:
    swarm = Swarm(identity(kind), SwarmOptions())
    QuicTransport(swarm)
    swarm.set_stream_handler(ECHO, echo_handler)
    [addr] = await nursery.start(swarm.run, [quic_multiaddr("127.0.0.1", 0)])
    return swarm, addr


async def echo_through_swarm(swarm: Swarm, peer: bytes, size: int) -> None:
    stream = await swarm.new_stream(peer, [ECHO])
    blob = os.urandom(size)
    digest = hashlib.sha256()
    got = 0

    async def send() -> None:
        for i in range(0, size, 1 << 20):
            await stream.write(blob[i : i + (1 << 20)])

    # the go daemon ends the whole stream at our FIN: close only once the echo is back
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while got < size and (data := await stream.read()):
            digest.update(data)
            got += len(data)
    await stream.close()
    assert got == size and digest.digest() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize("ours", sorted(KEY_TYPES))
async def test_our_swarm_and_the_go_daemon_over_quic_both_ways(ours):
    go = go_peer()
    try:
        assert any(quic_target(a) for a in go.addrs)
        async with trio.open_nursery() as nursery:
            swarm, addr = await start(nursery, ours)
            with trio.fail_after(20):
                conn = await swarm.dial(go.peer, go.addrs)
                await conn.identified.wait()
            assert (conn.transport, conn.security) == ("quic", TLS)
            assert "/ipfs/id/1.0.0" in swarm.peerstore.protocols[go.peer]
            assert any(quic_target(a) for a in swarm.peerstore.peer_addrs(go.peer))
            assert len(await swarm.ping(go.peer, 3)) == 3
            await swarm.disconnect(go.peer)
            with trio.fail_after(10):
                while go.peer in await trio.to_thread.run_sync(go.peers):
                    await trio.sleep(0.05)
            await trio.to_thread.run_sync(lambda: go.connect(swarm.me, [addr]))
            [back] = swarm.conns[go.peer]
            assert (back.direction, back.transport) == ("inbound", "quic")
            rtts = await trio.to_thread.run_sync(lambda: go.ping(swarm.me, 2))
            assert len(rtts) == 2
            with trio.fail_after(10):
                await back.identified.wait()
            assert swarm.peerstore.agents.get(go.peer)
            nursery.cancel_scope.cancel()
    finally:
        go.stop()


@pytest.mark.slow
async def test_64_mib_echo_each_way_between_ours_and_the_go_daemon_over_quic():
    go = go_peer()
    try:
        go.handle(ECHO, "echo")
        async with trio.open_nursery() as nursery:
            swarm, addr = await start(nursery)
            with trio.fail_after(120):
                # ours -> go: our stream, the go daemon's handler socket echoes
                await swarm.dial(go.peer, go.addrs)
                await echo_through_swarm(swarm, go.peer, BIG)
                while go.received.get(ECHO) is None:  # its handler sees our close
                    await trio.sleep(0.02)
                assert go.received[ECHO] == BIG
                # go -> ours: STREAM_OPEN on the go daemon, our swarm's handler echoes
                blob = os.urandom(BIG)

                def go_side() -> bytes:
                    with go.open_stream(swarm.me, ECHO) as sock:
                        return echo_over(sock, blob)

                got = await trio.to_thread.run_sync(go_side)
                assert len(got) == BIG and got == blob
            assert [c.transport for c in swarm.conns[go.peer]] == ["quic"]
            nursery.cancel_scope.cancel()
    finally:
        go.stop()


@pytest.mark.slow
async def test_64_mib_echo_each_way_between_ours_and_the_go_daemon_over_tcp_tls():
    """The same over TCP with TLS 1.3 only on both sides (the go daemon's -noise=false)."""
    try:
        go = GoPeer("/ip4/127.0.0.1/tcp/0", "-noise=false")
    except Exception as exc:
        pytest.skip(f"go daemon unavailable: {exc}")
    try:
        go.handle(ECHO, "echo")
        swarm = Swarm(identity(), SwarmOptions(security=(TLS,)))
        swarm.set_stream_handler(ECHO, echo_handler)
        async with trio.open_nursery() as nursery:
            [addr] = await nursery.start(swarm.run, [tcp_multiaddr("127.0.0.1", 0)])
            with trio.fail_after(120):
                conn = await swarm.dial(go.peer, go.addrs)
                assert (conn.transport, conn.security) == ("tcp", TLS)
                await echo_through_swarm(swarm, go.peer, BIG)
                while go.received.get(ECHO) is None:
                    await trio.sleep(0.02)
                assert go.received[ECHO] == BIG
                blob = os.urandom(BIG)

                def go_side() -> bytes:
                    with go.open_stream(swarm.me, ECHO) as sock:
                        return echo_over(sock, blob)

                got = await trio.to_thread.run_sync(go_side)
                assert len(got) == BIG and got == blob
            nursery.cancel_scope.cancel()
    finally:
        go.stop()
