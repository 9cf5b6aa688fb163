"""Our daemon and a real js-libp2p 3.x node (js_node.mjs): TCP and WebSocket both ways,
Noise + Yamux, identify, ping both ways, and a 16 MiB echo byte-identical both ways.

Our side is driven through the control socket (p2pclient and our blocking client), the
JS side through JSON lines on its stdin.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
import trio
from harness.jsnode import ECHO, JsNode
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.libp2p_stubs.peer.id import ID

from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.endpoint import parse_endpoint
from p2pd.proto import daemon_pb2 as pb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from test_daemon_harness import Daemon  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.slow]

BIG = 16 << 20


@pytest.fixture(scope="module")
def peers():
    if shutil.which("node") is None or not (HERE / "node_modules" / "libp2p").exists():
        pytest.skip("node or tests/interop/node_modules missing (run npm ci in tests/interop)")
    ours = Daemon(host_addrs="/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws")
    js = JsNode()
    try:
        yield ours, js
    finally:
        js.stop()
        ours.stop()


def control(d: Daemon) -> ControlClient:
    return ControlClient(parse_endpoint(d.control), timeout=60)


def split(addr: str) -> tuple[bytes, bytes]:
    ma, _, pid = addr.rpartition("/p2p/")
    return b58decode(pid), Multiaddr(ma).to_bytes()


async def hang_up(ours: Daemon, js: JsNode) -> None:
    control(ours).disconnect(b58decode(js.peer_id))
    await trio.to_thread.run_sync(lambda: js.call(cmd="hangup", peerId=ours.peer_id))
    with trio.fail_after(10):
        while any(p.id == b58decode(js.peer_id) for p in control(ours).list_peers()):
            await trio.sleep(0.05)


@pytest.mark.parametrize("ws", [False, True], ids=["tcp", "ws"])
async def test_we_dial_js_identify_and_ping(peers, ws):
    ours, js = peers
    await hang_up(ours, js)
    peer, addr = split(js.addr(ws))
    c = control(ours)
    c.connect(peer, [addr])
    assert peer in [p.id for p in c.list_peers()]
    rtts = c.ping(peer, 3)
    assert len(rtts) == 3 and all(r < 5 for r in rtts)
    with trio.fail_after(10):  # identify runs in the background after connecting
        while True:
            r = c.request(
                pb.Request(
                    type=pb.Request.PEERSTORE,
                    peerStore=pb.PeerstoreRequest(type=pb.PeerstoreRequest.GET_PROTOCOLS, id=peer),
                )
            )
            if ECHO in r.peerStore.protos:
                break
            await trio.sleep(0.05)
    assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(r.peerStore.protos)


@pytest.mark.parametrize("ws", [False, True], ids=["tcp", "ws"])
async def test_js_dials_us_identify_and_ping(peers, ws):
    ours, js = peers
    await hang_up(ours, js)
    addr = next(a for a in ours.addrs if a.endswith("/ws") == ws) + f"/p2p/{ours.peer_id}"
    await trio.to_thread.run_sync(lambda: js.call(cmd="dial", addr=addr))
    rtt = await trio.to_thread.run_sync(lambda: js.call(cmd="ping", addr=addr))
    assert rtt["rtt"] >= 0
    with trio.fail_after(10):
        while True:
            info = await trio.to_thread.run_sync(lambda: js.call(cmd="peer", peerId=ours.peer_id))
            if info["agent"]:
                break
            await trio.sleep(0.05)
    assert info["agent"].startswith("p2pd/")
    assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(info["protocols"])
    assert set(ours.addrs) <= {a.split("/p2p/")[0] for a in info["addrs"]}


async def echo(info, stream) -> None:
    """A p2pclient stream handler sending back everything it receives."""
    while True:
        try:
            data = await stream.receive(1 << 16)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            break
        await stream.send(data)
    await stream.send_eof()


async def test_16_mib_echo_from_us_to_js_is_byte_identical(peers):
    ours, js = peers
    await hang_up(ours, js)  # a fresh connection, whatever earlier tests left behind
    peer, addr = split(js.addr(False))
    client = Client(Multiaddr(ours.control))
    await client.connect(ID(peer), [Multiaddr(addr)])
    _, stream = await client.stream_open(ID(peer), [ECHO])
    payload = os.urandom(BIG)
    digest = hashlib.sha256()
    received = 0

    async def reader():
        nonlocal received
        while True:
            try:
                data = await stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            digest.update(data)
            received += len(data)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            view = memoryview(payload)
            for i in range(0, BIG, 1 << 18):
                await stream.send(view[i : i + (1 << 18)])
            await stream.send_eof()
    await stream.aclose()
    assert received == BIG
    assert digest.digest() == hashlib.sha256(payload).digest()


async def test_16_mib_echo_from_js_to_us_is_byte_identical(peers):
    ours, js = peers
    await hang_up(ours, js)  # a fresh connection, whatever earlier tests left behind
    handler_dir = Path(tempfile.mkdtemp(prefix="p2pd-h", dir="/tmp"))
    client = Client(Multiaddr(ours.control), Multiaddr(f"/unix{handler_dir}/h.sock"))

    try:
        async with client.listen():
            await client.stream_handler(ECHO, echo)
            addr = f"{ours.addrs[0]}/p2p/{ours.peer_id}"
            with trio.fail_after(120):
                result = await trio.to_thread.run_sync(
                    lambda: js.call(cmd="echo", addr=addr, size=BIG)
                )
        assert result == {"sent": BIG, "received": BIG, "identical": True}
    finally:
        shutil.rmtree(handler_dir, ignore_errors=True)


async def test_a_new_stream_handler_reaches_connected_js_peers_by_identify_push(peers):
    ours, js = peers
    await hang_up(ours, js)
    peer, addr = split(js.addr(False))
    control(ours).connect(peer, [addr])
    with trio.fail_after(10):  # identify done: js knows our protocols
        while "/ipfs/ping/1.0.0" not in (await trio.to_thread.run_sync(
                lambda: js.call(cmd="peer", peerId=ours.peer_id)))["protocols"]:
            await trio.sleep(0.05)
    fresh = "/p2pd-test/pushed/1.0.0"
    client = Client(Multiaddr(ours.control), Multiaddr(f"/unix{ours.dir}/push-handler.sock"))
    async with client.listen():
        await client.stream_handler(fresh, lambda *a: None)
        with trio.fail_after(10):
            while fresh not in (await trio.to_thread.run_sync(
                    lambda: js.call(cmd="peer", peerId=ours.peer_id)))["protocols"]:
                await trio.sleep(0.1)


async def test_an_mplex_only_js_peer_connects_both_ways_pings_and_echoes(peers):
    """Mplex is the fallback muxer: a js peer that offers nothing else still works with us."""
    ours, _ = peers
    old = JsNode(MUXERS="mplex")
    handler_dir = Path(tempfile.mkdtemp(prefix="p2pd-h", dir="/tmp"))
    client = Client(Multiaddr(ours.control), Multiaddr(f"/unix{handler_dir}/h.sock"))

    try:
        # We dial it.
        peer, addr = split(old.addr(False))
        c = control(ours)
        c.connect(peer, [addr])
        assert len(c.ping(peer, 2)) == 2
        await hang_up(ours, old)
        # It dials us, pings and echoes 16 MiB through a handler on our control socket.
        async with client.listen():
            await client.stream_handler(ECHO, echo)
            ours_addr = f"{ours.addrs[0]}/p2p/{ours.peer_id}"
            with trio.fail_after(60):
                rtt = await trio.to_thread.run_sync(lambda: old.call(cmd="ping", addr=ours_addr))
                result = await trio.to_thread.run_sync(
                    lambda: old.call(cmd="echo", addr=ours_addr, size=BIG))
        assert rtt["rtt"] >= 0
        assert result == {"sent": BIG, "received": BIG, "identical": True}
    finally:
        old.stop()
        shutil.rmtree(handler_dir, ignore_errors=True)
