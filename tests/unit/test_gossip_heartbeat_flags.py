"""-gossipsubHeartbeatInterval and -gossipsubHeartbeatInitialDelay reach the router, and the
service's heartbeat keeps them: the first after the initial delay, then one per interval."""

from __future__ import annotations

import trio
from harness.fakehost import FakeNetwork

from p2pd.config import resolve
from p2pd.gossip.service import PubsubService
from p2pd.node import pubsub_params


class _NoKey:
    def sign(self, data: bytes) -> bytes:
        return b""

    def serialize(self) -> bytes:
        return b""


class _KeyPair:
    private_key = public_key = _NoKey()


def test_the_heartbeat_flags_set_the_router_parameters():
    p = pubsub_params(resolve({"gossipsubHeartbeatInterval": 0.7,
                               "gossipsubHeartbeatInitialDelay": 2.5}))
    assert (p.heartbeat_interval, p.heartbeat_initial_delay) == (0.7, 2.5)
    d = pubsub_params(resolve({}))
    assert (d.heartbeat_interval, d.heartbeat_initial_delay) == (1.0, 0.1)  # go-libp2p-pubsub


async def test_heartbeats_come_after_the_initial_delay_then_every_interval(autojump_clock):
    params = pubsub_params(resolve({"gossipsubHeartbeatInterval": 0.5,
                                    "gossipsubHeartbeatInitialDelay": 3.0}))
    async with trio.open_nursery() as nursery:
        host = FakeNetwork(nursery).host(1)
        service = PubsubService(host, _KeyPair(), sign=False, params=params)
        beats: list[float] = []
        beat = service.router.heartbeat
        service.router.heartbeat = lambda now: (beats.append(now), beat(now))[1]
        service.attach()
        start = trio.current_time()
        await nursery.start(service.run)
        await trio.sleep(4.1)
        assert [round(t - start, 3) for t in beats] == [3.0, 3.5, 4.0]
        nursery.cancel_scope.cancel()
