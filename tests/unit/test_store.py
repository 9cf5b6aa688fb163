"""The datastore: typed key spaces over one real RocksDB in a tmp dir."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from p2pd.errors import StoreError
from p2pd.store import SPACES, Datastore, prefix_end


def test_prefix_end_is_the_exclusive_upper_bound_of_a_prefix():
    assert prefix_end(b"/blocks/") == b"/blocks0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None


def test_no_space_prefix_is_a_prefix_of_another():
    prefixes = list(SPACES.values())
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a)


def test_spaces_are_isolated(datastore: Datastore):
    datastore.pins.put(b"k", b"pin")
    datastore.peers.put(b"k", b"peer")
    assert datastore.pins.get(b"k") == b"pin"
    assert datastore.peers.get(b"k") == b"peer"
    assert datastore.records.get(b"k") is None
    assert list(datastore.pins.items()) == [(b"k", b"pin")]


def test_get_put_has_delete(datastore: Datastore):
    space = datastore.records
    assert not space.has(b"a")
    space.put(b"a", memoryview(b"value"))
    space.put(b"empty", b"")
    assert space.has(b"a") and space.get(b"a") == b"value"
    assert space.has(b"empty") and space.get(b"empty") == b""
    space.delete(b"a")
    space.delete(b"never-there")
    assert not space.has(b"a") and space.get(b"a") is None


def test_iteration_by_prefix_is_in_key_order_and_spans_pages(datastore: Datastore):
    space = datastore.providers
    for i in range(1500):  # more than one scan page
        space.put(b"%05d" % i, b"v%d" % i)
    space.put(b"\xff\xff", b"top")
    keys = list(space.keys())
    assert keys == sorted(keys) and len(keys) == 1501
    assert list(space.keys(b"0149")) == [b"%05d" % i for i in range(1490, 1500)]
    assert dict(space.items(b"00042")) == {b"00042": b"v42"}
    assert space.count(b"01") == 500
    assert datastore.space("providers") is space


def test_batch_writes_across_spaces_all_together(datastore: Datastore):
    datastore.pins.put(b"old", b"1")
    with datastore.batch() as batch:
        batch.put(datastore.blocks, b"mh", b"data")
        batch.put(datastore.pins, b"new", b"2")
        batch.delete(datastore.pins, b"old")
        assert len(batch) == 3
        assert datastore.blocks.get(b"mh") is None, "nothing is visible before the batch is written"
    assert datastore.blocks.get(b"mh") == b"data"
    assert list(datastore.pins.keys()) == [b"new"]


def test_batch_that_raises_writes_nothing(datastore: Datastore):
    with pytest.raises(RuntimeError), datastore.batch() as batch:
        batch.put(datastore.pins, b"a", b"1")
        raise RuntimeError("failed half-way")
    assert not datastore.pins.has(b"a")


def test_batch_is_written_once(datastore: Datastore):
    batch = datastore.batch()
    batch.put(datastore.meta, b"x", b"1")
    batch.write()
    with pytest.raises(StoreError, match="already written"):
        batch.write()


def test_unknown_space_name_is_a_store_error(datastore: Datastore):
    with pytest.raises(StoreError, match="no key space named 'nope'"):
        datastore.space("nope")


def test_reopen_keeps_data(tmp_path: Path):
    with Datastore.open(tmp_path / "ds") as ds:
        ds.peers.put(b"p", b"addr")
    with Datastore.open(tmp_path / "ds") as ds:
        assert ds.peers.get(b"p") == b"addr"
        assert ds.meta.get(b"format") == b"1"


def test_close_is_idempotent_and_later_use_is_a_store_error(tmp_path: Path):
    ds = Datastore.open(tmp_path / "ds")
    ds.pins.put(b"a", b"1")
    ds.close()
    ds.close()
    assert ds.closed
    with pytest.raises(StoreError, match="is closed"):
        ds.pins.get(b"a")
    with pytest.raises(StoreError, match="is closed"):
        ds.pins.put(b"a", b"1")
    with pytest.raises(StoreError, match="is closed"):
        ds.batch()


def test_close_releases_the_lock_even_with_a_scan_in_progress(tmp_path: Path):
    ds = Datastore.open(tmp_path / "ds")
    for i in range(10):
        ds.pins.put(b"%d" % i, b"")
    scan = ds.pins.keys()
    next(scan)
    ds.close()
    Datastore.open(tmp_path / "ds").close()


def test_second_open_in_this_process_is_a_clear_store_error(tmp_path: Path):
    with Datastore.open(tmp_path / "ds"):
        with pytest.raises(StoreError, match="in use by another process"):
            Datastore.open(tmp_path / "ds")


def test_open_held_by_another_process_is_a_clear_store_error(tmp_path: Path):
    path = tmp_path / "ds"
    holder = textwrap.dedent(
        f"""
        import sys
        from p2pd.store import Datastore
        ds = Datastore.open({str(path)!r})
        print("open", flush=True)
        sys.stdin.read()
        ds.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(StoreError) as info:
            Datastore.open(path)
        assert str(path) in str(info.value)
        assert "in use by another process" in str(info.value)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    Datastore.open(path).close()


