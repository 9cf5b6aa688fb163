"""Hole punching across the lab's NAT routers (tests/lab; needs root).

A lab per NAT-type pair: a public relay (our daemon) on the internet segment; for each
attempt, two fresh homes (fresh routers, so fresh mappings) with a fresh daemon each.
B (``-forceReachabilityPrivate -autoRelay -trustedRelays RELAY``) reserves at the relay;
A dials B's circuit address; DCUtR (B initiates) turns the relayed connection into a
direct one or gives up after 3 rounds. Per pair: the share of attempts that ended direct
within 20 s, the share of those on the first round, the median time from A's dial to the
direct connection, and the median time from B's start to its reservation.

The peer figure is the go daemon's (hivemind's go-libp2p-daemon), measured as far as it
goes: it offers no ``/libp2p/dcutr`` (its identify lists id, push, ping, relay hop/stop),
so go<->go and ours<->go hole punching cannot be measured with it; the rows say so
(``peer_value`` null). js-libp2p's DCUtR counts the lab's documentation-range addresses as
private and its TCP transport cannot dial from its listen port, so js is not measured here
either.

``python -m bench natlab [--quick]`` (JSON lines on stdout).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable

from multiaddr import Multiaddr

from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from tests.lab import Lab, Nat, unavailable_reason
from tests.lab.peers import LabDaemon

BENCH = "natlab"
PAIRS = [
    (Nat.FULL_CONE, Nat.FULL_CONE),
    (Nat.PORT_RESTRICTED, Nat.PORT_RESTRICTED),
    (Nat.FULL_CONE, Nat.PORT_RESTRICTED),
    (Nat.FULL_CONE, Nat.SYMMETRIC),
    (Nat.SYMMETRIC, Nat.FULL_CONE),
    (Nat.PORT_RESTRICTED, Nat.SYMMETRIC),
    (Nat.SYMMETRIC, Nat.PORT_RESTRICTED),
]
DIRECT_WITHIN = 20.0
PEER = "go-libp2p-daemon (no /libp2p/dcutr)"


def _say(text_: str) -> None:
    print(f"[natlab] {text_}", file=sys.stderr, flush=True)


def _wait(fn, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(step)
    return None


def attempt(lab: Lab, relay: LabDaemon, nat_a: Nat, nat_b: Nat, n: int) -> dict:
    home_b = lab.add_home(f"b{n}", nat_b)
    home_a = lab.add_home(f"a{n}", nat_a)
    t_start = time.monotonic()
    b = LabDaemon(lab, home_b.hosts[0], "-dht", "-forceReachabilityPrivate", "-autoRelay",
                  "-trustedRelays", relay.addr)
    a = LabDaemon(lab, home_a.hosts[0])
    cb, ca = ControlClient.for_address(b.control), ControlClient.for_address(a.control)
    reservations = _wait(lambda: cb.status()["Reservations"], 30)
    reserved = time.monotonic() - t_start
    out = {"reserved_s": reserved if reservations else None, "direct_s": None, "rounds": None}
    if not reservations:
        return out
    circuit = Multiaddr(reservations[0]).to_bytes()
    peer_b = b58decode(b.peer_id)

    def direct() -> bool:  # a connection to B whose address is not a circuit
        return any(p.id == peer_b and any(b"\xa2\x02" not in x for x in p.addrs)
                   for p in ca.list_peers())

    t0 = time.monotonic()
    ca.connect(peer_b, [circuit])
    if _wait(direct, DIRECT_WITHIN):
        out["direct_s"] = time.monotonic() - t0
    punch = cb.status()["HolePunch"] or {}
    out["rounds"] = punch.get("rounds")
    out["why"] = punch.get("last_failure")
    a.close()
    b.close()
    return out


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def run(quick: bool = False) -> Iterable[dict]:
    why = unavailable_reason()
    if why:
        raise SystemExit(f"natlab: {why}")
    tries = 2 if quick else 20
    for nat_a, nat_b in PAIRS:
        # a lab per pair: each attempt takes two routers from the lab's 198.51.100.0/24
        with Lab() as lab:
            relay = LabDaemon(lab, lab.add_host("relay"))
            results = []
            for n in range(tries):
                results.append(attempt(lab, relay, nat_a, nat_b, n))
                _say(f"{nat_a.value}->{nat_b.value} #{len(results)}: {results[-1]}")
            pair = f"{nat_a.value}-{nat_b.value}"
            direct = [r for r in results if r["direct_s"] is not None]
            first = [r for r in direct if r["rounds"] == 1]
            note = ("the go daemon has no DCUtR; js's DCUtR counts the lab's ranges as "
                    "private: no peer figure in this lab")
            for metric, value, unit in (
                (f"success {pair} (ours<->ours)", 100.0 * len(direct) / len(results), "%"),
                (f"first-round {pair} (ours<->ours)",
                 100.0 * len(first) / len(direct) if direct else 0.0, "% of successes"),
                (f"time-to-direct median {pair} (ours<->ours, lower is better)",
                 _median([r["direct_s"] * 1000 for r in direct]), "ms"),
                (f"reservation median {pair} (ours, lower is better)",
                 _median([r["reserved_s"] * 1000 for r in results if r["reserved_s"]]), "ms"),
            ):
                yield {"bench": BENCH, "metric": metric,
                       "value": None if value is None else round(value, 1), "unit": unit,
                       "peer": PEER, "peer_value": None, "ratio": None,
                       "attempts": len(results), "note": note}

