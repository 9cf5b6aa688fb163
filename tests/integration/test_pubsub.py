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


def _raw_control(d: Daemon, request: pb.Request) -> pb.Response:
    import socket

    from p2pd.control.codec import FrameDecoder, decode_response, encode_message

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(d.sock))
    s.sendall(encode_message(request))
    dec = FrameDecoder()
    while (frame := dec.next_frame()) is None:
        dec.receive_data(s.recv(4096))
    s.close()
    return decode_response(frame)


async def test_garbage_and_bad_requests_get_clear_errors_and_the_node_keeps_serving():
    import socket

    from p2pd.blocks.multibase import b58decode
    from p2pd.control.codec import FrameDecoder, decode_response, encode_message

    with Daemon("-pubsub") as a, Daemon("-pubsub") as b:
        await connect_all([a, b])
        # bad control requests: one clear error each
        r = _raw_control(a, pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
            type=pb.PSRequest.PUBLISH, data=b"x")))
        assert r.type == pb.Response.ERROR and "topic" in r.error.msg
        ps = pb.PSRequest(type=pb.PSRequest.PUBLISH).SerializeToString() + b"\x12\x02\xff\xfe"
        raw = pb.Request(type=pb.Request.PUBSUB).SerializeToString() + b"\x42" + bytes(
            [len(ps)]) + ps  # field 8 (pubsub) whose topic is invalid UTF-8
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(a.sock))
        s.sendall(bytes([len(raw)]) + raw)
        dec = FrameDecoder()
        while (frame := dec.next_frame()) is None:
            dec.receive_data(s.recv(4096))
        s.close()
        r = decode_response(frame)
        assert r.type == pb.Response.ERROR and "UTF-8" in r.error.msg
        # garbage on a meshsub stream from b to a: that stream is reset, a keeps serving b
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(b.sock))
        s.sendall(encode_message(pb.Request(type=pb.Request.STREAM_OPEN, streamOpen=
                  pb.StreamOpenRequest(peer=b58decode(a.peer_id), proto=["/meshsub/1.1.0"]))))
        dec = FrameDecoder()
        while (frame := dec.next_frame()) is None:
            dec.receive_data(s.recv(4096))
        assert decode_response(frame).type == pb.Response.OK
        s.sendall(b"\xff\xff\xff\xff\x0f" + b"\x00" * 64)  # a 4 GiB frame announced
        s.settimeout(10)
        try:
            assert s.recv(10) == b""  # reset: the control socket closes the pipe
        except OSError:
            pass
        s.close()
        stream = await client(b).pubsub_subscribe("after")

        async def a_sees_b() -> bool:
            return len(await client(a).pubsub_list_peers("after")) == 1
        await wait_for(a_sees_b)
        await trio.sleep(1.2)
        await client(a).pubsub_publish("after", b"still works")
        m = pb.PSMessage()
        with trio.fail_after(10):
            await read_pbmsg_safe(stream, m)
        assert m.data == b"still works"
        await stream.aclose()
