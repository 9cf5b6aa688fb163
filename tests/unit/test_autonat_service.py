"""AutoNAT's client and server logic over the in-memory host (tests/harness/fakehost.py),
with a dialer that reaches a host unless it is "behind a NAT"."""

from __future__ import annotations

import struct

import pytest
import trio
from harness.fakehost import FakeHost, FakeNetwork, fake_peer_id

from p2pd.framing import FrameDecoder
from p2pd.net import autonat_wire as w
from p2pd.net.addrs import AddressManager
from p2pd.net.autonat import DIAL_DATA_MAX, DIAL_DATA_MIN, PRIVATE, PUBLIC, UNKNOWN, AutoNAT


def public_addr(n: int, port: int = 4001) -> bytes:
    return b"\x04" + bytes([203, 0, 113, n]) + b"\x06" + struct.pack(">H", port)


class DialBackConn:
    def __init__(self, host: FakeHost, peer: bytes) -> None:
        self.host, self.peer = host, peer

    async def open_stream(self, protocols, timeout):
        stream, _proto, _addr = await self.host.open_stream(self.peer, protocols, timeout)
        return stream

    async def close(self) -> None:
        await self.host.disconnect(self.peer)


class FakeDialer:
    """Dials from a host of its own; addresses in ``unreachable`` time out."""

    def __init__(self, net: FakeNetwork, n: int, unreachable: set[bytes]) -> None:
        self.host = FakeHost(net, fake_peer_id(n), public_addr(n, 9))
        net.hosts[self.host.peer_id_bytes] = self.host
        self.unreachable = unreachable
        self.dials: list[bytes] = []

    def can_dial(self, addr: bytes) -> bool:
        return True

    async def dial(self, peer, addr, timeout):
        self.dials.append(addr)
        target = self.host.network.hosts.get(peer)
        if addr in self.unreachable or target is None or target.addr != addr:
            raise ConnectionError("dial failed")
        return DialBackConn(self.host, peer)


def make_host(net: FakeNetwork, n: int) -> FakeHost:
    h = FakeHost(net, fake_peer_id(n), public_addr(n))
    net.hosts[h.peer_id_bytes] = h
    return h


def make_client(net, n: int, listen: bytes | None = None) -> tuple[FakeHost, AutoNAT]:
    host = make_host(net, n)
    addrs = AddressManager(interfaces=lambda: [])
    addrs.listen = [listen or host.addr]
    client = AutoNAT(host, addrs, None, client=True, probe_interval=0.2)
    client.attach()
    return host, client


def make_servers(net, count: int, unreachable: set[bytes], first: int = 10):
    out = []
    for i in range(count):
        host = make_host(net, first + i)
        dialer = FakeDialer(net, 100 + first + i, unreachable)
        server = AutoNAT(host, AddressManager(interfaces=lambda: []), dialer, server=True,
                         client=False)
        server.attach()
        out.append((host, server, dialer))
    return out


async def test_a_reachable_node_is_found_public_and_its_address_confirmed():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host, client = make_client(net, 1)
        changes = []
        client.on_change.append(changes.append)
        for shost, _s, _d in make_servers(net, 3, set()):
            await host.connect(shost.peer_id_bytes, [], 5)
        for _ in range(3):
            await client.probe()
        assert client.status == PUBLIC and changes == [PUBLIC]
        assert host.addr in client.addresses.confirmed
        nursery.cancel_scope.cancel()


async def test_a_node_behind_a_nat_is_found_private():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host, client = make_client(net, 1)
        for shost, _s, _d in make_servers(net, 3, {host.addr}):
            await host.connect(shost.peer_id_bytes, [], 5)
        await client.probe()
        assert client.status == PRIVATE
        assert host.addr not in client.addresses.confirmed
        nursery.cancel_scope.cancel()


async def test_fewer_servers_than_the_confidence_leave_it_unknown():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host, client = make_client(net, 1)
        for shost, _s, _d in make_servers(net, 2, set()):
            await host.connect(shost.peer_id_bytes, [], 5)
        for _ in range(4):
            await client.probe()  # the same two servers again: still two voices
        assert client.status == UNKNOWN
        nursery.cancel_scope.cancel()


async def _exchange(host: FakeHost, server: FakeHost, proto: str, *frames: bytes):
    stream, _p, _a = await host.open_stream(server.peer_id_bytes, [proto], 5)
    for frame in frames:
        await stream.write(frame)
    decoder = FrameDecoder(w.MAX_MESSAGE)
    out = b""
    with trio.fail_after(5):
        while (frame := decoder.next_frame()) is None:
            data = await stream.read()
            if not data:
                return None
            out += data
            decoder.receive_data(data)
    return frame


