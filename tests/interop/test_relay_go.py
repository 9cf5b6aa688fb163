"""Circuit relay v2 with the go-libp2p daemon (hivemind's fork, from the PyPI wheel): go as
the relay between two of our swarms, its reservation voucher checked by ours."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import trio
from integration.test_relay import ECHO, echo, identity, roundtrip

from p2pd.cli.client import ControlClient, parse_endpoint
from p2pd.net.relay import CIRCUIT, RelayTransport, p2p_component
from p2pd.net.swarm import Swarm, SwarmOptions, tcp_multiaddr


class GoDaemon:
    def __init__(self, *flags: str) -> None:
        from harness.godaemon import go_daemon_path

        self.dir = Path(tempfile.mkdtemp(prefix="rl-go-", dir="/tmp"))
        self.control = f"/unix{self.dir}/ctl.sock"
        self.log = open(self.dir / "log", "wb")
        self.proc = subprocess.Popen(
            [str(go_daemon_path()), "-listen", self.control, "-hostAddrs",
             "/ip4/127.0.0.1/tcp/0", *flags], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (self.dir / "ctl.sock").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the go daemon did not start")
            time.sleep(0.05)
        self.client = ControlClient(parse_endpoint(self.control), timeout=30)
        self.peer, self.addrs = self.client.identify()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def go_daemon(*flags: str) -> GoDaemon:
    try:
        return GoDaemon(*flags)
    except Exception as exc:  # the wheel could not be fetched: say so
        pytest.skip(f"go daemon unavailable: {exc}")


async def start(nursery) -> tuple[Swarm, bytes]:
    swarm = Swarm(identity(), SwarmOptions(backoff_base=0.0))
    [addr] = await nursery.start(swarm.run, [tcp_multiaddr("127.0.0.1", 0)])
    return swarm, addr


async def test_the_go_daemon_relays_between_two_of_ours():
    go = go_daemon()
    try:
        async with trio.open_nursery() as nursery:
            a, _ = await start(nursery)
            b, _ = await start(nursery)
            ta, _tb = RelayTransport(a), RelayTransport(b)
            a.set_stream_handler(ECHO, echo)
            with trio.fail_after(20):
                expire = await ta.reserve(go.peer, go.addrs)  # its voucher verified
            assert expire > time.time()
            go_tcp = next(x for x in go.addrs if x[:1] == b"\x04")
            circuit = go_tcp + p2p_component(go.peer) + CIRCUIT + p2p_component(a.me)
            with trio.fail_after(20):
                conn = await b.dial(a.me, [circuit])
            assert conn.transport == "relay"
            stream = await conn.open_stream([ECHO], 10)
            payload = os.urandom(100_000)  # under go's default limit for relayed data
            with trio.fail_after(30):
                assert await roundtrip(stream, payload) == payload
            nursery.cancel_scope.cancel()
    finally:
        go.stop()