def test_open_where_a_file_is_is_a_store_error(tmp_path: Path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StoreError, match="cannot open datastore"):
        Datastore.open(tmp_path / "file")


def test_unknown_format_is_refused(tmp_path: Path):
    with Datastore.open(tmp_path / "ds") as ds:
        ds.meta.put(b"format", b"99")
    with pytest.raises(StoreError, match="format"):
        Datastore.open(tmp_path / "ds")
    # The refused open released the database (and its LOCK) again.
    db = Rdict(str(tmp_path / "ds"), Options(raw_mode=True))
    db.close()


def test_sync_mode_writes_are_readable(tmp_path: Path):
    with Datastore.open(tmp_path / "ds", sync=True) as ds:
        assert ds.sync
        ds.pins.put(b"a", b"1")
        assert ds.pins.get(b"a") == b"1"


def test_keys_and_values_must_be_bytes_like(datastore: Datastore):
    with pytest.raises(TypeError):
        datastore.pins.put("text", b"x")  # type: ignore[arg-type]


def test_compact_returns_the_space_of_deleted_keys_to_the_disk(datastore):
    import os as _os

    for i in range(64):
        datastore.blocks.put(i.to_bytes(2, "big"), _os.urandom(128 << 10))
    datastore.pins.put(b"kept", b"pin")
    datastore.flush()
    full = datastore.disk_usage()
    assert full > 8 << 20
    for i in range(64):
        datastore.blocks.delete(i.to_bytes(2, "big"))
    datastore.compact("blocks")
    assert datastore.disk_usage() < full - (7 << 20)
    assert datastore.pins.get(b"kept") == b"pin"
    assert datastore.blocks.count() == 0


def _damaged_store(path: Path, peers: int = 0) -> tuple[dict[bytes, bytes], bytes]:
    """A datastore of 40 blocks of 20 kB and their pins (and ``peers`` small entries), one
    byte of block k010 flipped in its table file; the blocks and the damaged key."""
    import glob
    import os

    vals = {}
    with Datastore.open(path) as ds:
        with ds.batch() as batch:
            for i in range(peers):
                batch.put(ds.peers, b"p%06d" % i, b"x" * 50)
        for i in range(40):
            k = b"k%03d" % i
            vals[k] = os.urandom(20000)
            ds.blocks.put(k, vals[k])
            ds.pins.put(k, b"pin %d" % i)
        ds.flush()
    needle = vals[b"k010"][5000:5064]
    for sst in glob.glob(str(path / "*.sst")):
        raw = bytearray(Path(sst).read_bytes())
        if (at := raw.find(needle)) >= 0:
            raw[at] ^= 1
            Path(sst).write_bytes(raw)
            return vals, b"k010"
    raise AssertionError("no table file holds the block")


