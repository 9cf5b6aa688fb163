"""The blockstore over a real RocksDB: verification on put and get, atomic batches, the LRU."""

import logging
import os
from pathlib import Path

import pytest

from p2pd.blocks import CID, Codec
from p2pd.blocks import multihash as mhash
from p2pd.blocks.blockstore import Blockstore, ByteLRU
from p2pd.errors import BlockNotFound, CorruptBlock, InvalidBlock, StoreError
from p2pd.store import Datastore


@pytest.fixture
def store(datastore: Datastore) -> Blockstore:
    return Blockstore(datastore)


def raw(data: bytes) -> CID:
    return CID.for_block(data, Codec.RAW)


def test_put_then_get_has_size(store: Blockstore):
    cid = raw(b"hello")
    assert str(cid) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert not store.has(cid)
    store.put(cid, b"hello")
    assert store.has(cid)
    assert store.get(cid) == b"hello"
    assert store.size(cid) == 5
    assert store.get(str(cid)) == b"hello", "text CIDs are accepted too"


def test_get_of_a_missing_block_is_block_not_found(store: Blockstore):
    cid = raw(b"absent")
    with pytest.raises(BlockNotFound, match=str(cid)):
        store.get(cid)
    with pytest.raises(BlockNotFound, match=str(cid)):
        store.size(cid)


def test_mismatching_block_is_refused_and_nothing_is_written(store: Blockstore, datastore):
    cid = raw(b"the real bytes")
    with pytest.raises(InvalidBlock, match=str(cid)):
        store.put(cid, b"other bytes")
    assert not store.has(cid)
    assert list(datastore.blocks.keys()) == []
    assert list(datastore.blockinfo.keys()) == []


def test_put_many_is_all_or_nothing(store: Blockstore, datastore):
    good = [(raw(b"block %d" % i), b"block %d" % i) for i in range(20)]
    bad_cid = raw(b"expected")
    batch = good[:10] + [(bad_cid, b"tampered")] + good[10:]
    with pytest.raises(InvalidBlock, match=str(bad_cid)):
        store.put_many(batch)
    assert store.count() == 0
    assert list(datastore.blocks.keys()) == []
    assert store.put_many(good) == 20
    assert store.count() == 20
    assert all(store.get(c) == d for c, d in good)


def test_put_many_names_how_many_more_are_bad(store: Blockstore):
    batch = [(raw(b"a"), b"x"), (raw(b"b"), b"y"), (raw(b"c"), b"c")]
    with pytest.raises(InvalidBlock, match="and 1 more"):
        store.put_many(batch)


def test_put_many_accepts_memoryviews_the_caller_then_reuses(store: Blockstore):
    buf = bytearray(b"aaaabbbb")
    view = memoryview(buf)
    blocks = [(raw(b"aaaa"), view[:4]), (raw(b"bbbb"), view[4:])]
    store.put_many(blocks)
    buf[:] = b"zzzzzzzz"
    assert store.get(raw(b"aaaa")) == b"aaaa"
    assert store.get(raw(b"bbbb")) == b"bbbb"
    assert store.size(raw(b"bbbb")) == 4


def test_put_many_of_nothing_writes_nothing(store: Blockstore):
    assert store.put_many([]) == 0
    assert store.count() == 0


def test_oversized_block_is_refused(datastore: Datastore):
    store = Blockstore(datastore, max_block_size=10)
    data = b"x" * 11
    with pytest.raises(InvalidBlock, match="11 bytes"):
        store.put(raw(data), data)
    assert not store.has(raw(data))


def test_v0_and_v1_of_the_same_node_share_one_block(store: Blockstore, datastore):
    node = b"\x0a\x02\x08\x01"  # a dag-pb node: UnixFS Data{Type: Directory}
    v0 = CID.for_block(node, Codec.DAG_PB, 0)
    v1 = v0.to_v1()
    assert str(v0).startswith("Qm") and str(v1).startswith("bafy")
    store.put(v0, node)
    assert store.has(v1) and store.get(v1) == node
    assert store.count() == 1
    assert list(datastore.blocks.keys()) == [v0.multihash]
    store.put(v1, node)
    assert store.count() == 1
    assert list(store.cids()) == [v1]


def test_cids_yields_v1_with_the_stored_codec(store: Blockstore):
    leaf = b"leaf bytes"
    node = b"\x0a\x02\x08\x01"
    store.put(raw(leaf), leaf)
    store.put(CID.for_block(node, Codec.DAG_PB, 0), node)
    got = set(store.cids())
    assert got == {raw(leaf), CID.for_block(node, Codec.DAG_PB, 1)}


def test_same_bytes_under_another_codec_keep_the_latest_codec(store: Blockstore):
    data = b"\x0a\x02\x08\x01"
    store.put(raw(data), data)
    store.put(CID.for_block(data, Codec.DAG_PB), data)
    assert list(store.cids()) == [CID.for_block(data, Codec.DAG_PB)]


def test_delete_removes_the_block_and_is_idempotent(store: Blockstore):
    cid = raw(b"gone soon")
    store.put(cid, b"gone soon")
    assert store.get(cid) == b"gone soon"  # now cached too
    store.delete(cid)
    store.delete(cid)
    assert not store.has(cid)
    with pytest.raises(BlockNotFound):
        store.get(cid)
    assert store.count() == 0


