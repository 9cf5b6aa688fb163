"""The sans-IO Bitswap core: codec round trips and bounds, the serving engine (wantlists,
presences, priorities, fairness) and sessions (discovery, splitting, timeouts, cancels),
and a simulated network of sessions and engines fetching a DAG from several providers."""

from __future__ import annotations

import os
import random

import pytest

from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec
from p2pd.exchange.engine import Engine
from p2pd.exchange.session import Session
from p2pd.exchange.wire import (
    MAX_BLOCK,
    PROTOCOL_100,
    PROTOCOL_110,
    BitswapFrameDecoder,
    BitswapMessage,
    BitswapWireError,
    WantEntry,
    cid_prefix,
    decode_message,
    encode_message,
)
from p2pd.proto import bitswap_pb2 as pb


class DictStore:
    def __init__(self, blocks=()):
        self.blocks = {c.multihash: d for c, d in blocks}

    def has(self, cid):
        return cid.multihash in self.blocks

    def size(self, cid):
        return len(self.blocks[cid.multihash])

    def get(self, cid):
        return self.blocks[cid.multihash]

    def put(self, cid, data):
        assert CID.for_block(data, cid.codec, cid.version).multihash == cid.multihash
        self.blocks[cid.multihash] = data


def raw_block(n=1000, seed=None):
    data = os.urandom(n) if seed is None else random.Random(seed).randbytes(n)
    return CID.for_block(data, Codec.RAW), data


def frame_body(frame: bytes) -> bytes:
    dec = BitswapFrameDecoder()
    dec.receive_data(frame)
    return dec.next_frame()


# -- codec --------------------------------------------------------------------------------

def test_round_trip_of_every_field():
    c1, d1 = raw_block(100)
    c0 = CID.for_block(b"\x0a\x00", Codec.DAG_PB, 0)
    msg = BitswapMessage(
        wants=[WantEntry(c1, 5, want_have=True, send_dont_have=True),
               WantEntry(c0, 1, cancel=True)],
        full=True, blocks=[(c1, d1)], haves=[c0], dont_haves=[c1], pending_bytes=7)
    back = decode_message(frame_body(encode_message(msg)))
    assert back.full and back.pending_bytes == 7
    assert [(w.cid, w.priority, w.cancel, w.want_have, w.send_dont_have) for w in back.wants] == [
        (c1, 5, False, True, True), (c0, 1, True, False, False)]
    assert back.blocks == [(c1, d1)] and back.haves == [c0] and back.dont_haves == [c1]


def test_block_cid_is_derived_from_the_bytes_and_prefix():
    c, d = raw_block(300)
    assert cid_prefix(c) == bytes([1, 0x55, 0x12, 32])
    m = pb.Message()
    m.payload.add(prefix=cid_prefix(c), data=d + b"x")  # tampered bytes get another CID
    got = decode_message(m.SerializeToString())
    assert got.blocks[0][0] != c and got.blocks[0][0] == CID.for_block(d + b"x", Codec.RAW)


def test_old_dialects():
    c, d = raw_block(50)
    v0 = CID.for_block(b"\x0a\x00", Codec.DAG_PB, 0)
    msg = BitswapMessage(wants=[WantEntry(c, want_have=True), WantEntry(v0)],
                         blocks=[(v0, b"\x0a\x00")], haves=[c])
    back = decode_message(frame_body(encode_message(msg, PROTOCOL_100)))
    assert [w.cid for w in back.wants] == [v0]  # want-have means nothing to 1.0.0
    assert back.blocks == [(v0, b"\x0a\x00")] and not back.haves
    back = decode_message(frame_body(encode_message(msg, PROTOCOL_110)))
    assert back.blocks == [(v0, b"\x0a\x00")]


@pytest.mark.parametrize("build,needle", [
    (lambda m: m.wantlist.entries.add(block=b"\x01\x55"), "invalid CID"),
    (lambda m: m.blockPresences.add(cid=b"junk"), "invalid CID"),
    (lambda m: m.payload.add(prefix=b"\x01\x55\x13\x40", data=b"x"), "unsupported multihash"),
    (lambda m: m.payload.add(prefix=b"\x01\x55\x12\x20\x00", data=b"x"), "trailing"),
    (lambda m: m.payload.add(prefix=b"\x00\x55\x12\x20", data=b"x"), "CIDv0"),
    (lambda m: m.payload.add(prefix=b"\x01\x55\x12", data=b"x"), "prefix"),
    (lambda m: m.blocks.append(b"x" * (MAX_BLOCK + 1)), "exceeds"),
])
def test_malformed_messages_are_refused_with_a_reason(build, needle):
    m = pb.Message()
    build(m)
    with pytest.raises(BitswapWireError, match=needle):
        decode_message(m.SerializeToString())


