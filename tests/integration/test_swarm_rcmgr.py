"""The resource manager in two real swarms on 127.0.0.1: reservations come back when
streams and connections end, per-protocol and memory limits reset the streams past them
while the others go on."""

from __future__ import annotations

import trio
from test_swarm import identity

from p2pd.net.rcmgr import Limits
from p2pd.net.swarm import StreamError, StreamReset, Swarm, SwarmOptions, tcp_multiaddr

LOOPBACK = tcp_multiaddr("127.0.0.1", 0)


async def echo(stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def pair(nursery, limits: Limits | None = None, muxer: str = "/yamux/1.0.0"):
    a = Swarm(identity(), SwarmOptions(muxers=(muxer,)))
    b = Swarm(identity(), SwarmOptions(muxers=(muxer,), limits=limits))
    b.set_stream_handler("/echo", echo)
    b.set_stream_handler("/other", echo)
    await nursery.start(a.run, [])
    [addr] = await nursery.start(b.run, [LOOPBACK])
    conn = await a.dial(b.me, [addr])
    await conn.identified.wait()
    return a, b, conn


async def roundtrip(stream, payload: bytes) -> bytes:
    await stream.write(payload)
    await stream.close()
    got = b""
    while data := await stream.read():
        got += data
    return got


async def settle(*swarms: Swarm) -> None:
    with trio.fail_after(5):
        while any(sum(s.rcmgr.streams.values()) for s in swarms):
            await trio.sleep(0.01)


async def test_stream_reservations_come_back_on_both_sides_once_streams_end():
    for muxer in ("/yamux/1.0.0", "/mplex/6.7.0"):
        async with trio.open_nursery() as nursery:
            a, b, conn = await pair(nursery, muxer=muxer)
            streams = [await conn.open_stream(["/echo"], 5) for _ in range(40)]
            assert a.rcmgr.streams["outbound"] >= 40
            for i, s in enumerate(streams):
                assert await roundtrip(s, b"x%d" % i) == b"x%d" % i
            await settle(a, b)
            assert b.rcmgr.protocol_streams == {} and b.rcmgr.peer_streams == {}
            await conn.close()
            with trio.fail_after(5):
                while sum(a.rcmgr.conns.values()) or sum(b.rcmgr.conns.values()):
                    await trio.sleep(0.01)
            assert a.rcmgr.memory.used == 0 and b.rcmgr.memory.used == 0
            assert not (a.rcmgr.peer_conns or b.rcmgr.peer_conns or b.rcmgr.ip_conns)
            nursery.cancel_scope.cancel()


async def test_streams_past_the_per_protocol_limit_are_reset_and_other_protocols_go_on():
    async with trio.open_nursery() as nursery:
        a, b, conn = await pair(nursery, Limits(max_streams_per_protocol=5))
        held = [await conn.open_stream(["/echo"], 5) for _ in range(5)]
        for _ in range(3):
            try:  # b resets it once negotiated: before or after its echo reaches us
                s = await conn.open_stream(["/echo"], 5)
                got = await roundtrip(s, b"no")
            except (StreamReset, StreamError):
                got = None
            assert got in (None, b"")
        assert b.rcmgr.refused["max_streams_per_protocol"] == 3
        other = await conn.open_stream(["/other"], 5)
        assert await roundtrip(other, b"yes") == b"yes"
        assert await roundtrip(held[0], b"still") == b"still"
        nursery.cancel_scope.cancel()


async def test_a_memory_budget_resets_streams_it_cannot_hold_a_window_for():
    async with trio.open_nursery() as nursery:
        a, b, conn = await pair(nursery, Limits(memory=2 << 20))  # 8 windows of 256 KiB
        held, refused = [], 0
        for _ in range(12):
            try:
                held.append(await conn.open_stream(["/echo"], 5))
            except (StreamError, StreamReset):
                refused += 1
        assert len(held) <= 8 and refused >= 4
        assert b.rcmgr.memory.used <= 2 << 20 and b.rcmgr.memory.refused == refused
        assert await roundtrip(held[0], b"fine") == b"fine"
        nursery.cancel_scope.cancel()


async def test_one_peer_cannot_take_the_whole_memory_budget_from_another():
    """A 4 MiB budget with 2 MiB per peer: the first peer's streams stop at its share (8
    windows of 256 KiB) and the second peer still gets its own 8, echoing, while the first
    peer's held streams go on working."""
    async with trio.open_nursery() as nursery:
        a, b, conn = await pair(nursery, Limits(memory=4 << 20, memory_per_peer=2 << 20))
        greedy, refused = [], 0
        for _ in range(16):
            try:
                greedy.append(await conn.open_stream(["/echo"], 5))
            except (StreamError, StreamReset):
                refused += 1
        assert len(greedy) <= 8 and refused >= 8
        assert b.rcmgr.memory.peers[a.me] <= 2 << 20
        assert b.rcmgr.summary()["Refused"]["memory_per_peer"] == refused
        c = Swarm(identity(), SwarmOptions())
        await nursery.start(c.run, [])
        other = await c.dial(b.me, [b.addresses.local()[0]])
        await other.identified.wait()
        streams = [await other.open_stream(["/echo"], 5) for _ in range(8)]
        for i, s in enumerate(streams):
            assert await roundtrip(s, b"c%d" % i) == b"c%d" % i
        assert await roundtrip(greedy[0], b"a still") == b"a still"
        assert b.rcmgr.memory.used <= 4 << 20
        nursery.cancel_scope.cancel()


async def test_our_streams_past_the_outbound_limits_fail_on_our_side_and_the_rest_work():
    async with trio.open_nursery() as nursery:
        a, b, conn = await pair(nursery)
        a.rcmgr.limits.max_streams_outbound_per_protocol = 3
        a.rcmgr.limits.max_streams_outbound_per_peer = 5
        held = [await conn.open_stream(["/echo"], 5) for _ in range(3)]
        for lazy in (False, True):
            try:
                await conn.open_stream(["/echo"], 5, lazy=lazy)
            except StreamError as exc:
                assert "max_streams_outbound_per_protocol" in str(exc)
            else:
                raise AssertionError("a fourth /echo stream was opened")
        held += [await conn.open_stream(["/other"], 5) for _ in range(2)]
        try:
            await conn.open_stream(["/other"], 5)
        except StreamError as exc:
            assert "max_streams_outbound_per_peer" in str(exc)
        else:
            raise AssertionError("a sixth stream to the peer was opened")
        assert a.rcmgr.refused == {"max_streams_outbound_per_protocol": 2,
                                   "max_streams_outbound_per_peer": 1}
        for i, s in enumerate(held):
            assert await roundtrip(s, b"h%d" % i) == b"h%d" % i
        await settle(a, b)
        assert a.rcmgr.peer_streams_out == {} and a.rcmgr.protocol_streams_out == {}
        again = await conn.open_stream(["/echo"], 5)  # given back: room again
        assert await roundtrip(again, b"again") == b"again"
        nursery.cancel_scope.cancel()
