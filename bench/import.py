"""UnixFS import (``ipfs add --cid-version=1``: 256 KiB chunks, raw leaves, 174 links).

Ours: :func:`p2pd.blocks.importer.import_file` reading the file from disk (page
cache) and writing every block into the real blockstore (RocksDB) in a fresh
temporary directory, as ``p2pd add`` does: every block verified against its CID,
one bulk write timed up to its closing flush (which makes it durable). Peer:
ipfs-unixfs-importer 17 under Node into its MemoryBlockstore, timing only the
import of a buffer already in memory (not Node start-up, not reading the file).
Both must give the same root CID. Best of three runs each.

A second row compares our ``--only-hash`` mode (no store) with the same peer
figure, which isolates the importer from the store.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import row
from p2pd.blocks.blockstore import Blockstore
from p2pd.blocks.importer import import_file
from p2pd.store import Datastore

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


def _ours(path: Path, store: bool) -> tuple[str, float, str]:
    best = float("inf")
    cid = ""
    kind = "only-hash"
    for _ in range(REPEAT):
        with tempfile.TemporaryDirectory(prefix="p2pd-bench-") as tmp:
            if store:
                datastore = Datastore.open(tmp)
                try:
                    # Timed to the end of the bulk write: its final flush makes it durable.
                    t0 = time.perf_counter()
                    with Blockstore(datastore).bulk() as writer:
                        result = import_file(path, writer, cid_version=1)
                    best = min(best, time.perf_counter() - t0)
                finally:
                    datastore.close()
                kind = "blockstore"
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