def test_garbage_and_oversized_frames():
    with pytest.raises(BitswapWireError):
        decode_message(b"\xff\xff\xff")
    dec = BitswapFrameDecoder()
    dec.receive_data(b"\xff\xff\xff\xff\x0f")  # 4 GiB announced
    with pytest.raises(BitswapWireError):
        dec.next_frame()


# -- engine -------------------------------------------------------------------------------

def test_engine_answers_blocks_haves_and_dont_haves():
    have_big, have_small, missing = raw_block(5000), raw_block(10), raw_block(20)
    eng = Engine(DictStore([have_big, have_small]))
    eng.receive(b"p", BitswapMessage(wants=[
        WantEntry(have_big[0], 1, want_have=True, send_dont_have=True),
        WantEntry(have_small[0], 1, want_have=True),
        WantEntry(missing[0], 1, send_dont_have=True),
    ]))
    out = eng.next_message(b"p")
    assert out.haves == [have_big[0]]
    assert out.blocks == [have_small]  # small enough to send instead of HAVE
    assert out.dont_haves == [missing[0]]
    assert eng.next_message(b"p") is None


def test_wants_for_missing_blocks_are_served_when_the_block_arrives():
    blk = raw_block(100)
    store = DictStore()
    eng = Engine(store)
    eng.receive(b"p", BitswapMessage(wants=[WantEntry(blk[0], 1)]))
    assert eng.next_message(b"p") is None  # no DONT_HAVE asked for: keep waiting
    store.put(*blk)
    assert eng.blocks_added([blk[0]]) == [b"p"]
    assert eng.next_message(b"p").blocks == [blk]


def test_priority_order_budget_cancel_and_full_wantlist():
    blocks = [raw_block(1000) for _ in range(5)]
    eng = Engine(DictStore(blocks))
    eng.receive(b"p", BitswapMessage(wants=[WantEntry(c, prio) for (c, _), prio in
                                            zip(blocks, [1, 5, 3, 4, 2], strict=True)]))
    eng.receive(b"p", BitswapMessage(wants=[WantEntry(blocks[3][0], cancel=True)]))
    first = eng.next_message(b"p", budget=2000)
    assert [c for c, _ in first.blocks] == [blocks[1][0], blocks[2][0]]
    eng.receive(b"p", BitswapMessage(full=True, wants=[WantEntry(blocks[0][0], 1)]))
    assert [c for c, _ in eng.next_message(b"p").blocks] == [blocks[0][0]]
    assert eng.next_message(b"p") is None


def test_wantlists_are_bounded():
    eng = Engine(DictStore(), max_wants=10)
    eng.receive(b"p", BitswapMessage(wants=[WantEntry(raw_block(8)[0]) for _ in range(50)]))
    assert len(eng.ledgers[b"p"].wants) == 10 and eng.ledgers[b"p"].dropped_wants == 40


def test_fairness_prefers_peers_that_give():
    blocks = [raw_block(1000) for _ in range(4)]
    eng = Engine(DictStore(blocks))
    for peer in (b"taker", b"giver"):
        eng.receive(peer, BitswapMessage(wants=[WantEntry(c) for c, _ in blocks]))
    eng.next_message(b"taker", budget=1)  # the taker got one block already
    eng.record_received(b"giver", 10 << 20)
    assert eng.pick_peer() == b"giver"
    assert eng.pick_peer(ready=lambda p: p != b"giver") == b"taker"


# -- sessions -----------------------------------------------------------------------------

def test_session_discovers_then_asks_the_peer_that_has_it():
    c, d = raw_block(100)
    s = Session()
    s.add_peer(b"a")
    s.add_peer(b"b")
    s.want([c])
    out = s.poll(0.0)
    assert {p for p in out} == {b"a", b"b"}
    assert all(m.wants[0].want_have for m in out.values())
    s.receive(b"a", BitswapMessage(dont_haves=[c]), 0.1)
    s.receive(b"b", BitswapMessage(haves=[c]), 0.1)
    out = s.poll(0.2)
    assert list(out) == [b"b"] and not out[b"b"].wants[0].want_have
    wanted, unwanted = s.receive(b"b", BitswapMessage(blocks=[(c, d)]), 0.3)
    assert wanted == [(c, d)] and not unwanted and s.done


