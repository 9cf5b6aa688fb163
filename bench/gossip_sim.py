"""The sans-IO gossipsub router over 1,000 simulated nodes (no sockets, simulated latency).

Each node runs p2pd's :class:`~p2pd.gossip.router.Router` with real Ed25519 signatures; the
simulator delivers RPC objects after 5-50 ms of random latency and fires heartbeats every
simulated second. Nodes connect to 12 random others; all subscribe to one topic; after the
meshes form, 40 messages are published from random honest nodes. Reported per scenario:
delivery ratio (honest subscribers that got each message), duplicates per delivered message,
and hops until full coverage (mean and max over messages).

Sybil scenario: 20 % of the nodes forward nothing honest and flood every neighbour with
invalid (badly signed) messages every 100 ms. The "peer" column is the target (100 %
delivery), so the ratio reads as a fraction of it.
"""

from __future__ import annotations

import heapq
import random
import statistics
import time
from collections.abc import Iterable

import nacl.signing

from bench.common import row
from p2pd.gossip.router import Router
from p2pd.gossip.wire import MESHSUB_11, RPC, Message, sign

TOPIC = "sim"
PREFIX = b"\x08\x01\x12\x20"


class SimNode:
    __slots__ = ("id", "router", "sybil", "got", "sk", "proto")

    def __init__(self, i: int, rng: random.Random, sybil: bool) -> None:
        self.sk = nacl.signing.SigningKey(i.to_bytes(4, "big") + bytes(28))
        self.proto = PREFIX + bytes(self.sk.verify_key)
        self.id = bytes([0, len(self.proto)]) + self.proto
        self.router = Router(self.id, rng=random.Random(rng.random()),
                             signer=lambda m: sign(m, self.sk, self.proto))
        self.sybil = sybil
        self.got: dict[bytes, int] = {}  # msg id -> hops


def simulate(n: int, sybil_fraction: float, messages: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    nodes = [SimNode(i, rng, i < int(n * sybil_fraction)) for i in range(n)]
    rng.shuffle(nodes)
    by_id = {x.id: x for x in nodes}
    queue: list = []
    seq = 0
    now = 0.0
    hops_of: dict[tuple[bytes, bytes], int] = {}

    def push(t: float, kind: str, *args) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, kind, args))

    def flush(node: SimNode) -> None:
        for peer, rpc in node.router.take_outgoing().items():
            if node.sybil:
                rpc = RPC(rpc.subscriptions, [], rpc.control)  # forwards nothing honest
            for m in rpc.messages:
                mid = node.router.msg_id(m)
                hops_of.setdefault((mid, peer), node.got.get(mid, 0) + 1)
            push(now + rng.uniform(0.005, 0.05), "rpc", node.id, peer, rpc)
        for mid, _m in node.router.take_deliveries():
            node.got.setdefault(mid, 0)

    for a in nodes:
        for b in rng.sample(nodes, 12):
            if a is not b and b.id not in a.router.peers:
                a.router.add_peer(b.id, MESHSUB_11, now, outbound=True)
                b.router.add_peer(a.id, MESHSUB_11, now)
    for x in nodes:
        x.router.subscribe(TOPIC, now)
        flush(x)
    for t in range(1, 40):
        push(float(t), "heartbeat")
    honest = [x for x in nodes if not x.sybil]
    published: list[tuple[bytes, float]] = []
    for k in range(messages):
        push(5.0 + k * 0.2, "publish", rng.choice(honest))
    if sybil_fraction:
        t = 3.0
        while t < 30:
            push(t, "spam")
            t += 0.1
    spam_seq = 10**9
    while queue:
        now, _s, kind, args = heapq.heappop(queue)
        if now > 39:
            break
        if kind == "rpc":
            src, dst, rpc = args
            node = by_id[dst]
            for m in rpc.messages:
                mid = node.router.msg_id(m)
                if mid not in node.got:
                    hop = hops_of.get((mid, dst))
                    if hop is not None:
                        node.got[mid] = hop
            node.router.handle_rpc(src, rpc, now)
            flush(node)
        elif kind == "heartbeat":
            for x in nodes:
                x.router.heartbeat(now)
                flush(x)
        elif kind == "publish":
            (x,) = args
            mid = x.router.publish(TOPIC, b"m%d" % len(published) + bytes(1000), now)
            x.got[mid] = 0
            published.append((mid, now))
            flush(x)
        elif kind == "spam":
            for x in nodes:
                if not x.sybil:
                    continue
                spam_seq += 1
                junk = Message(TOPIC, b"junk", x.id, spam_seq.to_bytes(8, "big"), bytes(64))
                for peer in list(x.router.peers):
                    push(now + 0.005, "rpc", x.id, peer, RPC(messages=[junk]))
    deliveries = dups = 0
    coverage_hops = []
    for mid, _t in published:
        reached = [x.got.get(mid) for x in honest]
        deliveries += sum(1 for h in reached if h is not None)
        if all(h is not None for h in reached):
            coverage_hops.append(max(reached))
    delivered_total = sum(x.router.counters["delivered"] for x in honest)
    dups = sum(x.router.counters["duplicates"] for x in honest)
    graylisted = 0
    if sybil_fraction:
        th = honest[0].router.th.graylist
        pairs = [(x, p) for x in honest for p in x.router.peers if by_id[p].sybil]
        graylisted = sum(1 for x, p in pairs if x.router.peer_score(p, now) < th) / max(
            1, len(pairs))
    mesh_sizes = [len(x.router.mesh.get(TOPIC, ())) for x in honest]
    return {
        "mesh_degree": statistics.mean(mesh_sizes),
        "delivery": deliveries / (len(published) * len(honest)),
        "dups_per_delivery": dups / max(1, delivered_total),
        "hops_mean": statistics.mean(coverage_hops) if coverage_hops else float("nan"),
        "hops_max": max(coverage_hops) if coverage_hops else float("nan"),
        "graylisted": graylisted,
    }


def run(quick: bool = False) -> Iterable[dict]:
    n = 200 if quick else 1000
    msgs = 10 if quick else 40
    for frac in (0.0, 0.2):
        t0 = time.perf_counter()
        r = simulate(n, frac, msgs)
        label = f"{n} nodes, {int(frac * 100)} % sybil spammers"
        yield row("gossip-sim", f"delivery ratio, {label}", r["delivery"] * 100, "%",
                  "target", 100.0)
        # Each relay sends a message to its mesh but the sender: mean mesh degree - 1
        # copies per delivery is what mesh forwarding itself costs (flood publishing adds a
        # few more at the publisher).
        yield row("gossip-sim", f"duplicates per delivered message, {label}",
                  r["dups_per_delivery"], "dups",
                  f"mean mesh degree - 1 (degree {r['mesh_degree']:.1f})",
                  r["mesh_degree"] - 1, higher_is_better=False)
        yield row("gossip-sim", "hops until the last subscriber has it (mean over messages; "
                  f"max {r['hops_max']}), {label}", r["hops_mean"], "hops",
                  "log_6(N), the mean path length of a 6-regular mesh", _log(n, 6),
                  higher_is_better=False)
        if frac:
            yield row("gossip-sim", f"honest->sybil links below graylist, {label}",
                      r["graylisted"] * 100, "%", "target", 100.0)
        import sys
        print(f"[gossip-sim] {label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def _log(n: int, base: int) -> float:
    import math

    return math.log(n) / math.log(base)
