"""Bitswap throughput: a 256 MiB file (CIDv1, raw leaves, 256 KiB chunks) fetched between
two of our daemons over loopback, vs between two Helia 7 nodes, in the same run.

Ours: `GET` through the fetcher's control socket (fetch every block over Bitswap, store it
in RocksDB, write the file out). Helia: `unixfs.cat` streamed into a file. Each side runs
twice, alternating, from a fresh fetcher; the better run counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.blocknodes import HeliaNode, OurNode, cleanup, random_file
from bench.common import row


def fetch_ours(path, size) -> float:
    provider = OurNode()
    try:
        cid, _ = provider.add(path)
        fetcher = OurNode()
        try:
            fetcher.connect(provider.addr)
            seconds = fetcher.get(cid, path.parent / "ours.out")
        finally:
            fetcher.stop()
        (path.parent / "ours.out").unlink()
        return size / seconds / (1 << 20)
    finally:
        provider.stop()


def fetch_helia(path, size) -> float:
    provider, fetcher = HeliaNode(), HeliaNode()
    try:
        cid = provider.call(cmd="add", path=str(path))["cid"]
        fetcher.call(cmd="dial", addr=provider.addr)
        reply = fetcher.call(cmd="cat", cid=cid, out=str(path.parent / "helia.out"))
        assert reply["bytes"] == size
        (path.parent / "helia.out").unlink()
        return size / (reply["ms"] / 1000) / (1 << 20)
    finally:
        provider.stop()
        fetcher.stop()


def run(quick: bool = False) -> Iterable[dict]:
    size = (32 if quick else 256) << 20
    path = random_file(size)
    try:
        ours = helia = 0.0
        for _ in range(1 if quick else 2):
            ours = max(ours, fetch_ours(path, size))
            helia = max(helia, fetch_helia(path, size))
        yield row("bitswap", f"fetch {size >> 20} MiB between two nodes (loopback)", ours,
                  "MiB/s", "helia 7.1.15 -> helia (@helia/bitswap 4.0.19)", helia)
    finally:
        cleanup(path)
