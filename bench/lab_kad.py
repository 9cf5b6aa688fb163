"""Kademlia lookups on home-like links (the network lab, tests/lab; needs root).

40 nodes spread over 8 home networks (5 each, public: the routers do not NAT and the LANs
are routed public /28s of 192.0.2.128/25, so every node can be dialled and is told of at its
own address, as DHT servers are; on 198.18/15, a private range, our nodes would keep their
addresses to their own LAN); each home's uplink has its own delay, 10-40 ms RTT,
so two nodes in different homes are 20-80 ms apart. Node 0 is the hub. Ours: 40 p2pd
daemons (-dht) joining through the hub as their bootstrap peer (connect, then a lookup of
themselves, as a home node joins through the public bootstrap peers); peer: 40 js-libp2p
@libp2p/kad-dht nodes (tests/interop/kad_node.mjs) placed the same way, dialling the hub
(their kad-dht then runs its own self-query and table refresh). Every node also connects
to its ring neighbour. After the tables settle, each side is measured the same way:

- FIND_PROVIDERS: a CID provided from a random node, looked up (first provider) from a
  node in another home;
- FIND_PEER of a connected peer: the asker is connected to the target (a node in another
  home, picked among the asker's connections): both answer from what they hold, no query;
- FIND_PEER by lookup: the asker is not connected to the target (another home). After the
  settle nearly every node is connected to every other, so the asker first hangs up on a
  target it is connected to. Ours looks such a peer up whatever its peer store holds; js is
  asked with ``useCache: false`` so it does the same lookup rather than answer from its peer
  store (how often its default would have done that is printed).

Routing table sizes and connections per node are printed for both sides (who knows whom).
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
from functools import partial

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
SETTLE_MAX = 60.0


def _say(text: str) -> None:
    print(f"[lab-kad] {text}", file=sys.stderr, flush=True)


def _homes(lab: Lab, per_home: int) -> list:
    hosts = []
    for i in range(HOMES):
        home = lab.add_home(f"k{i}", Nat.NONE, hosts=per_home, public_lan=True,
                            link=Link(rtt_ms=10 + 30 * i / 7))
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


class _Ours:
    name = "ours"

    def __init__(self, lab: Lab, hosts: list) -> None:
        hub = LabDaemon(lab, hosts[0], "-dht")
        join = ("-dht", "-bootstrap", "-bootstrapPeers", hub.addr)
        with ThreadPoolExecutor(8) as pool:
            rest = list(pool.map(lambda h: LabDaemon(lab, h, *join), hosts[1:]))
        self.nodes = [hub, *rest]
        self.clients = [ControlClient.for_address(n.control, 60) for n in self.nodes]
        self.ids = [b58decode(n.peer_id) for n in self.nodes]
        self.index = {p: i for i, p in enumerate(self.ids)}
        import multiaddr

        self.addrs = [multiaddr.Multiaddr(f"/ip4/{n.node.addr}/tcp/{SWARM_PORT}").to_bytes()
                      for n in self.nodes]

    def connect(self, i: int, j: int) -> None:
        self.clients[i].connect(self.ids[j], [self.addrs[j]])

    def connected(self, i: int) -> set[int]:
        return {self.index[p.id] for p in self.clients[i].list_peers() if p.id in self.index}

    def table(self, i: int) -> int:
        return self.clients[i].status()["DHTTable"]

    def hang_up(self, i: int, j: int) -> None:
        self.clients[i].disconnect(self.ids[j])

    def provide(self, i: int, cid: bytes) -> None:
        self.clients[i].request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
            type=pb.DHTRequest.PROVIDE, cid=cid)))

    def find_providers(self, i: int, cid: bytes) -> bool:
        return bool(_dht_request(self.nodes[i].control, pb.DHTRequest(
            type=pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=1)))

    def find_peer(self, i: int, j: int, lookup: bool) -> bool:
        got = _dht_request(self.nodes[i].control, pb.DHTRequest(
            type=pb.DHTRequest.FIND_PEER, peer=self.ids[j]))
        return bool(got and got[0].peer.addrs)


class _Js:
    name = "js"

    def __init__(self, lab: Lab, hosts: list) -> None:
        with ThreadPoolExecutor(8) as pool:
            self.nodes = list(pool.map(lambda h: _JsKad(lab, h), hosts))
        self.index = {n.peer_id: i for i, n in enumerate(self.nodes)}
        self.cache_hits = 0

    def connect(self, i: int, j: int) -> None:
        self.nodes[i].call(cmd="dial", addr=self.nodes[j].addr, timeout=60000)

    def connected(self, i: int) -> set[int]:
        return {self.index[p] for p in self.nodes[i].call(cmd="peers")["peers"]
                if p in self.index}

    def table(self, i: int) -> int:
        return len(self.nodes[i].call(cmd="table")["peers"])

    def hang_up(self, i: int, j: int) -> None:
        self.nodes[i].call(cmd="hangUp", peerId=self.nodes[j].peer_id)

    def provide(self, i: int, cid: bytes) -> None:
        self.nodes[i].call(cmd="provide", cid=str(CID.from_bytes(cid)), timeout=60000)

    def find_providers(self, i: int, cid: bytes) -> bool:
        return bool(self.nodes[i].call(cmd="findProviders", cid=str(CID.from_bytes(cid)),
                                       timeout=60000)["providers"])

    def find_peer(self, i: int, j: int, lookup: bool) -> bool:
        reply = self.nodes[i].call(cmd="findPeer", peerId=self.nodes[j].peer_id,
                                   useCache=not lookup, timeout=60000)
        return bool(reply["addrs"])

    def before_lookup(self, i: int, j: int) -> None:
        """Count a target its default (useCache) would have answered from its peer store."""
        if self.nodes[i].call(cmd="knows", peerId=self.nodes[j].peer_id)["knows"]:
            self.cache_hits += 1


def measure(side, per_home: int, lookups: int, rng: random.Random) -> dict[str, list]:
    """The same steps for either side; latencies in seconds, failures counted apart."""
    n = len(side.nodes)

    def connect(i: int, j: int) -> None:  # a loaded machine can time a handshake out
        for attempt in range(3):
            try:
                return side.connect(i, j)
            except Exception as exc:
                _say(f"{side.name}: connect {i} -> {j} failed ({str(exc)[:120]}); "
                     f"{'again' if attempt < 2 else 'giving up'}")
        raise RuntimeError(f"{side.name}: node {i} cannot connect to node {j}")

    for i in range(1, n):  # ours joined through the hub already: connected, a no-op
        connect(i, 0)
    for i in range(n):
        j = (i + 1) % n
        if j:
            connect(i, j)
    # the tables settle: at least SETTLE s, then until the summed table sizes stop growing
    # (checked every 3 s, at most SETTLE_MAX s): a side slowed by the machine is not
    # measured before it knows its peers
    time.sleep(SETTLE)
    tables = [side.table(i) for i in range(n)]
    waited = SETTLE
    while waited < SETTLE_MAX:
        time.sleep(3)
        waited += 3
        now = [side.table(i) for i in range(n)]
        grew = sum(now) > sum(tables)
        tables = now
        if not grew:
            break
    _say(f"{side.name}: tables settled after {waited:.0f} s")
    conns = [len(side.connected(i)) for i in range(n)]
    _say(f"{side.name}: routing table median {statistics.median(tables)} peers "
         f"(min {min(tables)}, max {max(tables)}), connections median "
         f"{statistics.median(conns)} (min {min(conns)}, max {max(conns)})")
    out: dict[str, list] = {"find_providers": [], "find_peer_connected": [],
                            "find_peer_lookup": [], "failed": []}

    def timed(what: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            ok, why = fn(), "nothing found"
        except Exception as exc:  # RequestFailed (the daemon), RuntimeError (js), OSError
            ok, why = False, str(exc)[:200]
        took = time.perf_counter() - t0
        if ok:
            out[what].append(took)
        else:
            out["failed"].append(f"{what} after {took:.1f} s: {why}")

    for k in range(lookups):
        cid = bytes(CID.for_block(f"lab kad {k} {rng.random()}".encode(), Codec.RAW))
        a, b = _two_homes(rng, n, per_home)
        side.provide(a, cid)
        timed("find_providers", partial(side.find_providers, b, cid))
        b, a = _pick(side, rng, n, per_home)
        timed("find_peer_connected", partial(side.find_peer, b, a, lookup=False))
        # a peer the asker is not connected to: in 40 nodes after the settle nearly everyone
        # is connected to everyone, so the asker hangs up on a connected one first
        b, a = _pick(side, rng, n, per_home)
        side.hang_up(b, a)
        deadline = time.monotonic() + 10
        while a in side.connected(b):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side.name}: node {b} still connected to {a}")
            time.sleep(0.05)
        if hasattr(side, "before_lookup"):
            side.before_lookup(b, a)
        timed("find_peer_lookup", partial(side.find_peer, b, a, lookup=True))
    return out


def _pick(side, rng: random.Random, n: int, per_home: int) -> tuple[int, int]:
    """An asker and a target in another home that it is connected to."""
    for _ in range(200):
        b = rng.randrange(n)
        have = side.connected(b)
        others = [a for a in range(n) if a // per_home != b // per_home and a in have]
        if others:
            return b, rng.choice(others)
    raise RuntimeError(f"{side.name}: no node is connected to one in another home")


def _two_homes(rng: random.Random, n: int, per_home: int) -> tuple[int, int]:
    while True:
        a, b = rng.sample(range(n), 2)
        if a // per_home != b // per_home:
            return a, b


def run(quick: bool = False, js_first: bool = False) -> Iterable[dict]:
    """``js_first``: measure the js side first (runs may alternate the order, so each side
    gets the machine at its busiest once)."""
    why = unavailable_reason()
    if why:
        raise SystemExit(f"lab-kad: {why}")
    per_home, lookups = (2, 4) if quick else (5, 10)
    n = per_home * HOMES
    results = {}
    for kind in (_Js, _Ours) if js_first else (_Ours, _Js):
        t0 = time.monotonic()
        with Lab() as lab:
            side = kind(lab, _homes(lab, per_home))
            results[side.name] = got = measure(side, per_home, lookups, random.Random(12))
            if isinstance(side, _Js):
                _say(f"js: {side.cache_hits} of {lookups} lookup targets were in its peer "
                     "store with addresses (its default would answer from there)")
        _say(f"{kind.name}: " + ", ".join(
            f"{k} {[round(v * 1000) for v in got[k]]} ms" for k in got if k != "failed")
            + f"; failed {got['failed']}; {time.monotonic() - t0:.0f} s")
    peer = f"{n} js-libp2p @libp2p/kad-dht nodes, same homes"
    for what in ("find_providers", "find_peer_connected", "find_peer_lookup"):
        mine, theirs = results["ours"][what], results["js"][what]
        if not mine or not theirs:
            _say(f"{what}: no successful lookups on one side; no row")
            continue
        yield row("lab-kad", f"{what}_median_ms_{n}_nodes_8_homes_20_80ms",
                  statistics.median(mine) * 1000, "ms", peer,
                  statistics.median(theirs) * 1000, higher_is_better=False)