def test_a_write_that_meets_a_damaged_table_file_salvages_and_goes_through(tmp_path: Path):
    path = tmp_path / "datastore"
    vals, bad = _damaged_store(path)
    with Datastore.open(path) as ds:
        ds.checkers["blocks"] = lambda k, v: vals.get(k) == v
        ds.blocks.put(b"new", b"x")  # in the memtable: the compaction below merges
        ds.compact()  # meets the damage: RocksDB refuses writes from now on
        ds.blocks.put(b"after", b"y")  # salvaged, then written
        [report] = ds.salvages
        assert report["dropped"]["blocks"] == 2  # k010, and b"new" (not in the checker's)
        assert report["copied"]["pins"] == 40 and report["read_unverified"] >= 1
        aside = Path(report["kept_aside"])
        assert aside.parent == tmp_path and list(aside.glob("*.sst"))
        assert ds.blocks.get(bad) is None
        assert all(ds.blocks.get(k) == v for k, v in vals.items() if k != bad)
        assert ds.blocks.get(b"after") == b"y"
        ds.compact()
        ds.blocks.put(b"later", b"z")  # the fresh database has no damage left
        assert len(ds.salvages) == 1
    with Datastore.open(path) as ds:
        assert ds.blocks.get(b"after") == b"y" and ds.blocks.get(b"later") == b"z"
        assert ds.pins.count() == 40 and ds.blocks.count() == 39 + 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datastore", aside.name]


def test_a_read_of_a_damaged_key_makes_the_next_write_salvage(tmp_path: Path):
    path = tmp_path / "datastore"
    vals, bad = _damaged_store(path)
    with Datastore.open(path) as ds:
        with pytest.raises(StoreError, match="Corruption"):
            ds.blocks.get(bad)
        assert ds.salvages == []
        ds.pins.delete(b"k000")
        [report] = ds.salvages
        # no checker for blocks here: only what read back verified is kept
        assert report["dropped"]["blocks"] == 1 and ds.blocks.count() == 39
        assert ds.pins.count() == 39


def test_a_salvage_cut_short_or_between_its_renames_is_finished_at_open(tmp_path: Path):
    from p2pd.store.datastore import SALVAGE_MARK

    path = tmp_path / "datastore"
    with Datastore.open(path) as ds:
        ds.blocks.put(b"a", b"1")
    fresh = tmp_path / "datastore.salvage"
    with Datastore.open(fresh) as ds:  # a copy without its mark: cut short
        ds.blocks.put(b"a", b"partial")
    with Datastore.open(path) as ds:
        assert ds.blocks.get(b"a") == b"1"
    assert not fresh.exists()
    with Datastore.open(fresh) as ds:  # complete, and the old one renamed aside already
        ds.blocks.put(b"a", b"salvaged")
    (fresh / SALVAGE_MARK).write_text("{}")
    path.rename(tmp_path / "datastore.damaged-x")
    with Datastore.open(path) as ds:
        assert ds.blocks.get(b"a") == b"salvaged"
    assert not fresh.exists() and not (path / SALVAGE_MARK).exists()


def test_writes_from_another_thread_during_a_salvage_are_all_kept(tmp_path: Path):
    import threading
    import time

    path = tmp_path / "datastore"
    vals, bad = _damaged_store(path, peers=50_000)  # a copy long enough to write during
    acked: list[bytes] = []
    failed: list[Exception] = []
    stop = threading.Event()
    with Datastore.open(path) as ds:
        def writer() -> None:
            i = 0
            while not stop.is_set():
                key = b"w%06d" % i
                try:
                    ds.records.put(key, b"v" * 1000)
                    acked.append(key)
                except Exception as exc:
                    failed.append(exc)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            while len(acked) < 20 and not failed:
                time.sleep(0.001)
            with pytest.raises(StoreError, match="Corruption"):
                ds.blocks.get(bad)
            while not ds.salvages:
                ds.pins.put(b"trigger", b"x")  # the next write salvages
        finally:
            stop.set()
            t.join()
        assert not failed, failed[:3]
        assert all(ds.records.get(k) == b"v" * 1000 for k in acked)
    with Datastore.open(path) as ds:
        assert all(ds.records.get(k) == b"v" * 1000 for k in acked)
        assert ds.blocks.get(bad) is None and ds.blocks.count() == 39
