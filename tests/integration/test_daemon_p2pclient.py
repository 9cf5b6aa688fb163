"""Two of our daemons driven by the unmodified ``p2pclient`` (PyPI 0.3.0, anyio on trio).

Covers every request kind p2pclient speaks: IDENTIFY, CONNECT, LIST_PEERS, STREAM_OPEN,
STREAM_HANDLER (a stream echoed through both daemons' control sockets), CONNMANAGER
(TAG_PEER, UNTAG_PEER, TRIM), DISCONNECT, and DHT/PUBSUB getting a clear error.
"""

from __future__ import annotations

import hashlib
import os

import anyio
import pytest
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from p2pclient.exceptions import ControlFailure
from test_daemon_harness import Daemon

ECHO = "/p2pd-test/echo/1.0.0"


@pytest.fixture(scope="module")
def pair():
    a, b = Daemon(), Daemon()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def client(d: Daemon, listen: str | None = None) -> Client:
    return Client(Multiaddr(d.control), Multiaddr(listen) if listen else None)


async def test_identify_returns_the_printed_peer_id_and_addrs(pair):
    a, _ = pair
    peer_id, addrs = await client(a).identify()
    assert peer_id.to_base58() == a.peer_id
    assert [str(m) for m in addrs] == a.addrs


async def test_connect_list_peers_and_disconnect(pair):
    a, b = pair
    ca, cb = client(a), client(b)
    b_id, b_addrs = await cb.identify()
    await ca.connect(b_id, b_addrs)
    peers = await ca.list_peers()
    assert b_id in [p.peer_id for p in peers]
    info = next(p for p in peers if p.peer_id == b_id)
    assert any(str(m).startswith("/ip4/127.0.0.1/tcp/") for m in info.addrs)
    with trio.fail_after(10):
        while True:  # the other side sees it too
            a_id, _ = await ca.identify()
            if a_id in [p.peer_id for p in await cb.list_peers()]:
                break
            await trio.sleep(0.05)
    await ca.disconnect(b_id)
    with trio.fail_after(10):
        while b_id in [p.peer_id for p in await ca.list_peers()]:
            await trio.sleep(0.05)


async def test_connect_to_an_unreachable_address_is_an_error_response(pair):
    a, _ = pair
    with Daemon() as c:  # a peer the others have never met, stopped before the dial
        c_id, _ = await client(c).identify()
    with pytest.raises(ControlFailure, match="failed to connect"):
        await client(a).connect(c_id, [Multiaddr("/ip4/127.0.0.1/tcp/1")])


async def test_stream_echo_through_both_control_sockets(pair, tmp_path):
    """Client A opens a stream via daemon A; daemon B hands it to client B's handler."""
    a, b = pair
    ca = client(a)
    handler_sock = f"/unix/tmp/p2pd-h-{os.getpid()}-{id(tmp_path)}.sock"
    cb = client(b, handler_sock)
    payload = os.urandom(3 << 20)

    async def echo(info, stream):
        assert info.proto == ECHO
        while True:
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            await stream.send(data)
        await stream.send_eof()

    async with cb.listen():
        await cb.stream_handler(ECHO, echo)
        b_id, b_addrs = await cb.identify()
        await ca.connect(b_id, b_addrs)
        info, stream = await ca.stream_open(b_id, [ECHO])
        assert info.peer_id == b_id and info.proto == ECHO
        received = bytearray()

        async def reader():
            while True:
                try:
                    data = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                received.extend(data)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for i in range(0, len(payload), 100_000):
                    await stream.send(payload[i : i + 100_000])
                await stream.send_eof()
        await stream.aclose()
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_stream_open_for_an_unsupported_protocol_is_an_error(pair):
    a, b = pair
    ca, cb = client(a), client(b)
    b_id, b_addrs = await cb.identify()
    await ca.connect(b_id, b_addrs)
    with pytest.raises(ControlFailure, match="stream"):
        await ca.stream_open(b_id, ["/nobody/speaks/this"])


async def test_connmanager_tag_untag_and_trim_succeed(pair):
    a, b = pair
    ca, cb = client(a), client(b)
    b_id, b_addrs = await cb.identify()
    await ca.connect(b_id, b_addrs)
    await ca.connmgr_tag_peer(b_id, "important", 42)
    await ca.connmgr_untag_peer(b_id, "important")
    await ca.connmgr_trim()


async def test_dht_and_pubsub_requests_get_a_not_enabled_error(pair):
    a, b = pair
    ca = client(a)
    b_id, _ = await client(b).identify()
    with pytest.raises(ControlFailure, match="DHT not enabled"):
        await ca.dht_find_peer(b_id)
    with pytest.raises(ControlFailure, match="pubsub not enabled"):
        await ca.pubsub_get_topics()
