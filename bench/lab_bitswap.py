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
from p2pd.blocks.cid import CID
from p2pd.cli.client import ControlClient
from p2pd.errors import P2PDError
from p2pd.proto import daemon_pb2 as pb
from tests.lab import Lab, Link, Nat, unavailable_reason
from tests.lab.peers import LabDaemon, LabHelia, Stalled

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
        # `p2pd get`'s request, sent from here: the time is the daemon's fetch and file
        # write, as Helia's is its node's `cat`, without a CLI process starting (~0.8 s
        # on the loaded machine, a tenth of a 3-provider 8 MiB fetch).
        client = ControlClient.for_address(fetcher.control, timeout=960)
        req = pb.Request(type=pb.Request.BLOCKS, blocks=pb.BlocksRequest(
            type=pb.BlocksRequest.GET, cid=CID.decode(cids.pop()).to_bytes(), path=str(out),
            timeout=_limit(path, providers)))
        t0 = time.perf_counter()
        try:
            client.request_progress(req, lambda _r: None)
        except P2PDError as exc:
            raise _stalled(exc, out, path) from None
        seconds = time.perf_counter() - t0
        assert out.stat().st_size == path.stat().st_size
        return path.stat().st_size / seconds / (1 << 20)


def _limit(path: Path, providers: int) -> int:
    """Seconds a fetch may take: 4x the link-bound time (size / providers x 2.4 MiB/s)."""
    return int(max(120, 4 * path.stat().st_size / (1 << 20) / 2.4 / providers))


def _stalled(exc: Exception, out: Path, path: Path) -> Stalled:
    """``exc`` as a Stalled fetch that wrote ``.written`` bytes of the file."""
    have = out.stat().st_size if out.exists() else 0
    stalled = Stalled(
        f"{exc} ({have / (1 << 20):.1f} of {path.stat().st_size / (1 << 20):.0f} MiB written)")
    stalled.written = have
    return stalled


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
        # Helia aborts its own fetch at the limit; a fetch stuck where the abort does not
        # reach gets 30 s more, then the node is stopped (Stalled)
        limit = _limit(path, providers)
        try:
            reply = fetcher.call(cmd="cat", cid=cids.pop(), out=str(out), timeout=limit * 1000,
                                 limit=limit + 30)
        except RuntimeError as exc:
            raise _stalled(exc, out, path) from None
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
        figures: dict[tuple[str, int], float | None] = {}
        stalls: dict[tuple[str, int], str] = {}  # what a stalled fetch got in its limit
        for providers in (1, 3):  # ours and Helia's take turns
            for name, fetch in (("ours", ours), ("helia", helia)):
                try:
                    figures[name, providers] = fetch(path, providers)
                    _say(f"{name} from {providers}: {figures[name, providers]:.2f} MiB/s")
                except Stalled as exc:  # said; no figure (a row against it says STALLED)
                    figures[name, providers] = None
                    limit = _limit(path, providers)
                    written = getattr(exc, "written", 0) / (1 << 20)
                    stalls[name, providers] = (f"STALLED: {written:.1f} of {size >> 20} MiB "
                                               f"within its {limit} s limit")
                    _say(f"{name} from {providers} STALLED (limit {limit} s):"
                         f" {str(exc)[:300]}")
    mib = size >> 20
    for providers in (1, 3):
        value, peer = figures["ours", providers], figures["helia", providers]
        metric = (f"fetch {mib} MiB from {providers} home provider(s), "
                  "20 Mbit/s 40 ms uplinks, port-restricted NAT")
        helia_label = f"Helia 7 from {providers} Helia home provider(s), same links"
        if value is not None and peer is not None:
            yield row(BENCH, metric, value, "MiB/s", helia_label, peer)
        elif value is not None:  # Helia stalled: the row says so, with no figure of Helia's
            yield {**row(BENCH, metric, value, "MiB/s", helia_label, 0.0),
                   "peer": f"{helia_label}: {stalls['helia', providers]}",
                   "peer_value": None, "ratio": None}
    for name, label in (("ours", "p2pd"), ("helia", "Helia 7")):
        three, one = figures[name, 3], figures[name, 1]
        if three is not None and one is not None:
            yield row(
                BENCH,
                f"{label} speedup: fetch {mib} MiB from 3 home providers vs 1",
                three,
                "MiB/s",
                f"{label} from 1 home provider (same run)",
                one,
            )


def main(argv: list[str]) -> int:
    from bench.__main__ import emit

    for result in run(quick="--quick" in argv):
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
