"""Pubsub between our daemons (-pubsub), driven by the unmodified ``p2pclient``: GET_TOPICS,
LIST_PEERS, PUBLISH, SUBSCRIBE with messages streamed back; gossipsub and floodsub routers;
the CLI; garbage on a pubsub stream."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.utils import read_pbmsg_safe
from test_daemon_harness import Daemon

from p2pd.proto import daemon_pb2 as pb

P2PD = [sys.executable, "-m", "p2pd"]


def client(d: Daemon) -> Client:
    return Client(Multiaddr(d.control))


async def connect_all(daemons) -> None:
    ids = [await client(d).identify() for d in daemons]
    for i, d in enumerate(daemons):
        for j in range(i + 1, len(daemons)):
            await client(d).connect(*ids[j])


async def wait_for(cond, timeout=15.0):
    with trio.fail_after(timeout):
        while not await cond():
            await trio.sleep(0.1)


@pytest.mark.parametrize("router", ["gossipsub", "floodsub"])
async def test_publish_reaches_every_subscriber_once(router):
    daemons = [Daemon("-pubsub", "-pubsubRouter", router) for _ in range(4)]
    try:
        await connect_all(daemons)
        streams = []
        for d in daemons[1:]:
            stream = await client(d).pubsub_subscribe("news")
            streams.append(stream)
        pub = client(daemons[0])

        async def everyone_sees_three() -> bool:
            return len(await pub.pubsub_list_peers("news")) == 3
        await wait_for(everyone_sees_three)
        assert list(await client(daemons[1]).pubsub_get_topics()) == ["news"]
        await trio.sleep(1.5)  # a heartbeat: meshes formed
        for i in range(5):
            await pub.pubsub_publish("news", b"hello %d" % i)
        for stream in streams:
            got = []
            with trio.fail_after(10):
                while len(got) < 5:
                    m = pb.PSMessage()
                    await read_pbmsg_safe(stream, m)
                    got.append(m.data)
            assert sorted(got) == [b"hello %d" % i for i in range(5)]
            with trio.move_on_after(1.0):  # nothing more: exactly once
                m = pb.PSMessage()
                await read_pbmsg_safe(stream, m)
                raise AssertionError(f"duplicate or stray message {m}")
            await stream.aclose()
    finally:
        for d in daemons:
            d.stop()


def test_cli_pub_sub_peers_topics():
    with Daemon("-pubsub") as a, Daemon("-pubsub") as b:
        addr = a.addrs[0] + "/p2p/" + a.peer_id
        subprocess.run([*P2PD, "connect", "--api", b.control, addr], check=True,
                       capture_output=True)
        sub = subprocess.Popen([*P2PD, "pubsub", "sub", "--api", b.control, "chat"],
                               stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                r = subprocess.run([*P2PD, "pubsub", "peers", "--api", a.control, "chat"],
                                   capture_output=True, text=True)
                if b.peer_id in r.stdout:
                    break
                time.sleep(0.2)
            assert b.peer_id in r.stdout
            topics = subprocess.run([*P2PD, "pubsub", "topics", "--api", b.control],
                                    capture_output=True, text=True, check=True).stdout
            assert topics.split() == ["chat"]
            time.sleep(1.2)
            subprocess.run([*P2PD, "pubsub", "pub", "--api", a.control, "chat", "hi there"],
                           check=True, capture_output=True)
            line = sub.stdout.readline()
            assert "hi there" in line and a.peer_id in line
        finally:
            sub.kill()
            sub.wait()
