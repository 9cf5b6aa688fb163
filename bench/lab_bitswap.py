"""Bitswap from home providers on home-like links (the network lab, tests/lab; needs root).

A public node on the lab's internet segment fetches one file (CIDv1, raw leaves, kubo's
layout) from 1 and from 3 providers, each behind its own NAT router (port-restricted) on an
uplink of 20 Mbit/s with 40 ms RTT; the providers dial the public node (they cannot be
dialled). Ours: our daemons everywhere; peer: Helia 7 everywhere, on the same links, in the
same run. The providers' uplinks, not the machine's two cores, bound these fetches, as they
do for real users. Each fetch gets a fresh lab. Figures: MiB/s of the fetch.

``python -m bench.lab_bitswap [--quick]`` (JSON lines on stdout, as ``python -m bench``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import row
from tests.lab import Lab, Link, Nat, unavailable_reason
from tests.lab.peers import LabDaemon, LabHelia

UPLINK = Link(rtt_ms=40, up_mbit=20, down_mbit=100)
BENCH = "lab-bitswap"


def _say(text: str) -> None:
    print(f"[lab-bitswap] {text}", file=sys.stderr, flush=True)


def ours(path: Path, providers: int) -> float:
    with Lab() as lab:
        public = lab.add_host("pub")
        homes = [lab.add_home(f"h{i}", Nat.PORT_RESTRICTED, link=UPLINK) for i in range(providers)]
        fetcher = LabDaemon(lab, public)
        nodes = [LabDaemon(lab, h.hosts[0]) for h in homes]
        cids = {n.cli("add", "-q", "--cid-version", "1", str(path)).strip() for n in nodes}
        assert len(cids) == 1, cids
        for n in nodes:
            n.cli("connect", fetcher.addr)
        fetcher.wait_peers({n.peer_id for n in nodes})
        out = lab.logdir / "fetched.bin"
        t0 = time.perf_counter()
        fetcher.cli("get", cids.pop(), "-o", str(out), "--timeout", "900", timeout=960)
        seconds = time.perf_counter() - t0
        assert out.stat().st_size == path.stat().st_size
        return path.stat().st_size / seconds / (1 << 20)


def helia(path: Path, providers: int) -> float:
    with Lab() as lab:
        public = lab.add_host("pub")
        homes = [lab.add_home(f"h{i}", Nat.PORT_RESTRICTED, link=UPLINK) for i in range(providers)]
        fetcher = LabHelia(lab, public, [])
        nodes = [LabHelia(lab, h.hosts[0], []) for h in homes]
        cids = {n.call(cmd="add", path=str(path))["cid"] for n in nodes}
        assert len(cids) == 1, cids
        addr = f"/ip4/{public.addr}/tcp/4001/p2p/{fetcher.peer_id}"
        for n in nodes:
            n.call(cmd="dial", addr=addr)
        for n in nodes:
            fetcher.call(cmd="waitPeer", peer=n.peer_id, timeout=30000)
        out = lab.logdir / "fetched.bin"
        reply = fetcher.call(cmd="cat", cid=cids.pop(), out=str(out), timeout=900000)
        assert reply["bytes"] == path.stat().st_size
        return path.stat().st_size / (reply["ms"] / 1000) / (1 << 20)


def run(quick: bool = False) -> Iterable[dict]:
    why = unavailable_reason()
    if why:
        raise SystemExit(f"lab-bitswap: {why}")
    size = (8 if quick else 64) << 20
    with tempfile.TemporaryDirectory(prefix="lab-bitswap-") as tmp:
        path = Path(tmp) / "file.bin"
        path.write_bytes(os.urandom(size))
        figures: dict[tuple[str, int], float] = {}
        for providers in (1, 3):  # ours and Helia's take turns
            for name, fetch in (("ours", ours), ("helia", helia)):
                figures[name, providers] = fetch(path, providers)
                _say(f"{name} from {providers}: {figures[name, providers]:.2f} MiB/s")
    mib = size >> 20
    for providers in (1, 3):
        yield row(
            BENCH,
            f"fetch {mib} MiB from {providers} home provider(s), "
            "20 Mbit/s 40 ms uplinks, port-restricted NAT",
            figures["ours", providers],
            "MiB/s",
            f"Helia 7 from {providers} Helia home provider(s), same links",
            figures["helia", providers],
        )
    yield row(
        BENCH,
        f"speedup: fetch {mib} MiB from 3 home providers vs 1",
        figures["ours", 3],
        "MiB/s",
        "p2pd from 1 home provider (same run)",
        figures["ours", 1],
    )
    yield row(
        BENCH,
        f"Helia speedup: fetch {mib} MiB from 3 home providers vs 1",
        figures["helia", 3],
        "MiB/s",
        "Helia 7 from 1 home provider (same run)",
        figures["helia", 1],
    )


def main(argv: list[str]) -> int:
    from bench.__main__ import emit

    for result in run(quick="--quick" in argv):
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
