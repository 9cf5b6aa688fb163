"""Gossipsub on a 30-node loopback mesh: 1 KiB signed messages, ours vs js in the same run.

Ours: 30 p2pd daemons (-pubsub, harness mode) connected as a ring with chords (each node to
the next and the one three ahead); every node but the publisher subscribes through its
control socket; the publisher publishes N messages through its control socket, as fast as
it answers, each stamped with its publish time. Peer: the same topology of 30 js-libp2p
nodes with @libp2p/gossipsub 17 (tests/interop/gossip_node.mjs), the same publish pattern.

Figures: delivered messages per second over the whole mesh (deliveries / time from the
first publish to the last delivery), and p50 / p99 delivery latency (publish to receipt at
a subscriber, same machine clock). Delivery ratios are printed on stderr.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import row
from bench.peers import INTEROP
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.proto import daemon_pb2 as pb

TOPIC = "bench"
N_NODES = 30
SIZE = 1024


class Ours:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-g", dir="/tmp"))
        self.sock = self.dir / "s"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pd", "-listen", f"/unix{self.sock}", "-hostAddrs",
             "/ip4/127.0.0.1/tcp/0", "-pubsub", "-quiet=false"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = [self.proc.stdout.readline().strip() for _ in range(4)]
        self.peer_id = lines[1].split(": ", 1)[1]
        self.addr = lines[3]
        self.client = ControlClient.for_address(f"/unix{self.sock}", 30)
        self.stamps: list[tuple[float, float]] = []

    def connect(self, other: Ours) -> None:
        import multiaddr

        self.client.connect(b58decode(other.peer_id), [multiaddr.Multiaddr(other.addr).to_bytes()])

    def subscribe(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        s.sendall(encode_message(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
            type=pb.PSRequest.SUBSCRIBE, topic=TOPIC))))
        dec = FrameDecoder()
        while (frame := dec.next_frame()) is None:
            dec.receive_data(s.recv(4096))
        assert decode_response(frame).type == pb.Response.OK

        def reader() -> None:
            try:
                while True:
                    frame = dec.next_frame()
                    if frame is None:
                        data = s.recv(1 << 16)
                        if not data:
                            return
                        dec.receive_data(data)
                        continue
                    now = time.time() * 1000
                    m = pb.PSMessage.FromString(frame)
                    self.stamps.append((struct.unpack(">d", m.data[:8])[0], now))
            except OSError:
                return

        threading.Thread(target=reader, daemon=True).start()
        self.sub_sock = s

    def publish_many(self, n: int) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        dec = FrameDecoder()
        for i in range(n):
            data = struct.pack(">dI", time.time() * 1000, i) + bytes(SIZE - 12)
            s.sendall(encode_message(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
                type=pb.PSRequest.PUBLISH, topic=TOPIC, data=data))))
            while dec.next_frame() is None:
                dec.receive_data(s.recv(4096))
        s.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


class Js:
    def __init__(self) -> None:
        import shutil

        self.proc = subprocess.Popen([shutil.which("node"), str(INTEROP / "gossip_node.mjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.peer_id, self.addr = info["peerId"], info["addrs"][0]

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def connect(self, other: Js) -> None:
        self.call(cmd="dial", addr=other.addr)

    def subscribe(self) -> None:
        self.call(cmd="subscribe", topic=TOPIC)

    def publish_many(self, n: int) -> None:
        self.call(cmd="publishMany", topic=TOPIC, n=n, size=SIZE, timeout=600000)

    @property
    def stamps(self) -> list[tuple[float, float]]:
        return [tuple(x) for x in self.call(cmd="stamps")["stamps"]]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(kind, n_msgs: int) -> tuple[float, float, float, float]:
    nodes = [kind() for _ in range(N_NODES)]
    try:
        for i, node in enumerate(nodes):
            for step in (1, 3):
                node.connect(nodes[(i + step) % N_NODES])
        for node in nodes[1:]:
            node.subscribe()
        time.sleep(5)  # identify, subscriptions, heartbeats: the meshes form
        nodes[0].publish_many(n_msgs)
        expected = n_msgs * (N_NODES - 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = sum(len(node.stamps) for node in nodes[1:])
            if got >= expected:
                break
            time.sleep(0.5)
        stamps = [s for node in nodes[1:] for s in node.stamps]
        first = min(s for s, _ in stamps)
        last = max(r for _, r in stamps)
        lat = sorted(r - s for s, r in stamps)
        rate = len(stamps) / ((last - first) / 1000)
        return rate, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], len(stamps) / expected
    finally:
        for node in nodes:
            node.stop()


def run(quick: bool = False) -> Iterable[dict]:
    n = 50 if quick else 300
    ours = measure(Ours, n)
    js = measure(Js, n)
    print(f"[gossip] delivery ratio: ours {ours[3]:.3f}, js {js[3]:.3f}", file=sys.stderr)
    label = f"{N_NODES}-node mesh, {n} x 1 KiB signed messages"
    yield row("gossip", f"delivered messages/s, {label}", ours[0], "msg/s",
              "js-libp2p @libp2p/gossipsub 17.1.1", js[0])
    yield row("gossip", f"p50 delivery latency, {label}", ours[1], "ms",
              "js-libp2p @libp2p/gossipsub 17.1.1", js[1], higher_is_better=False)
    yield row("gossip", f"p99 delivery latency, {label}", ours[2], "ms",
              "js-libp2p @libp2p/gossipsub 17.1.1", js[2], higher_is_better=False)
    yield row("gossip", f"delivery ratio, {label}", ours[3] * 100, "%",
              "js-libp2p @libp2p/gossipsub 17.1.1", js[3] * 100)
