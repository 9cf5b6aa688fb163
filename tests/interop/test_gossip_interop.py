"""Pubsub between our daemons and js-libp2p nodes (@libp2p/gossipsub 17, @libp2p/floodsub 11).

* A mixed mesh of 10 of ours and 10 js gossipsub nodes: every message published on either
  side reaches every subscriber exactly once.
* A message with a bad signature is dropped by both sides.
* Floodsub: js floodsub nodes, our floodsub daemons and our gossipsub daemons interoperate.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.gossip.wire import RPC, Message, encode_rpc
from p2pd.proto import daemon_pb2 as pb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from test_daemon_harness import Daemon  # noqa: E402

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None or not (HERE / "node_modules").is_dir(),
                                reason="needs node and npm ci in tests/interop")
TOPIC = "interop"


class JsNode:
    def __init__(self, kind: str = "gossipsub") -> None:
        self.proc = subprocess.Popen([NODE, str(HERE / "gossip_node.mjs"), kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.peer_id, self.addr = info["peerId"], info["addrs"][0]

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def connect(self, addr: str) -> None:
        self.call(cmd="dial", addr=addr)

    def subscribe(self) -> None:
        self.call(cmd="subscribe", topic=TOPIC)

    def publish(self, data: bytes) -> None:
        self.call(cmd="publish", topic=TOPIC, data=data.hex())

    def received(self) -> list[bytes]:
        return [bytes.fromhex(m["data"]) for m in self.call(cmd="received")["messages"]]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class OurNode:
    def __init__(self, *flags: str) -> None:
        self.d = Daemon("-pubsub", *flags)
        self.peer_id = self.d.peer_id
        self.addr = f"{self.d.addrs[0]}/p2p/{self.d.peer_id}"
        self.client = ControlClient.for_address(self.d.control, 30)
        self.got: list[bytes] = []
        self.sock: socket.socket | None = None

    def connect(self, addr: str) -> None:
        base, _, peer = addr.rpartition("/p2p/")
        import multiaddr

        self.client.connect(b58decode(peer), [multiaddr.Multiaddr(base).to_bytes()])

    def subscribe(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.d.sock))
        s.sendall(encode_message(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
            type=pb.PSRequest.SUBSCRIBE, topic=TOPIC))))
        decoder = FrameDecoder()
        while (frame := decoder.next_frame()) is None:
            decoder.receive_data(s.recv(4096))
        assert decode_response(frame).type == pb.Response.OK
        self.sock = s

        def reader() -> None:
            try:
                while True:
                    frame = decoder.next_frame()
                    if frame is None:
                        data = s.recv(65536)
                        if not data:
                            return
                        decoder.receive_data(data)
                        continue
                    self.got.append(pb.PSMessage.FromString(frame).data)
            except OSError:
                return

        threading.Thread(target=reader, daemon=True).start()

    def publish(self, data: bytes) -> None:
        self.client.request(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
            type=pb.PSRequest.PUBLISH, topic=TOPIC, data=data)))

    def received(self) -> list[bytes]:
        return list(self.got)

    def raw(self, peer_id: str, proto: str, payload: bytes) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.d.sock))
        req = pb.StreamOpenRequest(peer=b58decode(peer_id), proto=[proto])
        s.sendall(encode_message(pb.Request(type=pb.Request.STREAM_OPEN, streamOpen=req)))
        decoder = FrameDecoder()
        while (frame := decoder.next_frame()) is None:
            decoder.receive_data(s.recv(4096))
        assert decode_response(frame).type == pb.Response.OK
        s.sendall(payload)
        time.sleep(0.3)
        s.close()

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.d.stop()


def wait_until(cond, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def forged_rpc(claimed_author: str) -> bytes:
    m = Message(TOPIC, b"forged!", b58decode(claimed_author), (99).to_bytes(8, "big"), bytes(64))
    return encode_rpc(RPC(messages=[m]))


def test_mixed_mesh_of_ten_and_ten_delivers_every_message_once():
    ours = [OurNode() for _ in range(10)]
    js = [JsNode() for _ in range(10)]
    nodes = [n for pair in zip(ours, js, strict=True) for n in pair]  # alternate sides
    try:
        for n in nodes:
            n.subscribe()
        for i, n in enumerate(nodes):  # a ring plus chords: connected, degree ~4
            for step in (1, 3):
                n.connect(nodes[(i + step) % len(nodes)].addr)
        time.sleep(4)  # identify, subscriptions, a few heartbeats: meshes form
        sent = []
        for i in range(5):
            for side in (ours, js):
                data = f"m{i} from {'ours' if side is ours else 'js'}".encode()
                side[(i * 3) % 10].publish(data)
                sent.append((data, side[(i * 3) % 10]))
        everyone = wait_until(lambda: all(
            {d for d, src in sent if src is not n} <= set(n.received()) for n in nodes), 20)
        missing = {n.peer_id: sorted({d for d, src in sent if src is not n} - set(n.received()))
                   for n in nodes}
        assert everyone, {k: v for k, v in missing.items() if v}
        time.sleep(1.5)
        for n in nodes:
            got = [d for d in n.received() if d != b"forged!"]
            assert len(got) == len(set(got)), f"{n.peer_id} got duplicates"
        # A message with a bad signature, sent straight to one js and one of our nodes,
        # claimed to come from other nodes: both drop it, nobody delivers it.
        ours[0].raw(js[0].peer_id, "/meshsub/1.1.0", forged_rpc(ours[5].peer_id))
        js[1].call(cmd="raw", peerId=ours[1].peer_id, proto="/meshsub/1.1.0",
                   hex=forged_rpc(js[6].peer_id).hex())
        time.sleep(3)
        assert not any(b"forged!" in n.received() for n in nodes)
    finally:
        for n in nodes:
            n.stop()


def test_floodsub_interoperates():
    jf = [JsNode("floodsub") for _ in range(2)]
    of = OurNode("-pubsubRouter", "floodsub")
    og = OurNode()  # our gossipsub router talks floodsub to floodsub peers
    nodes = [jf[0], of, og, jf[1]]
    try:
        for n in nodes:
            n.subscribe()
        for a, b in zip(nodes, nodes[1:], strict=False):  # a line: each hop matters
            a.connect(b.addr)
        time.sleep(3)
        for i, n in enumerate(nodes):
            n.publish(b"flood %d" % i)
        ok = wait_until(lambda: all(
            {b"flood %d" % j for j in range(4) if j != i} <= set(n.received())
            for i, n in enumerate(nodes)), 15)
        assert ok, [sorted(n.received()) for n in nodes]
    finally:
        for n in nodes:
            n.stop()

