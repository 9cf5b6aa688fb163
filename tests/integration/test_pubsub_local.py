"""A local subscriber receives what its own daemon publishes (go-libp2p-pubsub's behaviour,
which the upstream p2pclient suite expects), exactly once each, on both routers, with and
without remote peers in the topic."""

from __future__ import annotations

import pytest
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.utils import read_pbmsg_safe
from test_daemon_harness import Daemon

from p2pd.proto import daemon_pb2 as pb


async def read_messages(stream, n: int, timeout: float = 10.0) -> list[pb.PSMessage]:
    got = []
    with trio.fail_after(timeout):
        while len(got) < n:
            m = pb.PSMessage()
            await read_pbmsg_safe(stream, m)
            got.append(m)
    return got


async def assert_nothing_more(stream, wait: float = 1.0) -> None:
    with trio.move_on_after(wait):
        m = pb.PSMessage()
        await read_pbmsg_safe(stream, m)
        raise AssertionError(f"duplicate or stray message {m}")


@pytest.mark.parametrize("router", ["gossipsub", "floodsub"])
async def test_a_daemon_delivers_its_own_publishes_to_its_subscribers_once(router):
    with Daemon("-pubsub", "-pubsubRouter", router) as d:
        c = Client(Multiaddr(d.control))
        first = await c.pubsub_subscribe("self")
        second = await c.pubsub_subscribe("self")
        for i in range(3):
            await c.pubsub_publish("self", b"mine %d" % i)
        for stream in (first, second):
            got = await read_messages(stream, 3)
            assert [m.data for m in got] == [b"mine %d" % i for i in range(3)]
            assert all(m.topicIDs == ["self"] for m in got)
            assert {bytes(m.seqno) for m in got} and len({bytes(m.seqno) for m in got}) == 3
            await assert_nothing_more(stream)
            await stream.aclose()


async def test_own_publishes_arrive_once_while_a_remote_peer_also_subscribes():
    with Daemon("-pubsub") as a, Daemon("-pubsub") as b:
        ca, cb = Client(Multiaddr(a.control)), Client(Multiaddr(b.control))
        await ca.connect(*await cb.identify())
        local = await ca.pubsub_subscribe("both")
        remote = await cb.pubsub_subscribe("both")
        with trio.fail_after(15):
            while not await ca.pubsub_list_peers("both"):
                await trio.sleep(0.1)
        await trio.sleep(1.5)  # a heartbeat: b is in a's mesh and could echo back to a
        for i in range(3):
            await ca.pubsub_publish("both", b"from a %d" % i)
        for stream in (local, remote):
            got = await read_messages(stream, 3)
            assert sorted(m.data for m in got) == [b"from a %d" % i for i in range(3)]
            await assert_nothing_more(stream, 1.5)
            await stream.aclose()


async def test_pubsub_sign_false_publishes_unsigned_messages_as_the_go_daemon():
    with Daemon("-pubsub", "-pubsubSign=false") as unsigned, Daemon("-pubsub") as signed:
        for d, want_signature in ((unsigned, False), (signed, True)):
            c = Client(Multiaddr(d.control))
            stream = await c.pubsub_subscribe("sig")
            await c.pubsub_publish("sig", b"x")
            [m] = await read_messages(stream, 1)
            assert bool(m.signature) == want_signature and bool(m.key) is False
            await stream.aclose()
