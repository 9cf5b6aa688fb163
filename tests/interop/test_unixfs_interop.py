"""Our UnixFS importer gives the reference importer's root CIDs (ipfs-unixfs-importer 17,
configured as kubo's ``ipfs add``), and our exporter gives the exact bytes back.

The reference runs once per session over every file (one Node process), so the
whole module costs a couple of seconds.
"""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from p2pd.blocks.cid import CID
from p2pd.blocks.exporter import export_file, export_path
from p2pd.blocks.importer import import_path
from p2pd.blocks.multicodec import Codec
from p2pd.errors import CorruptBlock

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
CHUNK = 262_144
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 174 * CHUNK, 174 * CHUNK + 1, 20 << 20]
#: (cid_version, raw_leaves): `ipfs add` and `ipfs add --cid-version=1`, plus kubo's two mixes.
MODES = [(0, False), (1, True), (0, True), (1, False)]


class MemoryStore:
    """Verifying in-memory block store."""

    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}

    def put_many(self, blocks) -> None:
        for cid, data in blocks:
            assert cid.verify(data)
            self.blocks[cid] = bytes(data)

    def get(self, cid: CID) -> bytes:
        return self.blocks[cid]


def _make_tree(root: Path, rng: random.Random) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"hello world\n")
    (root / "B.bin").write_bytes(rng.randbytes(3 * CHUNK + 17))
    (root / "sub" / "zero").write_bytes(b"")
    (root / "sub" / "one-chunk").write_bytes(rng.randbytes(CHUNK))
    (root / "sub" / "deeper" / "naïve é.txt").write_bytes(rng.randbytes(1000))
    (root / "sub" / "deeper" / "Z").write_bytes(b"z")


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """Map (path, cid_version, raw_leaves) -> the reference importer's root CID."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    if not (HERE / "node_modules" / "ipfs-unixfs-importer").is_dir():
        pytest.fail("tests/interop/node_modules is missing: run `npm ci` in tests/interop")
    work = tmp_path_factory.mktemp("unixfs")
    rng = random.Random(20240601)
    paths = []
    for size in SIZES:
        path = work / f"file-{size}"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    tree = work / "tree"
    _make_tree(tree, rng)
    paths.append(tree)
    jobs = [{"path": str(p), "cidVersion": v, "rawLeaves": raw} for p in paths for v, raw in MODES]
    (work / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run(
        [node, str(HERE / "unixfs_import.mjs"), str(work / "jobs.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(jobs)
    return work, {
        (j["path"], j["cidVersion"], j["rawLeaves"]): json.loads(line)
        for j, line in zip(jobs, lines, strict=True)
    }


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"v{m[0]}-{'raw' if m[1] else 'pb'}")
@pytest.mark.parametrize("size", SIZES)
def test_file_root_cid_matches_reference(reference, size, mode):
    work, ref = reference
    path = work / f"file-{size}"
    ours = import_path(path, cid_version=mode[0], raw_leaves=mode[1])
    expected = ref[(str(path), *mode)]
    assert (str(ours.cid), ours.tsize) == (expected["cid"], expected["size"])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"v{m[0]}-{'raw' if m[1] else 'pb'}")
def test_directory_tree_root_cid_matches_reference(reference, mode):
    work, ref = reference
    ours = import_path(work / "tree", cid_version=mode[0], raw_leaves=mode[1])
    expected = ref[(str(work / "tree"), *mode)]
    assert (str(ours.cid), ours.tsize) == (expected["cid"], expected["size"])


def test_kubo_defaults_give_the_reference_cids(reference):
    work, ref = reference
    path = work / f"file-{CHUNK + 1}"
    assert str(import_path(path).cid) == ref[(str(path), 0, False)]["cid"]
    assert str(import_path(path, cid_version=1).cid) == ref[(str(path), 1, True)]["cid"]


@pytest.mark.parametrize("mode", [(0, False), (1, True)])
def test_export_gives_the_exact_bytes_back(reference, mode):
    work, _ref = reference
    path = work / f"file-{20 << 20}"
    store = MemoryStore()
    result = import_path(path, store, cid_version=mode[0], raw_leaves=mode[1])
    assert b"".join(export_file(store, result.cid)) == path.read_bytes()


def test_exported_tree_equals_the_imported_one(reference, tmp_path):
    work, _ref = reference
    store = MemoryStore()
    result = import_path(work / "tree", store, cid_version=1)
    export_path(store, result.cid, tmp_path / "out")
    src = sorted(p.relative_to(work / "tree") for p in (work / "tree").rglob("*"))
    dst = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    assert src == dst
    for rel in src:
        if (work / "tree" / rel).is_file():
            assert (tmp_path / "out" / rel).read_bytes() == (work / "tree" / rel).read_bytes()


def test_tampered_leaf_is_detected_on_export(reference):
    work, _ref = reference
    store = MemoryStore()
    result = import_path(work / f"file-{174 * CHUNK + 1}", store)
    victim = next(c for c, b in store.blocks.items() if c.codec == Codec.DAG_PB and len(b) > CHUNK)
    block = bytearray(store.blocks[victim])
    block[-100] ^= 1
    store.blocks[victim] = bytes(block)
    with pytest.raises(CorruptBlock):
        for _ in export_file(store, result.cid):
            pass
