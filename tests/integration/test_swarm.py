"""Our swarm (p2pd/net/swarm.py) on real sockets: what hostile or broken peers do to it.

Garbage instead of multistream, a peer that connects and never speaks, more silent peers
than the handshake slots, simultaneous dials both ways, an address that never answers
next to one that does, and the wrong peer at an address."""

from __future__ import annotations

import socket

import nacl.signing
import pytest
import trio

from p2pd.net.swarm import DialError, Identity, Swarm, SwarmOptions, tcp_multiaddr, tcp_target
from p2pd.peerkeys import peer_id_from_public_key


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


LOOPBACK = tcp_multiaddr("127.0.0.1", 0)


async def start(nursery, **options) -> tuple[Swarm, bytes]:
    swarm = Swarm(identity(), SwarmOptions(**options))
    [addr] = await nursery.start(swarm.run, [LOOPBACK])
    return swarm, addr


async def raw_connect(addr: bytes) -> trio.SocketStream:
    host, port, _ = tcp_target(addr)
    return await trio.open_tcp_stream(host, port)


async def test_garbage_instead_of_multistream_is_closed_and_the_swarm_keeps_serving():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, handshake_timeout=1.0)
        b, _ = await start(nursery)
        for junk in [b"GET / HTTP/1.1\r\n\r\n", b"\xff" * 100, b"\x13/multistream/1.0.0\n" +
                     b"\x07/noise\n" + b"\x00\x05hello"]:
            s = await raw_connect(addr)
            await s.send_all(junk)
            with trio.fail_after(3):  # at once, or (a length still unmet) at the timeout
                while await s.receive_some(1024):
                    pass  # the swarm answers (its header, na) and then closes
            await s.aclose()
        with trio.fail_after(5):
            await b.dial(a.me, [addr])
        assert a.me in b.conns
        nursery.cancel_scope.cancel()


async def test_silent_peers_hold_a_bounded_slot_for_a_bounded_time():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery, handshake_timeout=0.5, max_pending_inbound=2)
        silent = [await raw_connect(addr) for _ in range(2)]
        await trio.sleep(0.1)
        third = await raw_connect(addr)  # over the slots: closed at accept
        with trio.fail_after(2):
            assert await third.receive_some(100) == b""
        for s in silent:  # the handshake timeout closes them (after the header we sent)
            with trio.fail_after(3):
                while await s.receive_some(100):
                    pass
        assert a._pending_inbound == 0, a.rcmgr.summary()
        b, _ = await start(nursery)
        with trio.fail_after(5):
            await b.dial(a.me, [addr])
        nursery.cancel_scope.cancel()


async def test_simultaneous_dials_both_ways_end_with_one_connection():
    async with trio.open_nursery() as nursery:
        a, addr_a = await start(nursery, simultaneous_grace=0.3)
        b, addr_b = await start(nursery, simultaneous_grace=0.3)
        async with trio.open_nursery() as both:
            both.start_soon(lambda: a.dial(b.me, [addr_b]))
            both.start_soon(lambda: b.dial(a.me, [addr_a]))
        with trio.fail_after(5):
            while len(a.conns.get(b.me, ())) != 1 or len(b.conns.get(a.me, ())) != 1:
                await trio.sleep(0.05)
        [ca], [cb] = a.conns[b.me], b.conns[a.me]
        assert ca.local_addr == cb.remote_addr and ca.remote_addr == cb.local_addr
        assert len(await a.ping(b.me)) == 1
        nursery.cancel_scope.cancel()


async def test_an_address_that_never_answers_does_not_stop_the_next():
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # the kernel completes connects; nobody ever speaks
        black = tcp_multiaddr("127.0.0.1", hole.getsockname()[1])
        async with trio.open_nursery() as nursery:
            a, addr = await start(nursery)
            b, _ = await start(nursery, handshake_timeout=1.0, dial_stagger=0.2)
            with trio.fail_after(3):
                conn = await b.dial(a.me, [black, addr])
            assert conn.remote_addr == addr
            await b.disconnect(a.me)
            c, _ = await start(nursery, handshake_timeout=0.5)
            with pytest.raises(DialError, match="127.0.0.1"):
                await c.dial(a.me, [black])
            nursery.cancel_scope.cancel()


async def test_the_wrong_peer_at_an_address_is_refused_and_backed_off():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery)
        b, _ = await start(nursery)
        imposter = identity().peer_id
        with pytest.raises(DialError, match="peer id mismatch"):
            await b.dial(imposter, [addr])
        with pytest.raises(DialError, match="backoff"):
            await b.dial(imposter)
        assert a.me not in b.conns and imposter not in b.conns
        b.clear_backoff(imposter)
        with trio.fail_after(5):
            await b.dial(a.me, [addr])  # the address itself is fine for the right peer
        nursery.cancel_scope.cancel()


async def test_concurrent_dials_to_one_peer_share_one_connection():
    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery)
        b, _ = await start(nursery)
        got = []

        async def dial():
            got.append(await b.dial(a.me, [addr]))

        async with trio.open_nursery() as dials:
            for _ in range(10):
                dials.start_soon(dial)
        assert len({id(c) for c in got}) == 1 and len(b.conns[a.me]) == 1
        nursery.cancel_scope.cancel()


async def test_a_lazy_stream_negotiates_with_its_first_write_and_a_refusal_shows_on_read():
    from p2pd.net.swarm import StreamReset

    async def echo(stream):
        while data := await stream.read():
            await stream.write(data)
        await stream.close()

    async def first_byte_then_close(stream):  # answers without reading: the dialer reads first
        await stream.write(b"!")
        await stream.close()

    async with trio.open_nursery() as nursery:
        a, addr = await start(nursery)
        b, _ = await start(nursery)
        a.set_stream_handler("/echo/1", echo)
        a.set_stream_handler("/hello/1", first_byte_then_close)
        conn = await b.dial(a.me, [addr])
        with trio.fail_after(5):
            await conn.identified.wait()
        s = await conn.open_stream(["/echo/1"], 5, lazy=True)
        assert s.protocol == "/echo/1"
        await s.write(b"ping")
        await s.close()
        got = b""
        while data := await s.read():
            got += data
        assert got == b"ping"
        s = await conn.open_stream(["/hello/1"], 5, lazy=True)  # read before any write
        assert await s.read() == b"!"
        s = await conn.open_stream(["/nobody/1"], 5, lazy=True)
        await s.write(b"data the peer never sees as a protocol")
        with pytest.raises(StreamReset, match="/nobody/1"):
            await s.read()
        s = await conn.open_stream(["/echo/1"], 5, lazy=True)
        await s.close()  # closed before any write: the proposal still goes first
        assert await s.read() == b""
        assert len(b.conns[a.me]) == 1  # one connection carried it all
        nursery.cancel_scope.cancel()
