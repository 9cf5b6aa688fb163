"""FIND_PROVIDERS latency in a 40-node loopback network: all p2pd vs all js-libp2p kad-dht.

Ours: 40 p2pd daemons (-dht, harness mode), each connected to a hub and to its ring
neighbour; after the tables settle, 10 CIDs are provided from random nodes and each is
looked up (first provider) from another random node through the control socket. Peer:
the same topology of 40 js-libp2p nodes with @libp2p/kad-dht (tests/interop/kad_node.mjs),
the same provide/lookup pattern. Figure: median lookup latency (lower is better).
With k = 20, about half of the nodes hold each provider record themselves, on both
sides alike.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import row
from bench.peers import INTEROP
from p2pd.blocks import CID, Codec
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.proto import daemon_pb2 as pb


class Ours:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-k", dir="/tmp"))
        self.sock = self.dir / "s"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pd", "-listen", f"/unix{self.sock}", "-hostAddrs",
             "/ip4/127.0.0.1/tcp/0", "-dht"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        lines = [self.proc.stdout.readline().strip() for _ in range(4)]
        self.peer_id = b58decode(lines[1].removeprefix("Peer ID: "))
        import multiaddr

        self.addr = multiaddr.Multiaddr(lines[3]).to_bytes()
        self.client = ControlClient.for_address(f"/unix{self.sock}", 60)

    def find_providers(self, cid: bytes) -> float:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(str(self.sock))
        req = pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=1))
        start = time.perf_counter()
        s.sendall(encode_message(req))
        decoder = FrameDecoder()
        found = False
        first = True
        while True:
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(s.recv(65536))
            if first:  # a Response with BEGIN, then bare DHTResponses
                r = decode_response(frame)
                first = False
                if r.type == pb.Response.ERROR:
                    break
                continue
            value = pb.DHTResponse.FromString(frame)
            if value.type == pb.DHTResponse.VALUE:
                found = True
            if value.type == pb.DHTResponse.END:
                break
        s.close()
        if not found:
            raise RuntimeError("provider not found")
        return time.perf_counter() - start

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Js:
    def __init__(self) -> None:
        node = shutil.which("node") or "node"
        self.proc = subprocess.Popen([node, str(INTEROP / "kad_node.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.addr = info["addrs"][0]

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"][:300])
        return reply

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _ours(n: int, lookups: int, rng: random.Random) -> list[float]:
    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(lambda _: Ours(), range(n)))
    try:
        for i, node in enumerate(nodes):
            for other in {nodes[0], nodes[(i + 1) % n]} - {node}:
                node.client.connect(other.peer_id, [other.addr])
        time.sleep(10)
        times = []
        for j in range(lookups):
            cid = bytes(CID.for_block(f"kad bench {j} {rng.random()}".encode(), Codec.RAW))
            a, b = rng.sample(nodes, 2)
            a.client.request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
                type=pb.DHTRequest.PROVIDE, cid=cid)))
            times.append(b.find_providers(cid))
        return times
    finally:
        for node in nodes:
            node.stop()


def _js(n: int, lookups: int, rng: random.Random) -> list[float]:
    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(lambda _: Js(), range(n)))
    try:
        for i, node in enumerate(nodes):
            for other in {nodes[0], nodes[(i + 1) % n]} - {node}:
                node.call(cmd="dial", addr=other.addr)
        time.sleep(10)
        times = []
        for j in range(lookups):
            cid = str(CID.for_block(f"kad bench {j} {rng.random()}".encode(), Codec.RAW))
            a, b = rng.sample(nodes, 2)
            a.call(cmd="provide", cid=cid, timeout=60000)
            start = time.perf_counter()
            if not b.call(cmd="findProviders", cid=cid, timeout=60000)["providers"]:
                raise RuntimeError("provider not found")
            times.append(time.perf_counter() - start)
        return times
    finally:
        for node in nodes:
            node.stop()


def run(quick: bool) -> Iterable[dict]:
    n, lookups = (12, 4) if quick else (40, 10)
    rng = random.Random(40)
    mine = statistics.median(_ours(n, lookups, rng))
    theirs = statistics.median(_js(n, lookups, rng))
    yield row("kad", f"find_providers_median_ms_{n}_nodes", mine * 1000, "ms",
              f"{n} js-libp2p @libp2p/kad-dht nodes", theirs * 1000, higher_is_better=False)
