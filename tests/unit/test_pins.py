"""Pins and garbage collection on a real RocksDB blockstore."""

import os

import pytest

from p2pd.blocks.blockstore import Blockstore
from p2pd.blocks.importer import import_path
from p2pd.blocks.pins import PinError, Pins, missing_blocks, walk
from p2pd.store import Datastore


@pytest.fixture
def repo(tmp_path):
    ds = Datastore.open(tmp_path / "ds")
    store = Blockstore(ds)
    yield ds, store, Pins(ds, store)
    ds.close()


def add(store, tmp_path, name, size):
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    with store.bulk() as writer:
        return import_path(str(path), writer, cid_version=1).cid


def test_gc_removes_only_what_no_pin_reaches(repo, tmp_path):
    ds, store, pins = repo
    kept = add(store, tmp_path, "kept", 3 << 20)
    dropped = add(store, tmp_path, "dropped", 2 << 20)
    pins.add(kept, "kept")
    before = store.count()
    kept_blocks = {c.multihash for c, present in walk(store, kept) if present}
    removed, freed = pins.gc()
    assert removed == before - len(kept_blocks) and freed >= 2 << 20
    assert not missing_blocks(store, kept)
    assert missing_blocks(store, dropped) == [dropped]
    assert [p.cid for p in pins.list()] == [kept] and pins.list()[0].name == "kept"


def test_a_pin_never_points_at_a_missing_block(repo, tmp_path):
    ds, store, pins = repo
    root = add(store, tmp_path, "f", 1 << 20)
    leaf = next(c for c, _ in walk(store, root) if c != root)
    store.delete(leaf)
    with pytest.raises(PinError, match="not stored"):
        pins.add(root)
    assert pins.list() == []


def test_unpin_then_gc_frees_everything(repo, tmp_path):
    ds, store, pins = repo
    root = add(store, tmp_path, "f", 1 << 20)
    pins.add(root)
    pins.remove(root)
    with pytest.raises(PinError):
        pins.remove(root)
    pins.gc()
    assert store.count() == 0


def test_pins_survive_reopen(tmp_path):
    ds = Datastore.open(tmp_path / "ds")
    store = Blockstore(ds)
    root = add(store, tmp_path, "f", 300_000)
    Pins(ds, store).add(root, "f")
    ds.close()
    ds = Datastore.open(tmp_path / "ds")
    try:
        assert [p.cid for p in Pins(ds, Blockstore(ds)).list()] == [root]
    finally:
        ds.close()


def test_gc_keeps_what_the_roots_of_running_operations_reach(repo, tmp_path):
    ds, store, pins = repo
    fetching = add(store, tmp_path, "fetching", 1 << 20)  # unpinned: a fetch in progress
    loose = add(store, tmp_path, "loose", 1 << 20)
    pins.gc([fetching])
    assert not missing_blocks(store, fetching)
    assert missing_blocks(store, loose) == [loose]


def test_gc_with_a_too_deep_running_dag_still_collects(repo, tmp_path):
    from p2pd.blocks import dagpb, unixfs
    from p2pd.blocks.cid import CID
    from p2pd.blocks.multicodec import Codec
    from p2pd.blocks.pins import MAX_DEPTH

    ds, store, pins = repo
    loose = add(store, tmp_path, "loose", 1 << 20)
    data = unixfs.encode(unixfs.UnixFSData(unixfs.DataType.DIRECTORY))
    child = None
    for i in range(MAX_DEPTH + 3):  # a hostile chain of directories
        links = [dagpb.PBLink(child, f"d{i}", 1)] if child else []
        block = dagpb.encode(links, data)
        child = CID.for_block(block, Codec.DAG_PB, 1)
        store.put(child, block)
    removed, _ = pins.gc([child])
    assert missing_blocks(store, loose) == [loose] and removed > 0
    assert store.has(child)
