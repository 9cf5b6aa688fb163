"""The persistent peerstore's records: round trips, bounds, damaged values, pruning."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.errors import StoreError
from p2pd.peerbook import (
    MAX_ADDRS,
    MAX_PROTOCOLS,
    PeerBook,
    PeerEntry,
    decode_entry,
    encode_entry,
)

PID = bytes.fromhex("0024080112200102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")


def entry(i: int = 0, **kw) -> PeerEntry:
    base = dict(peer_id=PID + bytes([i]), addrs=[bytes.fromhex("047f000001060fa1")],
                protocols=["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"],
                public_key=b"\x08\x01\x12\x20" + bytes(32), last_seen=1000.0 + i)
    base.update(kw)
    return PeerEntry(**base)


def test_round_trip():
    e = entry()
    assert decode_entry(e.peer_id, encode_entry(e)) == e


def test_encoding_cuts_what_a_peer_announced_beyond_the_bounds():
    e = entry(addrs=[b"\x04" + bytes([i]) * 4 for i in range(100)],
              protocols=[f"/p/{i}" for i in range(500)])
    back = decode_entry(e.peer_id, encode_entry(e))
    assert len(back.addrs) == MAX_ADDRS and len(back.protocols) == MAX_PROTOCOLS


@pytest.mark.parametrize("raw,words", [
    (b"\xff\xfe", "not JSON"),
    (b"[]", "not an object"),
    (json.dumps({"a": "x"}).encode(), "addresses"),
    (json.dumps({"a": ["zz"]}).encode(), "hex"),
    (json.dumps({"p": [1]}).encode(), "protocols"),
    (json.dumps({"p": ["/x"] * (MAX_PROTOCOLS + 1)}).encode(), "protocols"),
    (json.dumps({"k": 5}).encode(), "bad key"),
    (json.dumps({"t": True}).encode(), "bad key or timestamp"),
    (b"{" + b" " * 70000 + b"}", "bytes"),
])
def test_damaged_values_are_refused_with_the_reason(raw, words):
    with pytest.raises(StoreError, match=words):
        decode_entry(PID, raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda c: st.lists(c, max_size=5) | st.dictionaries(
                                  st.sampled_from(["a", "p", "k", "t", "x"]), c, max_size=5),
                              max_leaves=20).map(lambda d: json.dumps(d).encode())))
def test_decoder_fuzz_only_store_errors(raw):
    try:
        e = decode_entry(PID, raw)
    except StoreError:
        return
    assert isinstance(e, PeerEntry) and len(e.addrs) <= MAX_ADDRS


def test_book_saves_loads_and_drops_damaged_entries(datastore):
    book = PeerBook(datastore)
    assert book.save([entry(i) for i in range(5)]) == 5
    datastore.peers.put(PID + b"\xee", b"garbage")
    loaded = sorted(book.load(), key=lambda e: e.peer_id)
    assert [e.peer_id for e in loaded] == [PID + bytes([i]) for i in range(5)]
    assert datastore.peers.get(PID + b"\xee") is None  # the damaged one was removed


def test_book_keeps_the_most_recently_seen(datastore):
    book = PeerBook(datastore, max_peers=3)
    book.save([entry(i) for i in range(6)])
    kept = sorted(e.peer_id[-1] for e in book.load())
    assert kept == [3, 4, 5]
