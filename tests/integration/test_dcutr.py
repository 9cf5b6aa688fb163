"""DCUtR between our swarms on real sockets: a relayed connection is upgraded to a direct
one (both sides dial; the relayed connection is retired) and a hole-punch stream that
misbehaves is reset while the node goes on.

On one machine there is no NAT and every address is loopback, so the punchers here keep
loopback addresses (``usable``); the lab (tests/lab/test_lab_autonat.py) punches through
real port-restricted NATs with the default, public-only choice."""

from __future__ import annotations

import trio
from integration.test_relay import ECHO, circuit, roundtrip, setup

from p2pd.framing import FrameDecoder
from p2pd.net import dcutr
from p2pd.net.dcutr import CONNECT, SYNC, HolePunch, HolePuncher
from p2pd.net.swarm import StreamReset, dial_target, tcp_multiaddr


def _listen_addrs(swarm):
    return lambda: list(swarm.addresses.listen)


def _loopback(addrs: list[bytes]) -> list[bytes]:
    return [a for a in addrs if dial_target(a) is not None]


async def _punchers(nursery, swarms):
    out = []
    for s in swarms:
        hp = HolePuncher(s, _listen_addrs(s), usable=_loopback)
        await nursery.start(hp.run)
        out.append(hp)
    return out


async def test_a_relayed_connection_becomes_direct_and_the_relayed_one_is_retired(monkeypatch):
    monkeypatch.setattr(dcutr, "GRACE", 0.5)
    async with trio.open_nursery() as nursery:
        relay, relay_addr, _service, a, ta, b, _tb = await setup(nursery)
        hp_a, hp_b = await _punchers(nursery, [a, b])
        await ta.reserve(relay.me, [relay_addr])
        # b dials a through the relay: a accepted the relayed connection, so a starts DCUtR
        relayed = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        assert relayed.transport == "relay"
        with trio.fail_after(15):
            while (c := b.connection(a.me)) is None or c.transport == "relay":
                await trio.sleep(0.05)
        assert hp_a.stats["direct"] == 1 and hp_a.stats["rounds"] >= 1
        with trio.fail_after(10):
            while not relayed.closed:
                await trio.sleep(0.05)
        stream = await b.connection(a.me).open_stream([ECHO], 5)
        assert await roundtrip(stream, b"x" * 100_000) == b"x" * 100_000
        assert hp_b.stats["failed"] == 0
        nursery.cancel_scope.cancel()


async def _reply_to(stream, messages: list[bytes]) -> str:
    """Send ``messages``; what the other side did: 'reset', 'closed' or 'answered'."""
    try:
        for m in messages:
            await stream.write(m)
        decoder = FrameDecoder(dcutr.MAX_MESSAGE)
        with trio.fail_after(5):
            while True:
                data = await stream.read()
                if not data:
                    return "closed"
                decoder.receive_data(data)
                if decoder.next_frame() is not None:
                    return "answered"
    except StreamReset:
        return "reset"


async def test_bad_hole_punch_messages_are_reset_and_the_node_goes_on():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, _service, a, ta, b, _tb = await setup(nursery)
        [hp_a] = await _punchers(nursery, [a])  # b runs no puncher: it only sends junk
        await ta.reserve(relay.me, [relay_addr])
        relayed = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        for junk in (b"\x05\xff\xff\xff\xff\xff",               # malformed protobuf
                     HolePunch(SYNC).framed(),                  # SYNC before CONNECT
                     HolePunch(7).framed(),                     # unknown type
                     b"\xff\xff\x03" + b"\x00" * 10):           # a frame past the limit
            stream = await relayed.open_stream([dcutr.PROTOCOL], 5)
            assert await _reply_to(stream, [junk]) == "reset", junk
        # A answers a good CONNECT but not a second CONNECT where SYNC belongs
        stream = await relayed.open_stream([dcutr.PROTOCOL], 5)
        assert await _reply_to(stream, [HolePunch(CONNECT, []).framed()]) == "answered"
        await stream.write(HolePunch(CONNECT, []).framed())
        with trio.fail_after(5):
            try:
                while await stream.read():
                    pass
                outcome = "closed"
            except StreamReset:
                outcome = "reset"
        assert outcome == "reset"
        assert hp_a.stats["direct"] == 0
        # the relayed connection still carries streams
        echo = await relayed.open_stream([ECHO], 5)
        assert await roundtrip(echo, b"still here") == b"still here"
        nursery.cancel_scope.cancel()


async def test_endless_connects_on_one_relayed_connection_make_at_most_three_dials():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, _service, a, ta, b, _tb = await setup(nursery)
        [hp_a] = await _punchers(nursery, [a])
        await ta.reserve(relay.me, [relay_addr])
        relayed = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        nowhere = [tcp_multiaddr("127.0.0.1", 9)]  # discard port: nothing listens
        for _ in range(6):
            stream = await relayed.open_stream([dcutr.PROTOCOL], 5)
            assert await _reply_to(stream, [HolePunch(CONNECT, nowhere).framed()]) == "answered"
            await stream.write(HolePunch(SYNC).framed())
            with trio.fail_after(10):
                while hp_a._busy or (hp_a.stats["rounds"] + hp_a.stats["refused"]) < _ + 1:
                    await trio.sleep(0.02)
        assert hp_a.stats["rounds"] == dcutr.ATTEMPTS and hp_a.stats["refused"] == 3
        assert hp_a.stats["failed"] == 3 and "refused" in hp_a.stats["last_failure"]
        nursery.cancel_scope.cancel()
