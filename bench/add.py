"""`p2pd add` of a 256 MiB file through the running daemon (UnixFS, CIDv1, raw leaves,
256 KiB chunks, into RocksDB, pinned) vs Helia 7's `unixfs.addBytes` of the same bytes
(same layout, into its default in-memory blockstore, the bytes already in memory).

Ours is timed from the ADD request to its answer (reading the file included); Helia's
time covers addBytes only. Three runs each (ours from a fresh repo each time), alternating;
the best counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.blocknodes import HeliaNode, OurNode, cleanup, random_file
from bench.common import row


def run(quick: bool = False) -> Iterable[dict]:
    size = (32 if quick else 256) << 20
    path = random_file(size)
    helia = HeliaNode()
    try:
        ours = theirs = float("inf")
        cids = set()
        for _ in range(1 if quick else 3):
            ours_node = OurNode()  # a fresh repo each time: every block is written
            try:
                cid, seconds = ours_node.add(path)
            finally:
                ours_node.stop()
            cids.add(cid)
            ours = min(ours, seconds)
            reply = helia.call(cmd="addBytes", path=str(path))
            cids.add(reply["cid"])
            theirs = min(theirs, reply["ms"] / 1000)
        assert len(cids) == 1, cids
        mib = size / (1 << 20)
        yield row("add", f"add {size >> 20} MiB (UnixFS, CIDv1 raw leaves)", mib / ours, "MiB/s",
                  "helia 7.1.15 unixfs.addBytes (@helia/unixfs 8.0.5)", mib / theirs)
    finally:
        helia.stop()
        cleanup(path)
