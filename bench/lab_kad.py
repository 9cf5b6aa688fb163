"""Kademlia lookups on home-like links (the network lab, tests/lab; needs root).

40 nodes spread over 8 home networks (5 each, public: the routers do not NAT, so every node
can be dialled, as DHT servers are); each home's uplink has its own delay, 10-40 ms RTT,
so two nodes in different homes are 20-80 ms apart. Each node connects to a hub and to its
ring neighbour; after the tables settle, 10 CIDs are provided from random nodes and each is
looked up (first provider) from a node in another home, and 10 random nodes are looked up
(FIND_PEER) the same way. Ours: 40 p2pd daemons (-dht); peer: 40 js-libp2p
@libp2p/kad-dht nodes (tests/interop/kad_node.mjs) placed the same way, in the same run.
Figures: median latency (lower is better).

``python -m bench lab-kad [--quick]`` (JSON lines on stdout).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from bench.common import row
from p2pd.blocks import CID, Codec
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.proto import daemon_pb2 as pb
from tests.lab import Lab, Link, Nat, unavailable_reason
from tests.lab.peers import INTEROP, SWARM_PORT, LabDaemon

HOMES = 8
SETTLE = 10.0


def _say(text: str) -> None:
    print(f"[lab-kad] {text}", file=sys.stderr, flush=True)


def _homes(lab: Lab, per_home: int) -> list:
    hosts = []
    for i in range(HOMES):
        home = lab.add_home(f"k{i}", Nat.NONE, hosts=per_home, link=Link(rtt_ms=10 + 30 * i / 7))
        hosts += home.hosts
    return hosts


def _dht_request(control: str, req: pb.DHTRequest) -> list[pb.DHTResponse]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(control.removeprefix("/unix"))
    s.sendall(encode_message(pb.Request(type=pb.Request.DHT, dht=req)))
    decoder = FrameDecoder()
    out = []
    first = True
    try:
        while True:
            while (frame := decoder.next_frame()) is None:
                data = s.recv(65536)
                if not data:
                    return out
                decoder.receive_data(data)
            if first:
                r = decode_response(frame)
                first = False
                if r.type == pb.Response.ERROR:
                    raise RuntimeError(r.error.msg)
                if r.HasField("dht") and r.dht.type != pb.DHTResponse.BEGIN:
                    return [r.dht]  # a single answer (FIND_PEER)
                continue
            value = pb.DHTResponse.FromString(frame)
            if value.type == pb.DHTResponse.END:
                return out
            out.append(value)
    finally:
        s.close()


def ours(lab: Lab, per_home: int, lookups: int, rng: random.Random) -> tuple[list, list]:
    hosts = _homes(lab, per_home)
    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(lambda h: LabDaemon(lab, h, "-dht"), hosts))
    clients = [ControlClient.for_address(n.control, 60) for n in nodes]
    ids = [b58decode(n.peer_id) for n in nodes]
    import multiaddr

    addrs = [multiaddr.Multiaddr(f"/ip4/{n.node.addr}/tcp/{SWARM_PORT}").to_bytes()
             for n in nodes]
    for i in range(len(nodes)):
        for j in {0, (i + 1) % len(nodes)} - {i}:
            clients[i].connect(ids[j], [addrs[j]])
    time.sleep(SETTLE)
    providers, peers = [], []
    for k in range(lookups):
        cid = bytes(CID.for_block(f"lab kad {k} {rng.random()}".encode(), Codec.RAW))
        a, b = _two_homes(rng, len(nodes), per_home)
        clients[a].request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.PROVIDE, cid=cid)))
        t0 = time.perf_counter()
        got = _dht_request(nodes[b].control, pb.DHTRequest(
            type=pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=1))
        if not got:
            raise RuntimeError("provider not found")
        providers.append(time.perf_counter() - t0)
        a, b = _two_homes(rng, len(nodes), per_home)
        t0 = time.perf_counter()
        _dht_request(nodes[b].control, pb.DHTRequest(type=pb.DHTRequest.FIND_PEER, peer=ids[a]))
        peers.append(time.perf_counter() - t0)
    return providers, peers


class _JsKad:
    def __init__(self, lab: Lab, host) -> None:
        work = lab.logdir / f"kad-{host.name}"
        work.mkdir(parents=True, exist_ok=True)
        for name in ("kad_node.mjs", "polyfill.mjs"):
            shutil.copy(INTEROP / name, work / name)
        if not (work / "node_modules").exists():
            (work / "node_modules").symlink_to(INTEROP / "node_modules")
        import os

        self.proc = lab.run(host, [shutil.which("node") or "node", str(work / "kad_node.mjs")],
                            name=f"kad-{host.name}", pipe=True,
                            env={**os.environ, "LISTEN": f"/ip4/0.0.0.0/tcp/{SWARM_PORT}"})
        info = json.loads(self.proc.popen.stdout.readline())
        self.peer_id = info["peerId"]
        self.addr = f"/ip4/{host.addr}/tcp/{SWARM_PORT}/p2p/{self.peer_id}"

    def call(self, **cmd) -> dict:
        self.proc.popen.stdin.write(json.dumps(cmd) + "\n")
        self.proc.popen.stdin.flush()
        reply = json.loads(self.proc.popen.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"][:300])
        return reply


def js(lab: Lab, per_home: int, lookups: int, rng: random.Random) -> tuple[list, list]:
    hosts = _homes(lab, per_home)
    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(lambda h: _JsKad(lab, h), hosts))
    for i, node in enumerate(nodes):
        for j in {0, (i + 1) % len(nodes)} - {i}:
            node.call(cmd="dial", addr=nodes[j].addr)
    time.sleep(SETTLE)
    providers, peers = [], []
    for k in range(lookups):
        cid = str(CID.for_block(f"lab kad {k} {rng.random()}".encode(), Codec.RAW))
        a, b = _two_homes(rng, len(nodes), per_home)
        nodes[a].call(cmd="provide", cid=cid, timeout=60000)
        t0 = time.perf_counter()
        if not nodes[b].call(cmd="findProviders", cid=cid, timeout=60000)["providers"]:
            raise RuntimeError("provider not found")
        providers.append(time.perf_counter() - t0)
        a, b = _two_homes(rng, len(nodes), per_home)
        t0 = time.perf_counter()
        nodes[b].call(cmd="findPeer", peerId=nodes[a].peer_id, timeout=60000)
        peers.append(time.perf_counter() - t0)
    return providers, peers


def _two_homes(rng: random.Random, n: int, per_home: int) -> tuple[int, int]:
    while True:
        a, b = rng.sample(range(n), 2)
        if a // per_home != b // per_home:
            return a, b


def run(quick: bool = False) -> Iterable[dict]:
    why = unavailable_reason()
    if why:
        raise SystemExit(f"lab-kad: {why}")
    per_home, lookups = (2, 4) if quick else (5, 10)
    n = per_home * HOMES
    with Lab() as lab:
        mine = ours(lab, per_home, lookups, random.Random(12))
    _say(f"ours: providers {mine[0]}, peers {mine[1]}")
    with Lab() as lab:
        theirs = js(lab, per_home, lookups, random.Random(12))
    _say(f"js: providers {theirs[0]}, peers {theirs[1]}")
    peer = f"{n} js-libp2p @libp2p/kad-dht nodes, same homes"
    for i, what in enumerate(("find_providers", "find_peer")):
        yield row("lab-kad", f"{what}_median_ms_{n}_nodes_8_homes_20_80ms",
                  statistics.median(mine[i]) * 1000, "ms", peer,
                  statistics.median(theirs[i]) * 1000, higher_is_better=False)
