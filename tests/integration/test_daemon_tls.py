"""Two of our daemons over TCP with TLS 1.3 only (``-noise=false``), driven by p2pclient:
a stream echoes through both; a daemon with ``-tls=false`` cannot reach a TLS-only one."""

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


def client(d: Daemon, listen: str | None = None) -> Client:
    return Client(Multiaddr(d.control), Multiaddr(listen) if listen else None)


async def test_a_stream_echoes_between_two_tls_only_daemons(tmp_path):
    with Daemon("-noise=false") as a, Daemon("-noise=false", "-tls") as b:
        ca = client(a)
        cb = client(b, f"/unix/tmp/p2pd-tls-{os.getpid()}.sock")
        payload = os.urandom(2 << 20)

        async def echo(info, stream):
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
            _, stream = await ca.stream_open(b_id, [ECHO])
            received = bytearray()

            async def reader():
                while True:
                    try:
                        received.extend(await stream.receive(65536))
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        return

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    for i in range(0, len(payload), 100_000):
                        await stream.send(payload[i : i + 100_000])
                    await stream.send_eof()
            await stream.aclose()
            assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_noise_only_and_tls_only_daemons_share_no_security_protocol():
    with Daemon("-noise=false") as a, Daemon("-tls=false") as b:
        b_id, b_addrs = await client(b).identify()
        with pytest.raises(ControlFailure):
            await client(a).connect(b_id, b_addrs)