def test_session_moves_away_from_a_slow_peer():
    c, d = raw_block(100)
    s = Session(min_timeout=1.0)
    s.add_peer(b"slow")
    s.add_peer(b"fast")
    s.want([c])
    s.poll(0.0)
    s.receive(b"slow", BitswapMessage(haves=[c]), 0.01)
    out = s.poll(0.02)
    assert list(out) == [b"slow"]
    s.receive(b"fast", BitswapMessage(haves=[c]), 0.03)
    out = s.poll(5.0)  # the slow peer timed out: cancel there, ask the other
    assert out[b"slow"].wants[0].cancel
    assert not out[b"fast"].wants[0].cancel and not out[b"fast"].wants[0].want_have
    assert s.peers[b"slow"].timeouts == 1


def test_session_keeps_a_peer_that_delivers_from_a_deep_queue():
    """32 wants queued at a provider on a slow uplink: one block every 0.5 s takes 16 s
    for the last, far past the timeout, yet the peer is busy, not slow: no want of it
    times out, and its latency is its time per block, not how long the queue was."""
    blocks = [raw_block(1000, seed=i) for i in range(32)]
    s = Session(min_timeout=2.0)
    s.add_peer(b"p")
    s.want([c for c, _ in blocks])
    s.poll(0.0)
    s.receive(b"p", BitswapMessage(haves=[c for c, _ in blocks]), 0.04)
    out = s.poll(0.05)
    assert len(out[b"p"].wants) == 32 and len(s.peers[b"p"].inflight) == 32
    now = 0.05
    for cid, data in blocks:
        for _ in range(10):  # polled every 50 ms while the provider sends
            now += 0.05
            out = s.poll(now)
            assert not out, out
        wanted, _ = s.receive(b"p", BitswapMessage(blocks=[(cid, data)]), now)
        assert wanted == [(cid, data)]
    assert s.done and s.peers[b"p"].timeouts == 0
    assert 0.4 < s.peers[b"p"].latency < 0.6


def test_session_leaves_a_peer_that_went_silent_with_a_queue():
    """The same queue, but the peer stops after 4 blocks: its other wants go to the peer
    that has them once it was silent for the timeout (not at the first want's age)."""
    blocks = [raw_block(1000, seed=i) for i in range(8)]
    s = Session(min_timeout=2.0, max_inflight=8)
    s.add_peer(b"p")
    s.want([c for c, _ in blocks])
    s.poll(0.0)
    s.receive(b"p", BitswapMessage(haves=[c for c, _ in blocks]), 0.04)
    s.poll(0.05)
    for i, (cid, data) in enumerate(blocks[:4]):
        s.receive(b"p", BitswapMessage(blocks=[(cid, data)]), 0.55 + 0.5 * i)
    s.add_peer(b"q")
    s.receive(b"q", BitswapMessage(haves=[c for c, _ in blocks]), 2.1)
    assert not any(e.cancel for m in s.poll(3.9).values() for e in m.wants)  # 1.85 s silent
    out = s.poll(4.2)  # 2.15 s silent
    rest = {c for c, _ in blocks[4:]}
    assert {e.cid for e in out[b"p"].wants if e.cancel} == rest
    assert {e.cid for e in out[b"q"].wants if not e.cancel} == rest


def test_session_reports_unwanted_blocks_and_cancels_elsewhere():
    c, d = raw_block(100)
    stray = raw_block(100)
    s = Session()
    for p in (b"a", b"b"):
        s.add_peer(p)
    s.want([c])
    s.poll(0.0)
    wanted, unwanted = s.receive(b"a", BitswapMessage(blocks=[(c, d), stray]), 0.1)
    assert wanted == [(c, d)] and unwanted == [stray]
    out = s.poll(0.2)
    assert out[b"b"].wants[0].cancel


def test_simulated_dag_fetch_from_three_providers_spreads_the_load():
    """20 blocks held by 3 providers: the session fetches all, from all three."""
    blocks = [raw_block(4096, seed=i) for i in range(60)]
    providers = {p: Engine(DictStore(blocks)) for p in (b"p1", b"p2", b"p3")}
    got = DictStore()
    s = Session(max_inflight=4)
    for p in providers:
        s.add_peer(p)
    s.want([c for c, _ in blocks])
    now = 0.0
    served_by = {p: 0 for p in providers}
    for _ in range(200):
        now += 0.01
        for peer, msg in s.poll(now).items():
            providers[peer].receive(b"me", msg)
        for peer, eng in providers.items():
            reply = eng.next_message(b"me", budget=8192)
            if reply is not None:
                served_by[peer] += len(reply.blocks)
                wanted, unwanted = s.receive(peer, reply, now + 0.005)
                assert not unwanted
                for cid, data in wanted:
                    got.put(cid, data)
        if s.done:
            break
    assert s.done and len(got.blocks) == 60
    assert all(n > 0 for n in served_by.values()), served_by
    assert sum(served_by.values()) == 60  # no block was sent twice
