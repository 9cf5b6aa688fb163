"""Provider records in RocksDB: expiry, bounds, sweep, republish schedule, damaged values."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.errors import StoreError
from p2pd.kad.providers import ProviderStore, _decode


def test_add_get_expire_and_sweep(datastore):
    store = ProviderStore(datastore, ttl=100)
    store.add(b"cid-1", b"peer-a", [b"\x04\x7f\x00\x00\x01"], now=0)
    store.add(b"cid-1", b"peer-b", [], now=50)
    store.add(b"cid-2", b"peer-a", [], now=0)
    assert [p.peer for p in store.get(b"cid-1", now=10)] == [b"peer-b", b"peer-a"]
    assert store.get(b"cid-1", now=10)[1].addrs == [b"\x04\x7f\x00\x00\x01"]
    assert [p.peer for p in store.get(b"cid-1", now=120)] == [b"peer-b"]  # a expired
    assert store.get(b"cid-1x", now=10) == []  # no prefix confusion between keys
    assert store.sweep(now=120) == 2
    assert [p.peer for p in store.get(b"cid-1", now=120)] == [b"peer-b"]


def test_refresh_extends_and_the_bound_keeps_the_latest(datastore):
    store = ProviderStore(datastore, ttl=100, max_per_key=3)
    for i in range(6):
        store.add(b"k", bytes([i]) * 4, [], now=i)
    kept = sorted(p.peer[0] for p in store.get(b"k", now=6))
    assert kept == [3, 4, 5]
    store.add(b"k", bytes([3]) * 4, [], now=200)  # refresh: lives past the others
    assert [p.peer[0] for p in store.get(b"k", now=150)] == [3]


def test_records_survive_a_reopen(tmp_path):
    from p2pd.store import Datastore

    with Datastore.open(tmp_path / "ds") as ds:
        ProviderStore(ds).add(b"k", b"peer", [b"addr"], now=1000)
    with Datastore.open(tmp_path / "ds") as ds:
        assert [p.peer for p in ProviderStore(ds).get(b"k", now=1001)] == [b"peer"]


def test_bad_arguments(datastore):
    store = ProviderStore(datastore)
    with pytest.raises(ValueError):
        store.add(b"", b"peer", [], now=0)
    with pytest.raises(ValueError):
        store.add(b"k", b"", [], now=0)
    with pytest.raises(ValueError):
        store.add(b"x" * 5000, b"peer", [], now=0)


def test_damaged_values_are_skipped_and_swept(datastore):
    store = ProviderStore(datastore)
    store.add(b"k", b"good", [], now=0)
    datastore.providers.put(b"\x01k" + b"bad", b"\x00\x01")
    assert [p.peer for p in store.get(b"k", now=1)] == [b"good"]
    assert store.sweep(now=1) == 1


def test_republish_schedule(datastore):
    store = ProviderStore(datastore)
    store.provide(b"a", now=0)
    store.provide(b"b", now=10 * 3600)
    assert store.due_for_republish(now=23 * 3600) == [b"a"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_fuzz(raw):
    try:
        expires, addrs = _decode(raw)
    except StoreError:
        return
    assert expires >= 0 and len(addrs) <= 16
