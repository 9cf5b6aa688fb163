"""Circuit relay v2 between three of our swarms on real sockets: a reservation, a relayed
connection through the same upgrade as TCP, the relay's limits and refusals."""

from __future__ import annotations

import os

import nacl.signing
import pytest
import trio

from p2pd.framing import FrameDecoder
from p2pd.net import relay_wire as w
from p2pd.net.relay import CIRCUIT, RelayLimits, RelayService, RelayTransport, p2p_component
from p2pd.net.swarm import DialError, Identity, StreamReset, Swarm, SwarmOptions, tcp_multiaddr
from p2pd.peerkeys import peer_id_from_public_key, verify_signature

ECHO = "/echo/1.0.0"


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


async def start(nursery) -> tuple[Swarm, bytes]:
    swarm = Swarm(identity(), SwarmOptions(backoff_base=0.0))
    [addr] = await nursery.start(swarm.run, [tcp_multiaddr("127.0.0.1", 0)])
    return swarm, addr


async def echo(stream) -> None:
    try:
        while data := await stream.read():
            await stream.write(data)
    except Exception:
        return
    await stream.close()


async def setup(nursery, **limits):
    relay, relay_addr = await start(nursery)
    service = RelayService(relay, RelayLimits(**limits), own_addrs=relay.addresses.for_peer)
    a, _ = await start(nursery)
    b, _ = await start(nursery)
    ta, tb = RelayTransport(a), RelayTransport(b)
    a.set_stream_handler(ECHO, echo)
    return relay, relay_addr, service, a, ta, b, tb


def circuit(relay_addr: bytes, relay: bytes, target: bytes) -> bytes:
    return relay_addr + p2p_component(relay) + CIRCUIT + p2p_component(target)


async def roundtrip(stream, payload: bytes) -> bytes:
    got = bytearray()

    async def reader():
        while len(got) < len(payload):
            data = await stream.read()
            if not data:
                return
            got.extend(data)

    reset = False
    try:
        async with trio.open_nursery() as n:
            n.start_soon(reader)
            for i in range(0, len(payload), 65536):
                await stream.write(payload[i : i + 65536])
    except* (StreamReset, ConnectionError):
        reset = True
    if reset:
        raise StreamReset("reset")
    return bytes(got)


async def test_a_reserved_peer_is_reached_through_the_relay_with_the_usual_upgrade():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, service, a, ta, b, _tb = await setup(nursery)
        expire = await ta.reserve(relay.me, [relay_addr])
        assert ta.relay_addrs() == [relay_addr + p2p_component(relay.me) + CIRCUIT]
        with trio.fail_after(10):
            conn = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        assert conn.transport == "relay" and conn.peer == a.me and expire > 0
        assert CIRCUIT in conn.remote_addr
        stream = await conn.open_stream([ECHO], 5)
        payload = os.urandom(1 << 20)
        with trio.fail_after(20):
            assert await roundtrip(stream, payload) == payload
        inbound = [c for c in a.conns[b.me] if c.transport == "relay"]
        assert inbound and inbound[0].direction == "inbound"
        assert service.summary()["circuits"] == 1
        nursery.cancel_scope.cancel()


async def test_no_reservation_and_limits_are_refused_with_their_status():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, service, a, ta, b, tb = await setup(nursery, max_reservations=1)
        with pytest.raises(DialError, match="NO_RESERVATION"):
            await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        await ta.reserve(relay.me, [relay_addr])
        with pytest.raises(ConnectionError, match="RESERVATION_REFUSED"):
            await tb.reserve(relay.me, [relay_addr])
        await ta.reserve(relay.me, [relay_addr])  # a renewal is no new reservation
        assert service.stats["refused"] == 1
        nursery.cancel_scope.cancel()


async def test_a_circuit_past_its_data_limit_is_reset_and_the_relay_goes_on():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, service, a, ta, b, _tb = await setup(nursery, data_limit=200_000)
        await ta.reserve(relay.me, [relay_addr])
        conn = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        stream = await conn.open_stream([ECHO], 5)
        with trio.fail_after(20):
            with pytest.raises((StreamReset, ConnectionError)):
                got = await roundtrip(stream, os.urandom(1 << 20))
                if len(got) < 1 << 20:
                    raise ConnectionError("cut short")
        with trio.fail_after(10):
            while not conn.closed:
                await trio.sleep(0.05)
        assert service.stats["limited"] == 1
        conn = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        stream = await conn.open_stream([ECHO], 5)
        assert await roundtrip(stream, b"still relaying") == b"still relaying"
        nursery.cancel_scope.cancel()


async def test_a_circuit_past_its_time_limit_is_reset():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, service, a, ta, b, _tb = await setup(nursery, time_limit=1.0)
        await ta.reserve(relay.me, [relay_addr])
        conn = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        with trio.fail_after(10):
            while not conn.closed:
                await trio.sleep(0.05)
        assert service.stats["limited"] == 1
        nursery.cancel_scope.cancel()


async def test_malformed_hop_messages_get_a_status_and_serving_goes_on():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, service, a, ta, b, _tb = await setup(nursery)
        conn = await b.dial(relay.me, [relay_addr])
        for junk, want in ((b"\x03\xff\xff\xff", w.MALFORMED_MESSAGE),
                           (w.Message(w.STATUS, status=w.OK).framed(), w.UNEXPECTED_MESSAGE)):
            stream = await conn.open_stream([w.HOP], 5)
            await stream.write(junk)
            decoder = FrameDecoder(w.MAX_MESSAGE)
            with trio.fail_after(5):
                while (frame := decoder.next_frame()) is None:
                    decoder.receive_data(await stream.read())
            assert w.decode(frame, stop=False).status == want
        await ta.reserve(relay.me, [relay_addr])
        relayed = await b.dial(a.me, [circuit(relay_addr, relay.me, a.me)])
        assert relayed.transport == "relay"
        nursery.cancel_scope.cancel()


def test_vouchers_verify_and_a_tampered_one_does_not():
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    relay = peer_id_from_public_key(pub)
    voucher = w.make_voucher(pub, lambda d: sk.sign(d).signature, relay, b"peer", 1234)
    assert w.open_voucher(voucher, verify_signature) == (relay, b"peer", 1234, pub)
    tampered = voucher.replace(b"peer", b"beer")
    with pytest.raises(w.RelayWireError, match="signature"):
        w.open_voucher(tampered, verify_signature)


async def test_a_new_reservation_reaches_connected_peers_by_identify_push():
    async with trio.open_nursery() as nursery:
        relay, relay_addr, _service, a, ta, b, _tb = await setup(nursery)
        ta.on_addrs = a.addresses.set_relay  # as the node wires it
        conn = await a.dial(b.me, b.addresses.listen)
        await conn.identified.wait()
        assert not any(CIRCUIT in x for x in b.peerstore.addrs.get(a.me, {}))
        await ta.reserve(relay.me, [relay_addr])
        with trio.fail_after(5):
            while not any(CIRCUIT in x for x in b.peerstore.addrs.get(a.me, {})):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
