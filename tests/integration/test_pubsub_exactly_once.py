"""Each message exactly once per subscription, across a disconnect/reconnect and a restart of
a peer (issue 16's soak counted deliveries at 1.58 x published x subscriptions; issue 17 item
4: local publishes reach local subscribers once each).

Three of our daemons over real sockets, p2pclient subscribed (two subscriptions to the same
topic at one daemon), every daemon publishing. A restarted daemon keeps its identity (-id)
but not its seen-cache: its peers still hold its last messages in their message cache and
offer them (IHAVE) when it rejoins the topic; go-libp2p-pubsub rejects a message claiming to
be from itself that a peer forwards (RejectSelfOrigin), and so must we, or the restarted
daemon's new subscribers get its own earlier publishes again."""

from __future__ import annotations

import signal
from collections import Counter

import nacl.signing
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.utils import read_pbmsg_safe
from test_daemon_harness import Daemon

from p2pd.identity import KEY_TYPE_ED25519, PrivateKeyRecord, encode_private_key
from p2pd.proto import daemon_pb2 as pb

TOPIC = "once"
N = 5


class Sub:
    """One SUBSCRIBE connection, read into ``got`` (message data) by a task."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[bytes] = []
        self.stream = None

    async def open(self, c: Client, nursery: trio.Nursery) -> Sub:
        self.stream = await c.pubsub_subscribe(TOPIC)
        nursery.start_soon(self._read)
        return self

    async def _read(self) -> None:
        try:
            while True:
                m = pb.PSMessage()
                await read_pbmsg_safe(self.stream, m)
                self.got.append(bytes(m.data))
        except Exception:  # the daemon went away or the test closed it
            pass

    def counts(self) -> Counter:
        return Counter(self.got)


def client(d: Daemon) -> Client:
    return Client(Multiaddr(d.control))


async def publish_round(daemons: dict[str, Daemon], label: str) -> set[bytes]:
    sent = set()
    for name, d in daemons.items():
        for i in range(N):
            data = f"{label} {name} {i}".encode()
            await client(d).pubsub_publish(TOPIC, data)
            sent.add(data)
    return sent


async def wait_until(cond, timeout: float = 15.0, what: str = "") -> None:
    with trio.move_on_after(timeout):
        while not await cond():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out: {what}")


async def topic_peers(d: Daemon, n: int) -> None:
    async def enough() -> bool:
        return len(await client(d).pubsub_list_peers(TOPIC)) >= n
    await wait_until(enough, what=f"{n} topic peers at {d.peer_id[:12]}")


async def all_arrive(subs: list[Sub], sent: set[bytes]) -> None:
    async def done() -> bool:
        return all(sent <= set(s.got) for s in subs)
    await wait_until(done, what="every subscription got every message")
    await trio.sleep(2.5)  # heartbeats and gossip: time for any echo to arrive


def assert_once(subs: list[Sub]) -> None:
    for s in subs:
        twice = {m: n for m, n in s.counts().items() if n > 1}
        assert not twice, f"{s.name} got messages more than once: {twice}"


async def test_each_message_arrives_once_per_subscription_across_reconnect_and_restart(
        tmp_path):
    key = tmp_path / "a.key"
    key.write_bytes(encode_private_key(PrivateKeyRecord(
        KEY_TYPE_ED25519, bytes(nacl.signing.SigningKey.generate()))))
    a = Daemon("-pubsub", "-id", str(key))
    b, c = Daemon("-pubsub"), Daemon("-pubsub")
    a2 = None
    try:
        ids = {n: await client(d).identify() for n, d in (("a", a), ("b", b), ("c", c))}
        await client(a).connect(*ids["b"])
        await client(a).connect(*ids["c"])
        await client(b).connect(*ids["c"])
        async with trio.open_nursery() as nursery:
            a1, a1bis = Sub("a#1"), Sub("a#1bis")
            sb, sc = Sub("b"), Sub("c")
            for s, d in ((a1, a), (a1bis, a), (sb, b), (sc, c)):
                await s.open(client(d), nursery)
            for d in (a, b, c):
                await topic_peers(d, 2)
            await trio.sleep(1.5)  # a heartbeat: meshes formed
            everyone = {"a": a, "b": b, "c": c}

            # 1. steady state: two subscriptions at a, one at b and c
            sent = await publish_round(everyone, "steady")
            await all_arrive([a1, a1bis, sb, sc], sent)
            assert_once([a1, a1bis, sb, sc])

            # 2. a and b disconnect (their messages go through c), then reconnect
            await client(a).disconnect(ids["b"][0])
            sent |= await publish_round(everyone, "apart")
            await client(b).connect(*ids["a"])
            await topic_peers(a, 2)
            await topic_peers(b, 2)
            sent |= await publish_round(everyone, "rejoined")
            await all_arrive([a1, a1bis, sb, sc], sent)
            assert_once([a1, a1bis, sb, sc])

            # 3. a publishes and is killed; back with the same identity within the
            # message cache's window (5 heartbeats), a new subscriber, rejoined
            before = await publish_round({"a": a}, "last words")

            async def peers_have_them() -> bool:  # killed earlier, a could take them along
                return all(before <= set(x.got) for x in (sb, sc))
            await wait_until(peers_have_them, what="b and c got a's last words")
            a.stop(signal.SIGKILL)
            a2 = Daemon("-pubsub", "-id", str(key))
            assert a2.peer_id == a.peer_id
            a3 = await Sub("a#2 (after the restart)").open(client(a2), nursery)
            await client(a2).connect(*ids["b"])
            await client(a2).connect(*ids["c"])
            await topic_peers(a2, 2)
            await trio.sleep(2.5)  # hello, catch-up IHAVE, IWANT: whatever comes back
            echoed = before & set(a3.got)
            assert not echoed, f"the restarted daemon re-delivered its own earlier " \
                               f"publishes to its new subscriber: {sorted(echoed)}"
            after = await publish_round({"a": a2, "b": b, "c": c}, "restarted")
            await all_arrive([a3, sb, sc], after)
            await all_arrive([sb, sc], sent | before)
            assert_once([a1, a1bis, a3, sb, sc])
            # nothing but what was published reached anyone
            for s in (a1, a1bis, a3, sb, sc):
                assert set(s.got) <= sent | before | after, s.name
            nursery.cancel_scope.cancel()
    finally:
        for d in (a, b, c, a2):
            if d is not None:
                d.stop()