async def test_v1_never_dials_a_third_party_and_refuses_a_foreign_peer_id():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host = make_host(net, 1)
        [(shost, _server, dialer)] = make_servers(net, 1, set())
        victim = public_addr(77)
        ask = w.V1Message(w.DIAL, host.peer_id_bytes, [victim]).encode()
        reply = w.decode_v1(await _exchange(host, shost, w.V1, w.framed(ask)))
        # only the requester's own observed address was dialed
        assert victim not in dialer.dials and dialer.dials == [host.addr]
        assert reply.status == w.OK
        other = w.V1Message(w.DIAL, fake_peer_id(55), [host.addr]).encode()
        reply = w.decode_v1(await _exchange(host, shost, w.V1, w.framed(other)))
        assert reply.status == w.E_BAD_REQUEST
        nursery.cancel_scope.cancel()


async def test_v1_rate_limit_refuses_with_a_status():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host = make_host(net, 1)
        [(shost, server, _dialer)] = make_servers(net, 1, set())
        ask = w.framed(w.V1Message(w.DIAL, host.peer_id_bytes, []).encode())
        statuses = [w.decode_v1(await _exchange(host, shost, w.V1, ask)).status
                    for _ in range(server.v1_limit.per_peer + 1)]
        assert statuses[-1] == w.E_DIAL_REFUSED and w.OK in statuses[:-1]
        nursery.cancel_scope.cancel()


async def test_v2_asks_dial_data_for_another_ip_and_dials_after_it():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host, client = make_client(net, 1)
        [(shost, _server, dialer)] = make_servers(net, 1, set())
        other_ip = public_addr(200)
        stream, _p, _a = await host.open_stream(shost.peer_id_bytes, [w.V2_REQUEST], 5)
        await stream.write(w.framed(w.encode_v2(w.DialRequest([other_ip], 7))))
        decoder = FrameDecoder(w.MAX_MESSAGE)
        with trio.fail_after(5):
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(await stream.read())
        asked = w.decode_v2(frame)
        assert isinstance(asked, w.DialDataRequest) and asked.addr_idx == 0
        assert DIAL_DATA_MIN <= asked.num_bytes <= DIAL_DATA_MAX
        assert dialer.dials == []  # nothing dialed before the cost is paid
        chunk = w.framed(w.encode_v2(w.DialDataResponse(bytes(4096))))
        for _ in range(-(-asked.num_bytes // 4096)):
            await stream.write(chunk)
        with trio.fail_after(5):
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(await stream.read())
        reply = w.decode_v2(frame)
        assert isinstance(reply, w.DialResponse) and reply.status == w.R_OK
        assert dialer.dials == [other_ip] and reply.dial_status == w.D_DIAL_ERROR
        nursery.cancel_scope.cancel()


async def test_malformed_requests_reset_the_stream_and_the_server_keeps_serving():
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host = make_host(net, 1)
        [(shost, server, _dialer)] = make_servers(net, 1, set())
        for garbage in (b"\x05\xff\xff\xff\xff\xff", w.framed(b"\x12\x00"),
                        w.framed(w.encode_v2(w.DialDataResponse(b"x")))):
            assert await _exchange(host, shost, w.V2_REQUEST, garbage) is None
        assert server.served["bad"] == 3
        ok = w.framed(w.encode_v2(w.DialRequest([host.addr], 9)))
        reply = w.decode_v2(await _exchange(host, shost, w.V2_REQUEST, ok))
        assert reply.status == w.R_OK
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("claim", [w.D_OK])
async def test_a_server_claiming_a_dial_it_did_not_make_is_not_believed(claim):
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        host, client = make_client(net, 1)
        liars = []
        for i in range(3):
            liar = make_host(net, 40 + i)

            async def lie(stream, _claim=claim):
                decoder = FrameDecoder(w.MAX_MESSAGE)
                while decoder.next_frame() is None:
                    decoder.receive_data(await stream.read())
                await stream.write(w.framed(w.encode_v2(w.DialResponse(w.R_OK, 0, _claim))))
                await stream.close()

            liar.set_stream_handler(w.V2_REQUEST, lie)
            liars.append(liar)
            await host.connect(liar.peer_id_bytes, [], 5)
        for _ in range(3):
            await client.probe()
        assert client.status == UNKNOWN and not client.addresses.confirmed
        nursery.cancel_scope.cancel()
