"""Kademlia over 10,000 simulated nodes: p2pd's own routing table and lookup state machine
(p2pd/kad), no sockets, simulated latency, churn.

Setup: 10,000 nodes with random ids. Each node's routing table (p2pd.kad.routing,
k = 20) is filled the way a long-running network fills it: for every bucket, up to k
random peers from the part of the key space that bucket covers. Content is provided by
storing provider records on the 20 nodes closest to its key. Then a share of the nodes
(0 %, 10 %, 30 %) goes offline without telling anyone: they stay in routing tables and
their queries time out (10 s), as churned peers do.

Each lookup is p2pd.kad.lookup.Lookup (alpha = 3, k = 20) driven by an event queue:
every answer arrives after a random 10-150 ms. FIND_NODE looks up a random online node
and succeeds if it is found; GET_PROVIDERS looks up a provided key and succeeds when a
live node returns a provider record. Hops = the length of the query chain that produced
the result (1 = a peer from the starting node's own table answered it).

The peer figure is the Kademlia paper's bound for the same network: lookups take
about log2(N) / b hops with b bits resolved per hop; with k = 20 buckets b ~ log2(k), so
~log2(10,000) / log2(20) = 3.07 hops. Targets: mean hops <= 4, success >= 99 % at 10 %.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import sys
import time
from collections.abc import Iterable

from bench.common import row
from p2pd.kad.keyspace import KEY_BITS
from p2pd.kad.lookup import Lookup
from p2pd.kad.routing import RoutingTable

K = 20
TIMEOUT = 10.0


def _log(msg: str) -> None:
    print(f"[kad-sim] {msg}", file=sys.stderr, flush=True)


class Network:
    def __init__(self, n: int, rng: random.Random) -> None:
        self.rng = rng
        self.ids = [rng.randbytes(34) for _ in range(n)]
        from p2pd.kad.keyspace import key_for

        self.key = {i: key_for(i) for i in self.ids}
        ordered = sorted(self.ids, key=self.key.__getitem__)
        self.sorted_keys = [self.key[i] for i in ordered]
        self.sorted_ids = ordered
        self.tables: dict[bytes, RoutingTable] = {}
        for node in self.ids:
            self.tables[node] = self._fill(node)
        self.providers: dict[int, set[bytes]] = {}
        self.offline: set[bytes] = set()

    def _fill(self, node: bytes) -> RoutingTable:
        table = RoutingTable(node, K)
        mine = self.key[node]
        for i in range(KEY_BITS):
            shift = KEY_BITS - 1 - i
            lo = ((mine >> shift) ^ 1) << shift
            hi = lo + (1 << shift)
            a = bisect.bisect_left(self.sorted_keys, lo)
            b = bisect.bisect_left(self.sorted_keys, hi)
            if b - a == 0:
                if i > 40:
                    break
                continue
            picks = range(a, b) if b - a <= K else self.rng.sample(range(a, b), K)
            for j in picks:
                peer = self.sorted_ids[j]
                if peer != node:
                    table.add(peer, 0.0, key=self.key[peer])
        return table

    def closest_global(self, key: int, n: int) -> list[bytes]:
        i = bisect.bisect_left(self.sorted_keys, key)
        window = self.sorted_ids[max(0, i - 4 * n): i + 4 * n]
        return sorted(window, key=lambda p: self.key[p] ^ key)[:n]

    def provide(self, key: int, provider: bytes) -> None:
        for holder in self.closest_global(key, K):
            self.providers.setdefault(key, set()).add(holder)


def lookup(net: Network, source: bytes, target: int, want_provider: bool,
           target_id: bytes | None, rng: random.Random) -> tuple[bool, int]:
    table = net.tables[source]
    lk = Lookup(target, table.closest(target, K), 0.0, local_id=source, keys=net.key)
    events: list[tuple[float, int, bytes]] = []
    seq = 0
    now = 0.0
    holders = net.providers.get(target, set()) if want_provider else set()
    while True:
        for peer in lk.next_queries(now):
            seq += 1
            if peer in net.offline:
                heapq.heappush(events, (now + TIMEOUT, seq, peer))
            else:
                heapq.heappush(events, (now + rng.uniform(0.010, 0.150), seq, peer))
        if lk.done or not events:
            break
        now, _seq, peer = heapq.heappop(events)
        if peer in net.offline:
            lk.expire(now)
            continue
        if want_provider and peer in holders:
            return True, lk.depth[peer]
        closer = net.tables[peer].closest(target, K)
        lk.answered(peer, closer, now)
        if target_id is not None and target_id in closer:
            return True, lk.depth[peer]
    if target_id is not None and target_id in lk.state:
        return True, lk.depth.get(target_id, 0)
    return False, 0


def run(quick: bool) -> Iterable[dict]:
    n = 2_000 if quick else 10_000
    lookups = 150 if quick else 1_000
    rng = random.Random(20261124)
    started = time.perf_counter()
    net = Network(n, rng)
    _log(f"{n} nodes, tables filled in {time.perf_counter() - started:.1f} s "
         f"(mean {sum(len(t) for t in net.tables.values()) / n:.0f} peers each)")
    content = [rng.getrandbits(KEY_BITS) for _ in range(lookups)]
    for key in content:
        net.provide(key, rng.choice(net.ids))
    bound = math.log2(n) / math.log2(K)
    peer = f"Kademlia bound log2(N)/log2(k) for N={n}, k={K}"
    for churn in (0.0, 0.10, 0.30):
        net.offline = set(rng.sample(net.ids, int(churn * n)))
        online = [i for i in net.ids if i not in net.offline]
        for op in ("FIND_NODE", "GET_PROVIDERS"):
            hops, ok = [], 0
            t0 = time.perf_counter()
            for j in range(lookups):
                source = rng.choice(online)
                if op == "FIND_NODE":
                    target_id = rng.choice(online)
                    found, h = lookup(net, source, net.key[target_id], False, target_id, rng)
                else:
                    found, h = lookup(net, source, content[j], True, None, rng)
                if found:
                    ok += 1
                    hops.append(h)
            hops.sort()
            mean = sum(hops) / len(hops) if hops else float("inf")
            p99 = hops[min(len(hops) - 1, int(0.99 * len(hops)))] if hops else 0
            rate = ok / lookups
            _log(f"{op} churn {churn:.0%}: success {rate:.2%}, mean hops {mean:.2f}, "
                 f"p99 {p99} ({time.perf_counter() - t0:.1f} s)")
            label = f"{op}_churn{int(churn * 100)}"
            yield row("kad-sim", f"{label}_mean_hops", mean, "hops", peer, bound,
                      higher_is_better=False)
            yield row("kad-sim", f"{label}_p99_hops", p99, "hops", peer, bound,
                      higher_is_better=False)
            yield row("kad-sim", f"{label}_success_rate", rate, "ratio", "target", 0.99)
