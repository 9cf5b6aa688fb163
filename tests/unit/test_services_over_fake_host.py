"""Kad and Bitswap built in-process over the Host port (an in-memory host, no sockets,
no py-libp2p): the services depend on p2pd.net.ports, not on Node."""

from __future__ import annotations

import sys

import pytest
import trio
from harness.fakehost import FakeNetwork

from p2pd.blocks import CID, Codec
from p2pd.blocks.blockstore import Blockstore
from p2pd.exchange.service import BitswapService
from p2pd.kad.service import DHTService
from p2pd.net.ports import ProviderRecord
from p2pd.store import Datastore


@pytest.fixture
def stores(tmp_path):
    opened = []

    def make(name: str) -> Datastore:
        ds = Datastore.open(tmp_path / name)
        opened.append(ds)
        return ds

    yield make
    for ds in opened:
        ds.close()


def test_services_and_the_daemon_do_not_import_py_libp2p():
    """In a fresh interpreter (other tests here import py-libp2p): the services, the
    control server and the daemon pull in no py-libp2p module (its import costs about a
    second and 80 MB; once it happened at a node's first unary call)."""
    import subprocess

    code = ("import sys, p2pd.daemon, p2pd.node, p2pd.control.server, p2pd.control.unary, "
            "p2pd.kad.service, p2pd.exchange.service, p2pd.gossip.service, p2pd.net.streams, "
            "p2pd.net.quic, p2pd.net.relay, p2pd.net.dcutr\n"
            "print([m for m in sys.modules if m == 'libp2p' or m.startswith('libp2p.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


async def _dht_nodes(nursery, net, stores, n):
    nodes = []
    for i in range(n):
        dht = DHTService(net.host(i), stores(f"kad{i}"))
        dht.attach()
        nodes.append(dht)
    first = nodes[0].me

    async def via_first():
        return [(first, [])]

    for i, dht in enumerate(nodes):
        await nursery.start(dht.run, via_first if i else _none)
    return nodes


async def _none():
    return []


async def test_kad_over_the_host_port_provides_finds_and_learns_peers_on_connect(stores):
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        nodes = await _dht_nodes(nursery, net, stores, 6)
        # every node joined through node 0: by connection events, not a maintenance round,
        # node 0's table holds everyone within a moment
        with trio.fail_after(5):
            while len(nodes[0].table) < 5:
                await trio.sleep(0.01)
        key = b"\x12\x20" + bytes(range(32))
        assert await nodes[3].provide(key) >= 1
        found = await nodes[5].find_providers(key, 5)
        assert [p.id for p in found] == [nodes[3].me]
        assert found[0].addrs == nodes[3].host.own_addrs()
        assert await nodes[4].find_peer(nodes[2].me) == [nodes[2].host.addr]
        # a peer that is gone fails its queries and leaves the table of whoever asks it
        net.hosts[nodes[2].me].offline = True
        assert nodes[2].me in nodes[1].table
        assert await nodes[1].find_peer(b"\x00\x24" + bytes(34)) is None
        assert nodes[2].me not in nodes[1].table
        nursery.cancel_scope.cancel()


async def test_kad_server_answers_garbage_with_a_reset_and_keeps_serving(stores):
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        a, b = await _dht_nodes(nursery, net, stores, 2)
        stream, _proto, _ = await net.hosts[b.me].open_stream(a.me, ["/ipfs/kad/1.0.0"], 5)
        await stream.write(b"\x05\xff\xff\xff\xff\xff")  # a frame that is not a message
        with trio.fail_after(5):
            assert await stream.read() == b""
        assert await b.find_peer(a.me) == [a.host.addr]  # a still answers
        nursery.cancel_scope.cancel()


def _blocks(n: int, size: int = 3000) -> list[tuple[CID, bytes]]:
    out = []
    for i in range(n):
        data = bytes([i % 251]) * size + i.to_bytes(4, "big")
        out.append((CID.for_block(data, Codec.RAW), data))
    return out


class _Routing:
    """The ContentRouting port, answering from a dict."""

    def __init__(self, providers: dict[bytes, list[ProviderRecord]]) -> None:
        self.providers = providers
        self.asked: list[bytes] = []

    async def find_providers(self, key: bytes, count: int = 20):
        self.asked.append(key)
        await trio.lowlevel.checkpoint()
        return self.providers.get(key, [])[:count]

    async def provide(self, key: bytes) -> int:
        return 0


async def test_bitswap_over_the_host_port_fetches_from_a_connected_peer(stores):
    blocks = _blocks(20)
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        have, want = Blockstore(stores("have")), Blockstore(stores("want"))
        have.put_many(blocks)
        a = BitswapService(net.host(0), have)
        b = BitswapService(net.host(1), want)
        for svc in (a, b):
            svc.attach()
            await nursery.start(svc.run)
        await b.host.connect(a.host.peer_id_bytes, [], 5)
        for cid, data in blocks:
            with trio.fail_after(10):
                await b.fetch(cid, providers=False)
            assert want.get(cid) == data
        assert b.blocks_received == len(blocks) and a.blocks_sent == len(blocks)
        # a disconnect reaches the engine through the port's events: a's ledger of b goes
        await b.host.disconnect(a.host.peer_id_bytes)
        assert b.host.peer_id_bytes not in a.engine.ledgers
        nursery.cancel_scope.cancel()


async def test_bitswap_finds_a_provider_through_the_content_routing_port(stores):
    [(cid, data)] = _blocks(1)
    async with trio.open_nursery() as nursery:
        net = FakeNetwork(nursery)
        have, want = Blockstore(stores("have")), Blockstore(stores("want"))
        have.put(cid, data)
        holder = net.host(0)
        routing = _Routing({cid.multihash: [ProviderRecord(holder.peer_id_bytes,
                                                           holder.own_addrs())]})
        a = BitswapService(holder, have)
        b = BitswapService(net.host(1), want, routing=routing)
        for svc in (a, b):
            svc.attach()
            await nursery.start(svc.run)
        with trio.fail_after(20):
            await b.fetch(cid)  # not connected to anyone: only the routing port knows
        assert want.get(cid) == data and cid.multihash in routing.asked
        assert holder.peer_id_bytes in b.host.connected
        nursery.cancel_scope.cancel()


async def test_stream_helpers_read_end_of_stream_without_py_libp2p():
    from p2pd.net.streams import is_eof, read_some

    class StreamEOF(Exception):  # what py-libp2p style streams raise at their end
        pass

    class Ending:
        async def read(self):
            raise StreamEOF()

    assert await read_some(Ending()) == b""
    assert is_eof(StreamEOF()) and not is_eof(ValueError())
