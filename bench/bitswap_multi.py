"""Bitswap from several providers: the same 256 MiB file (CIDv1, raw leaves) fetched by one
of our daemons from three of our providers at once vs from one; figure: the speedup.

The peer column is our own single-provider fetch from the same run (the target is a
speedup, >= 1.5). Each layout runs twice, alternating; the better run counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.blocknodes import OurNode, cleanup, random_file
from bench.common import row


def fetch(path, size, providers: int) -> float:
    nodes = [OurNode() for _ in range(providers)]
    try:
        cids = {n.add(path)[0] for n in nodes}
        assert len(cids) == 1
        fetcher = OurNode()
        try:
            for n in nodes:
                fetcher.connect(n.addr)
            seconds = fetcher.get(cids.pop(), path.parent / "multi.out")
        finally:
            fetcher.stop()
        (path.parent / "multi.out").unlink()
        return size / seconds / (1 << 20)
    finally:
        for n in nodes:
            n.stop()


def run(quick: bool = False) -> Iterable[dict]:
    size = (32 if quick else 256) << 20
    path = random_file(size)
    try:
        one = three = 0.0
        for _ in range(1 if quick else 2):
            three = max(three, fetch(path, size, 3))
            one = max(one, fetch(path, size, 1))
        yield row("bitswap-multi", f"fetch {size >> 20} MiB from 3 providers", three, "MiB/s",
                  "p2pd from 1 provider (same run)", one)
    finally:
        cleanup(path)
