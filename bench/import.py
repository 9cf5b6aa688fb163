"""UnixFS import (``ipfs add --cid-version=1``: 256 KiB chunks, raw leaves, 174 links).

Ours: :func:`p2pd.blocks.importer.import_file` reading the file from disk (page
cache) and writing every block into RocksDB in a fresh temporary directory,
WAL on. Peer: ipfs-unixfs-importer 17 under Node into its MemoryBlockstore,
timing only the import of a buffer already in memory (not Node start-up, not
reading the file). Both must give the same root CID. Best of three runs each.

A second row compares our ``--only-hash`` mode (no store) with the same peer
figure, which isolates the importer from the store.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.common import row
from p2pd.blocks.importer import import_file

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / "tests" / "interop"
WORK = ROOT / "bench" / ".work"
REPEAT = 3


def _log(msg: str) -> None:
    print(f"[import] {msg}", file=sys.stderr, flush=True)


def _make_file(size: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"import-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as fh:
            left = size
            while left:
                n = min(left, 16 << 20)
                fh.write(os.urandom(n))
                left -= n
    return path


def _peer(path: Path) -> tuple[str, float]:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules").is_dir():
        raise SystemExit("the import benchmark needs node and `npm ci` in tests/interop")
    out = subprocess.run(
        [node, str(INTEROP / "unixfs_import.mjs"), "--bench", str(path), "--repeat", str(REPEAT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["cid"], result["seconds"]


class _RocksSink:
    """Stand-in store until p2pd.blocks.blockstore lands: one RocksDB write batch per call."""

    def __init__(self, path: str) -> None:
        from rocksdict import Options, Rdict

        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        # Large values go to blob files instead of being rewritten by compaction.
        opts.set_enable_blob_files(True)
        opts.set_min_blob_size(4096)
        opts.set_write_buffer_size(256 << 20)
        self.db = Rdict(path, opts)

    def put_many(self, blocks: Iterable) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for cid, data in blocks:
            batch.put(bytes(cid), bytes(data))
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def _store(path: str) -> Iterator[tuple[object, str]]:
    """The real blockstore when it is available, else the RocksDB stand-in."""
    try:
        from p2pd.blocks.blockstore import Blockstore  # type: ignore[import-not-found]

        from p2pd.store import open_datastore  # type: ignore[attr-defined]
    except ImportError:
        sink = _RocksSink(path)
        try:
            yield sink, "rocksdb-direct"
        finally:
            sink.close()
        return
    datastore = open_datastore(path)
    try:
        yield Blockstore(datastore), "blockstore"
    finally:
        close = getattr(datastore, "close", None)
        if close is not None:
            close()


def _ours(path: Path, store: bool) -> tuple[str, float, str]:
    best = float("inf")
    cid = ""
    kind = "only-hash"
    for _ in range(REPEAT):
        with tempfile.TemporaryDirectory(prefix="p2pd-bench-") as tmp:
            if store:
                with _store(tmp) as (sink, kind):
                    t0 = time.perf_counter()
                    result = import_file(path, sink, cid_version=1)
                    best = min(best, time.perf_counter() - t0)
            else:
                t0 = time.perf_counter()
                result = import_file(path, None, cid_version=1)
                best = min(best, time.perf_counter() - t0)
            cid = str(result.cid)
    return cid, best, kind


def run(quick: bool) -> Iterable[dict]:
    size = (16 << 20) if quick else (256 << 20)
    path = _make_file(size)
    mb = size / 1e6
    _log(f"file {path} ({size >> 20} MiB); peer times only the in-memory import")
    peer_cid, peer_s = _peer(path)
    peer_rate = mb / peer_s
    _log(f"peer ipfs-unixfs-importer: {peer_rate:.0f} MB/s  {peer_cid}")
    cid, ours_s, kind = _ours(path, store=True)
    if cid != peer_cid:
        raise AssertionError(f"root CID differs: ours {cid}, peer {peer_cid}")
    _log(f"ours into {kind}: {mb / ours_s:.0f} MB/s")
    label = f"{size >> 20}MiB"
    yield row(
        "import",
        f"unixfs_add_cidv1_{label}_into_{kind}_MBps",
        mb / ours_s,
        "MB/s",
        "ipfs-unixfs-importer@17 (node, MemoryBlockstore)",
        peer_rate,
    )
    cid, hash_s, _ = _ours(path, store=False)
    if cid != peer_cid:
        raise AssertionError(f"only-hash root CID differs: ours {cid}, peer {peer_cid}")
    _log(f"ours only-hash: {mb / hash_s:.0f} MB/s")
    yield row(
        "import",
        f"unixfs_add_cidv1_{label}_only_hash_MBps",
        mb / hash_s,
        "MB/s",
        "ipfs-unixfs-importer@17 (node, MemoryBlockstore)",
        peer_rate,
    )
