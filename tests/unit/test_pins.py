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
