"""Control-socket clients that never read, against a real daemon: what waits for them is
bounded (the daemon's RSS stays flat), and everyone else is served as before.

A SUBSCRIBE client that reads nothing while 96 MiB of messages are published (at most
``SUBSCRIBER_BYTES`` wait for it; a subscriber that reads gets every message); a
STREAM_OPEN client that reads nothing while the peer's handler pushes 64 MiB at it (the
muxer window and the socket buffers are all that is held: the peer's writes stall).
"""

from __future__ import annotations

import os
import time

import psutil
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.utils import read_pbmsg_safe
from test_daemon_harness import Daemon

from p2pd.proto import daemon_pb2 as pb

MSG = 128 << 10
COUNT = 768  # 96 MiB in all


#: glibc's malloc mmaps buffers of 64 KiB and more and unmaps them when freed (a fixed
#: threshold does not adapt upwards), so the daemon's RSS follows what it still holds
LIVE_RSS = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")


def rss(d: Daemon) -> int:
    return psutil.Process(d.proc.pid).memory_info().rss


async def test_a_pubsub_subscriber_that_never_reads_holds_a_bounded_buffer():
    with Daemon("-pubsub", env=LIVE_RSS) as d:
        c = Client(Multiaddr(d.control))
        slow = await c.pubsub_subscribe("load")  # never read
        fast = await c.pubsub_subscribe("load")
        got = []

        async def read_all() -> None:
            while len(got) < COUNT:
                m = pb.PSMessage()
                await read_pbmsg_safe(fast, m)
                got.append(len(m.data))

        before = rss(d)
        payload = b"\x5a" * MSG
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                for i in range(COUNT):
                    await c.pubsub_publish("load", i.to_bytes(4, "big") + payload[4:])
        peak = rss(d) - before
        # gossipsub's message cache keeps the last 5 heartbeats' messages (all of them,
        # here): once they have left it, what is still held waits for the slow reader
        await trio.sleep(6.5)
        grown = rss(d) - before
        started = time.monotonic()
        peer, _ = await c.identify()
        answer = time.monotonic() - started
        print(f"slow subscriber: {COUNT} x {MSG >> 10} KiB published, RSS +{peak >> 20} MiB "
              f"(message cache), +{grown >> 20} MiB once it emptied, identify "
              f"{answer * 1000:.1f} ms")
        assert got == [MSG] * COUNT  # the reading subscriber missed nothing
        assert grown < 32 << 20
        assert answer < 1.0
        # the slow one still has its stream: the first messages, then a gap (dropped ones)
        m = pb.PSMessage()
        await read_pbmsg_safe(slow, m)
        assert m.data[:4] == (0).to_bytes(4, "big")
        await slow.aclose()
        await fast.aclose()


async def test_a_stream_client_that_never_reads_stalls_the_peer_not_the_daemon():
    with Daemon(env=LIVE_RSS) as a, Daemon() as b:
        ca, cb = Client(Multiaddr(a.control)), Client(Multiaddr(b.control))
        peer_b, addrs_b = await cb.identify()
        pushed = 0
        finished = trio.Event()

        async def flood(info, stream) -> None:
            nonlocal pushed
            chunk = b"\x00" * (64 << 10)
            try:
                while pushed < 64 << 20:
                    await stream.send(chunk)
                    pushed += len(chunk)
            finally:
                finished.set()

        async with cb.listen():
            await cb.stream_handler("/flood/1", flood)
            await ca.connect(peer_b, addrs_b)
            before = rss(a)
            _, stream = await ca.stream_open(peer_b, ("/flood/1",))  # never read
            await trio.sleep(3.0)  # b writes until a's side is full, then stalls
            grown = rss(a) - before
            started = time.monotonic()
            await ca.identify()
            answer = time.monotonic() - started
            print(f"slow stream reader: the peer pushed {pushed >> 10} KiB before stalling, "
                  f"RSS of the reader's daemon +{grown >> 20} MiB, identify {answer * 1000:.1f} ms")
            assert pushed < 32 << 20, f"{pushed >> 20} MiB accepted for a client that reads nothing"
            assert not finished.is_set()
            assert grown < 24 << 20
            assert answer < 1.0
            # reading now, the rest arrives: nothing was dropped, only held back
            got = 0
            with trio.fail_after(60):
                while got < 64 << 20:
                    got += len(await stream.receive(1 << 20))
            await stream.aclose()