def test_identity_cids_are_served_inline_and_never_stored(store: Blockstore, datastore):
    data = b"tiny inline block"
    cid = CID.v1(Codec.RAW, mhash.identity(data))
    store.put(cid, data)
    assert list(datastore.blocks.keys()) == []
    assert store.has(cid)
    assert store.get(cid) == data
    assert store.size(cid) == len(data)
    assert list(store.cids()) == []
    store.delete(cid)
    assert store.get(cid) == data


def test_identity_cid_with_other_bytes_is_refused(store: Blockstore):
    cid = CID.v1(Codec.RAW, mhash.identity(b"inline"))
    with pytest.raises(InvalidBlock, match=str(cid)):
        store.put(cid, b"different")


def test_block_corrupted_on_disk_is_never_served(store: Blockstore, datastore, caplog):
    cid = raw(b"precious data")
    store.put(cid, b"precious data")
    datastore.blocks.put(cid.multihash, b"precious dat4")  # bit rot, through the raw key space
    with caplog.at_level(logging.ERROR, logger="p2pd.blocks.blockstore"):
        with pytest.raises(CorruptBlock, match=str(cid)):
            store.get(cid)
    assert str(cid) in caplog.text
    # Quarantined: the bad bytes are kept aside, the block reads as missing.
    assert datastore.quarantine.get(cid.multihash) == b"precious dat4"
    assert not store.has(cid)
    with pytest.raises(BlockNotFound):
        store.get(cid)
    # A good copy (e.g. from Bitswap) heals it and clears the quarantine.
    store.put(cid, b"precious data")
    assert store.get(cid) == b"precious data"
    assert datastore.quarantine.get(cid.multihash) is None


def test_corruption_is_detected_after_reopen(tmp_path: Path):
    cid = raw(b"abc")
    with Datastore.open(tmp_path / "ds") as ds:
        Blockstore(ds).put(cid, b"abc")
        ds.blocks.put(cid.multihash, b"abd")
    with Datastore.open(tmp_path / "ds") as ds:
        with pytest.raises(CorruptBlock):
            Blockstore(ds).get(cid)


def test_reopen_keeps_blocks(tmp_path: Path):
    blocks = [(raw(b"%d" % i * 100), b"%d" % i * 100) for i in range(50)]
    with Datastore.open(tmp_path / "ds") as ds:
        Blockstore(ds).put_many(blocks)
    with Datastore.open(tmp_path / "ds") as ds:
        store = Blockstore(ds)
        assert store.count() == 50
        assert {c for c, _ in blocks} == set(store.cids())
        for cid, data in blocks:
            assert store.get(cid) == data


def test_lru_stays_within_its_byte_bound(datastore: Datastore):
    store = Blockstore(datastore, cache_bytes=10_000)
    blocks = [(raw(bytes([i]) * 1000), bytes([i]) * 1000) for i in range(30)]
    store.put_many(blocks)
    for cid, data in blocks:
        assert store.get(cid) == data
        assert store.cache.used <= 10_000
    assert len(store.cache) == 10
    # The most recently read blocks are the ones cached.
    assert all(c.multihash in store.cache for c, _ in blocks[-10:])
    assert not any(c.multihash in store.cache for c, _ in blocks[:20])


def test_lru_evicts_least_recently_used_first():
    lru = ByteLRU(30)
    lru.put(b"a", b"x" * 10)
    lru.put(b"b", b"x" * 10)
    lru.put(b"c", b"x" * 10)
    assert lru.get(b"a") is not None  # a is now the most recent
    lru.put(b"d", b"x" * 10)
    assert b"b" not in lru and b"a" in lru and b"d" in lru
    lru.put(b"big", b"x" * 31)
    assert b"big" not in lru and lru.used == 30, "a block larger than the bound is not cached"
    lru.put(b"a", b"y" * 5)
    assert lru.used == 25
    lru.discard(b"a")
    lru.clear()
    assert lru.used == 0 and len(lru) == 0


def test_cache_hits_skip_the_disk(store: Blockstore, datastore):
    cid = raw(b"cached")
    store.put(cid, b"cached")
    store.get(cid)
    datastore.blocks.delete(cid.multihash)  # behind the blockstore's back
    assert store.get(cid) == b"cached"


def test_closed_blockstore_refuses_use_and_leaves_the_datastore_open(store: Blockstore, datastore):
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get(raw(b"x"))
    with pytest.raises(StoreError, match="closed"):
        store.put(raw(b"x"), b"x")
    assert not datastore.closed


def test_blockstore_on_a_closed_datastore_is_a_store_error(tmp_path: Path):
    ds = Datastore.open(tmp_path / "ds")
    store = Blockstore(ds)
    ds.close()
    with pytest.raises(StoreError):
        store.put(raw(b"x"), b"x")


def test_bulk_writes_verify_and_are_durable_after_the_block(tmp_path):
    path = tmp_path / "bulk"
    good = [os.urandom(1000 + i) for i in range(20)]
    cids = [CID.for_block(b, Codec.RAW) for b in good]
    ds = Datastore.open(path)
    store = Blockstore(ds)
    with store.bulk() as writer:
        writer.put_many(zip(cids[:10], good[:10], strict=True))
        with pytest.raises(InvalidBlock):
            writer.put_many([(cids[10], good[10]), (cids[11], b"not the block")])
        writer.put_many(zip(cids[12:], good[12:], strict=True))
    assert not store.has(cids[10]) and not store.has(cids[11])
    ds.close()
    with Datastore.open(path) as ds:
        store = Blockstore(ds)
        kept = [*zip(cids[:10], good[:10], strict=True), *zip(cids[12:], good[12:], strict=True)]
        for cid, data in kept:
            assert store.get(cid) == data
