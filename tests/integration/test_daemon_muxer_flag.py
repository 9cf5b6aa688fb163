"""-muxer picks the muxer our daemon proposes first: a daemon started with -muxer=mplex
dials a peer that speaks both and lands on mplex; by default (-muxer=yamux) on Yamux. The
peer is our own swarm (p2pd.net.swarm) in this process, which records the negotiated muxer."""

from __future__ import annotations

import nacl.signing
import pytest
import trio
from test_daemon_harness import Daemon

from p2pd.cli.client import ControlClient
from p2pd.control.endpoint import parse_endpoint
from p2pd.net.swarm import Identity, Swarm, tcp_multiaddr
from p2pd.peerkeys import peer_id_from_public_key


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


@pytest.mark.parametrize("flags, muxer", [((), "/yamux/1.0.0"),
                                          (("-muxer=yamux",), "/yamux/1.0.0"),
                                          (("-muxer", "mplex"), "/mplex/6.7.0")])
async def test_the_muxer_flag_decides_what_an_outbound_connection_negotiates(flags, muxer):
    swarm = Swarm(identity())  # offers Yamux and mplex
    with Daemon(*flags) as d:
        control = ControlClient(parse_endpoint(d.control), timeout=30)
        async with trio.open_nursery() as nursery:
            [addr] = await nursery.start(swarm.run, [tcp_multiaddr("127.0.0.1", 0)])
            await trio.to_thread.run_sync(lambda: control.connect(swarm.me, [addr]))
            with trio.fail_after(10):
                while not swarm.conns.get(control.identify()[0]):
                    await trio.sleep(0.05)
            [conn] = swarm.conns[control.identify()[0]]
            assert conn.direction == "inbound" and conn.muxer == muxer
            nursery.cancel_scope.cancel()


def test_an_unknown_muxer_is_refused():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "p2pd", "-listen", "/unix/tmp/p2pd-mx.sock",
                          "-muxer=quic"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "unknown muxer 'quic' (yamux or mplex)" in out.stderr
