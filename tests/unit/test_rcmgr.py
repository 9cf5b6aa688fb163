"""The resource manager's accounting (sans-IO): limits refuse with the limit named, every
scope gives back exactly what it took, refusals are counted."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.exchange.wire import BitswapFrameDecoder
from p2pd.framing import MEMORY_STEP, encode_frame
from p2pd.kad.wire import KadFrameDecoder
from p2pd.net.rcmgr import (
    MAX_BUCKETS,
    LimitExceeded,
    Limits,
    MemoryBudget,
    ResourceManager,
    TokenBucket,
    subnet_of,
)


def refused(rm: ResourceManager, fn, *args, **kw) -> str:
    with pytest.raises(LimitExceeded) as info:
        fn(*args, **kw)
    return info.value.limit


def test_per_ip_limit_refuses_the_next_inbound_connection_and_frees_on_done():
    rm = ResourceManager(Limits(max_conns_per_ip=3, inbound_rate=0))
    scopes = [rm.open_inbound("198.51.100.7", 0.0) for _ in range(3)]
    assert refused(rm, rm.open_inbound, "198.51.100.7", 0.0) == "max_conns_per_ip"
    rm.open_inbound("198.51.100.8", 0.0).done()  # another IP is fine
    scopes[0].done()
    scopes[0].done()  # idempotent
    rm.open_inbound("198.51.100.7", 0.0)
    assert rm.summary()["Refused"] == {"max_conns_per_ip": 1}


def test_subnet_limit_counts_a_v4_slash_24_and_a_v6_slash_56():
    assert subnet_of(__import__("ipaddress").ip_address("203.0.113.9")) == "203.0.113.0/24"
    assert subnet_of(__import__("ipaddress").ip_address("2001:db8:1:2ff::1")) == \
        "2001:db8:1:200::/56"
    rm = ResourceManager(Limits(max_conns_per_subnet=2, inbound_rate=0))
    rm.open_inbound("203.0.113.1", 0.0)
    rm.open_inbound("203.0.113.2", 0.0)
    assert refused(rm, rm.open_inbound, "203.0.113.3", 0.0) == "max_conns_per_subnet"
    rm.open_inbound("203.0.114.3", 0.0)
    rm.open_inbound("2001:db8:1:2ff::1", 0.0)
    rm.open_inbound("2001:db8:1:2fe::1", 0.0)
    assert refused(rm, rm.open_inbound, "2001:db8:1:2aa::9", 0.0) == "max_conns_per_subnet"
    rm.open_inbound("2001:db8:1:300::1", 0.0)


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address():
    rm = ResourceManager(Limits(max_conns_per_ip=1, inbound_rate=0))
    rm.open_inbound("198.51.100.1", 0.0)
    assert refused(rm, rm.open_inbound, "::ffff:198.51.100.1", 0.0) == "max_conns_per_ip"


def test_loopback_is_exempt_from_ip_and_rate_limits_unless_turned_off():
    rm = ResourceManager(Limits(max_conns_per_ip=1, inbound_rate=1, inbound_burst=1))
    for _ in range(10):
        rm.open_inbound("127.0.0.1", 0.0).set_peer(b"p%d" % _)
    strict = ResourceManager(Limits(max_conns_per_ip=1, exempt_loopback=False))
    strict.open_inbound("127.0.0.2", 0.0)
    assert refused(strict, strict.open_inbound, "127.0.0.2", 0.0) == "max_conns_per_ip"


def test_rate_cap_is_a_token_bucket_per_ip():
    rm = ResourceManager(Limits(inbound_rate=2.0, inbound_burst=3, max_conns_per_ip=0))
    for _ in range(3):
        rm.open_inbound("192.0.2.1", 10.0).done()
    assert refused(rm, rm.open_inbound, "192.0.2.1", 10.0) == "inbound_rate"
    rm.open_inbound("192.0.2.2", 10.0)  # its own bucket
    rm.open_inbound("192.0.2.1", 10.5)  # one token back after 0.5 s at 2/s
    assert refused(rm, rm.open_inbound, "192.0.2.1", 10.5) == "inbound_rate"
    bucket = TokenBucket(1.0, 2, 0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(100.0) and bucket.take(100.0) and not bucket.take(100.0)  # capped burst


def test_buckets_are_bounded():
    rm = ResourceManager(Limits(inbound_rate=1.0, max_conns_per_ip=0, max_conns_per_subnet=0,
                                max_conns=0, max_conns_inbound=0))
    for i in range(MAX_BUCKETS + 50):
        rm.open_inbound(f"198.18.{i >> 8 & 255}.{i & 255}", float(i)).done()
    assert len(rm.buckets) <= MAX_BUCKETS


def test_pending_handshakes_are_limited_and_freed_by_the_handshake():
    rm = ResourceManager(Limits(max_pending_inbound=2))
    a, b = rm.open_inbound("127.0.0.1", 0), rm.open_inbound("127.0.0.1", 0)
    assert refused(rm, rm.open_inbound, "127.0.0.1", 0) == "max_pending_inbound"
    a.set_peer(b"A")
    c = rm.open_inbound("127.0.0.1", 0)
    b.done()
    c.done()
    assert rm.pending == 0 and rm.conns == {"inbound": 1, "outbound": 0}


def test_per_peer_limit_applies_to_inbound_after_the_handshake():
    rm = ResourceManager(Limits(max_conns_per_peer=2))
    rm.adopt("outbound", b"P")
    rm.open_inbound("127.0.0.1", 0).set_peer(b"P")
    late = rm.open_inbound("127.0.0.1", 0)
    assert refused(rm, late.set_peer, b"P") == "max_conns_per_peer"
    assert rm.pending == 0 and rm.conns["inbound"] == 1  # the refused one gave everything back
    rm.open_outbound().set_peer(b"P", enforce=False)  # our own dials are not refused by it
    assert rm.peer_conns[b"P"] == 3


def test_total_inbound_and_outbound_limits():
    rm = ResourceManager(Limits(max_conns=3, max_conns_inbound=2, max_conns_outbound=2))
    rm.open_inbound(None, 0)
    rm.open_inbound(None, 0)
    assert refused(rm, rm.open_inbound, None, 0) == "max_conns_inbound"
    out = rm.open_outbound()
    assert refused(rm, rm.open_outbound) == "max_conns"
    out.done()
    rm.open_outbound()


def test_streams_total_per_peer_inbound_and_per_protocol():
    rm = ResourceManager(Limits(max_streams=5, max_streams_inbound_per_peer=2,
                                max_streams_per_protocol=2))
    s1, s2 = rm.open_stream(b"A", "inbound"), rm.open_stream(b"A", "inbound")
    assert refused(rm, rm.open_stream, b"A", "inbound") == "max_streams_inbound_per_peer"
    rm.open_stream(b"A", "outbound")  # outbound is not a peer's inbound streams
    s1.set_protocol("/x")
    s2.set_protocol("/x")
    s3 = rm.open_stream(b"B", "inbound")
    assert refused(rm, s3.set_protocol, "/x") == "max_streams_per_protocol"
    assert rm.streams["inbound"] == 2 and b"B" not in rm.peer_streams  # released
    rm.open_stream(b"B", "inbound").set_protocol("/y")
    rm.open_stream(b"C", "outbound").set_protocol("/x")  # outbound has limits of its own
    assert refused(rm, rm.open_stream, b"D", "outbound") == "max_streams"
    s1.done()
    assert rm.protocol_streams == {"/x": 1, "/y": 1} and rm.protocol_streams_out == {"/x": 1}


def test_outbound_streams_are_limited_per_peer_and_per_protocol_apart_from_inbound():
    rm = ResourceManager(Limits(max_streams_outbound_per_peer=2,
                                max_streams_outbound_per_protocol=3,
                                max_streams_inbound_per_peer=1, max_streams_per_protocol=1))
    a1, a2 = rm.open_stream(b"A", "outbound"), rm.open_stream(b"A", "outbound")
    assert refused(rm, rm.open_stream, b"A", "outbound") == "max_streams_outbound_per_peer"
    rm.open_stream(b"A", "inbound").set_protocol("/x")  # inbound counts apart
    a1.set_protocol("/x")
    a2.set_protocol("/x")
    b1 = rm.open_stream(b"B", "outbound")
    b1.set_protocol("/x")
    b2 = rm.open_stream(b"B", "outbound")
    assert refused(rm, b2.set_protocol, "/x") == "max_streams_outbound_per_protocol"
    assert rm.peer_streams_out == {b"A": 2, b"B": 1}  # the refused one is released
    a1.done()
    rm.open_stream(b"A", "outbound").set_protocol("/x")
    assert rm.summary()["Refused"] == {"max_streams_outbound_per_peer": 1,
                                       "max_streams_outbound_per_protocol": 1}


def test_memory_budget_refuses_what_does_not_fit_and_tracks_its_peak():
    m = MemoryBudget(100)
    assert m.reserve(60) and not m.reserve(50) and m.reserve(40)
    m.release(100)
    m.force(150)
    assert m.over and m.peak == 150 and m.refused == 1
    m.release(1000)
    assert m.used == 0


def test_one_peer_is_held_to_its_share_of_the_memory_budget_and_others_still_fit():
    m = MemoryBudget(100, per_peer=60)
    a, b, c = m.for_peer(b"A"), m.for_peer(b"B"), m.for_peer(b"C")
    assert a.reserve(50) and not a.reserve(20)  # past A's 60
    assert m.refused == 1 and m.refused_peer == 1
    assert not a.reserve(20, growth=True) and m.growth_skipped == 1
    assert b.reserve(40) and not c.reserve(20)  # C's share is free, the node's 100 is not
    assert m.refused == 2 and m.refused_peer == 1
    b.force(15)  # data that arrived: B over its share, the node over its budget
    assert b.over and a.over and m.over and m.peers == {b"A": 50, b"B": 55}
    b.release(55)
    assert not a.over and not b.over and m.used == 50
    a.force(20)  # A alone over its share: its connection is held back, not B's
    assert a.over and not b.over and not m.over
    a.release(500)
    assert m.peers == {} and m.used == 0
    free = MemoryBudget(100)  # no per-peer cap: one peer may take all of it
    assert free.for_peer(b"A").reserve(100) and free.for_peer(b"A").limit == 100


def test_limits_check_names_the_bad_field():
    for kw, name in [({"max_conns_per_peer": 0}, "max_conns_per_peer"),
                     ({"memory": 10}, "memory"), ({"memory_per_peer": 1000}, "memory_per_peer"),
                     ({"inbound_rate": -1.0}, "inbound_rate"),
                     ({"max_streams": 1.5}, "max_streams"), ({"exempt_loopback": 1},
                                                            "exempt_loopback")]:
        with pytest.raises(ValueError, match=name):
            Limits(**kw).check()
    assert Limits().check() == Limits()


ops = st.lists(st.tuples(st.sampled_from(["in", "out", "peer", "done", "sin", "sout", "proto",
                                           "sdone"]),
                         st.integers(0, 5), st.integers(0, 3)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_any_sequence_of_opens_and_closes_returns_every_counter_to_zero(seq):
    rm = ResourceManager(Limits(max_conns=6, max_conns_inbound=4, max_conns_outbound=4,
                                max_conns_per_peer=2, max_conns_per_ip=2,
                                max_conns_per_subnet=3, max_pending_inbound=3,
                                inbound_rate=3.0, inbound_burst=2, max_streams=6,
                                max_streams_inbound_per_peer=2, max_streams_per_protocol=2,
                                max_streams_outbound_per_peer=2,
                                max_streams_outbound_per_protocol=2, exempt_loopback=False))
    conns, streams, now = [], [], 0.0
    for op, a, b in seq:
        now += 0.1
        try:
            if op == "in":
                conns.append(rm.open_inbound(f"192.0.{b}.{a}", now, validated=a % 2 == 0))
            elif op == "out":
                conns.append(rm.open_outbound())
            elif op == "peer" and conns:
                c = conns[a % len(conns)]
                if c.peer is None and not c.closed:
                    c.set_peer(bytes([b]), enforce=c.direction == "inbound")
            elif op == "done" and conns:
                conns.pop(a % len(conns)).done()
            elif op in ("sin", "sout"):
                streams.append(rm.open_stream(bytes([b]), "inbound" if op == "sin" else "outbound"))
            elif op == "proto" and streams:
                s = streams[a % len(streams)]
                if s.protocol is None and not s.closed:
                    s.set_protocol(f"/p{b}")
            elif op == "sdone" and streams:
                streams.pop(a % len(streams)).done()
        except LimitExceeded:
            pass
        lim = rm.limits
        assert rm.conns["inbound"] <= lim.max_conns_inbound
        assert sum(rm.conns.values()) <= lim.max_conns
        assert all(n <= lim.max_conns_per_ip for n in rm.ip_conns.values())
        assert rm.pending <= lim.max_pending_inbound
        assert rm.pending_unvalidated <= rm.unvalidated_slots
        assert sum(rm.streams.values()) <= lim.max_streams
        assert all(n <= lim.max_streams_per_protocol for n in rm.protocol_streams.values())
        assert all(n <= 2 for n in rm.protocol_streams_out.values())
        assert all(n <= 2 for n in rm.peer_streams_out.values())
    for c in conns:
        c.done()
    for s in streams:
        s.done()
    assert rm.conns == {"inbound": 0, "outbound": 0} and rm.streams == {"inbound": 0,
                                                                        "outbound": 0}
    assert rm.pending == 0 and rm.pending_unvalidated == 0
    assert not (rm.ip_conns or rm.subnet_conns or rm.peer_conns or rm.peer_streams
                or rm.protocol_streams or rm.peer_streams_out or rm.protocol_streams_out)


def test_a_skipped_window_growth_is_not_a_refused_stream():
    m = MemoryBudget(100)
    assert m.reserve(90)
    assert not m.reserve(20, growth=True) and not m.reserve(20)
    assert (m.refused, m.growth_skipped) == (1, 1)


def test_unvalidated_sources_hold_at_most_half_the_pending_slots_and_a_retry_is_asked_then():
    rm = ResourceManager(Limits(max_pending_inbound=6, inbound_rate=0))
    assert rm.unvalidated_slots == 3 and not rm.needs_validation()
    first = [rm.open_inbound(f"192.0.2.{i}", 0.0, validated=False) for i in range(3)]
    assert rm.needs_validation()  # the QUIC router answers the next Initials with a Retry
    assert refused(rm, rm.open_inbound, "192.0.2.9", 0.0, validated=False) == \
        "max_pending_inbound"
    # clients that answered a Retry (and TCP's) still have the other half
    rest = [rm.open_inbound(f"198.51.100.{i}", 0.0) for i in range(3)]
    assert rm.pending == 6
    assert refused(rm, rm.open_inbound, "198.51.100.9", 0.0) == "max_pending_inbound"
    first[0].set_peer(b"p")  # its handshake ended: both counts freed
    first[1].done()  # failed or timed out
    first[1].done()
    assert (rm.pending, rm.pending_unvalidated) == (4, 1) and not rm.needs_validation()
    first[0].done()
    for scope in first[2:] + rest:
        scope.done()
    assert (rm.pending, rm.pending_unvalidated, rm.conns["inbound"]) == (0, 0, 0)
    assert rm.summary()["Use"]["pending_unvalidated"] == 0


def test_framed_readers_count_in_the_peers_share_apart_and_their_refusals_are_counted():
    rm = ResourceManager(Limits(memory=8 << 20, memory_per_peer=2 << 20))
    muxer, reader = rm.memory.for_peer(b"a"), rm.memory.for_buffers(b"a")
    assert muxer.reserve(1 << 20) and reader.reserve(1 << 20)
    assert rm.memory.peers[b"a"] == 2 << 20 and rm.memory.buffers == 1 << 20
    assert not reader.reserve(1)  # the peer's share is gone, muxer and reader alike
    assert rm.memory.for_buffers(b"b").reserve(1 << 20)  # another peer still fits
    use, refusals = rm.summary()["Use"], rm.summary()["Refused"]
    assert use["memory_buffers"] == 2 << 20
    assert refusals["memory_buffers"] == 1 and refusals["memory_per_peer"] == 1
    reader.release(1 << 20)
    rm.memory.for_buffers(b"b").release(1 << 20)
    muxer.release(1 << 20)
    assert rm.memory.used == 0 and rm.memory.buffers == 0 and not rm.memory.peers


def test_a_framed_reader_counts_its_partial_message_in_steps_and_gives_it_back():
    rm = ResourceManager(Limits(memory=64 << 20, memory_per_peer=4 << 20))
    share = rm.memory.for_buffers(b"a")
    with KadFrameDecoder(memory=share) as decoder:
        decoder.receive_data(encode_frame(b"x" * 60_000))  # within the free first step
        assert rm.memory.buffers == 0
        assert decoder.next_frame() == b"x" * 60_000
        big = encode_frame(os.urandom(3 << 20))
        for i in range(0, len(big) - 1, 100_000):
            decoder.receive_data(big[i : min(i + 100_000, len(big) - 1)])
            held = rm.memory.buffers  # all but the first step, in steps
            assert decoder.buffered - MEMORY_STEP <= held < decoder.buffered
        assert decoder.next_frame() is None
        decoder.receive_data(big[-1:])
        assert len(decoder.next_frame()) == 3 << 20 and rm.memory.buffers == 0
        decoder.receive_data(big[:1000])
    assert rm.memory.used == 0 and not rm.memory.peers  # leaving the block gives it back


def test_streams_holding_partial_large_messages_are_refused_past_the_peers_share():
    rm = ResourceManager(Limits(memory=64 << 20, memory_per_peer=4 << 20))
    partial = encode_frame(b"\0" * (4 << 20))[: (1 << 20) + 10]  # 1 MiB of a 4 MiB message
    held, refused = [], 0
    for _ in range(6):
        decoder = BitswapFrameDecoder(memory=rm.memory.for_buffers(b"a"))
        try:
            decoder.receive_data(partial)
            held.append(decoder)
        except LimitExceeded as exc:
            assert exc.limit == "memory" and "peer holds" in str(exc)
            assert decoder.buffered == 0  # it keeps nothing once refused
            refused += 1
    assert (len(held), refused) == (4, 2)  # 1 MiB + 10 bytes, less the free step: 1 MiB
    assert rm.summary()["Refused"]["memory_buffers"] == 2
    other = KadFrameDecoder(memory=rm.memory.for_buffers(b"b"))
    other.receive_data(partial)  # another peer's share is its own
    for decoder in [*held, other]:
        decoder.close()
        decoder.close()
    assert rm.memory.used == 0 and rm.memory.buffers == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200_000), min_size=1, max_size=6),
       st.lists(st.integers(1, 150_000), min_size=1, max_size=40))
def test_any_cut_of_frames_holds_what_is_buffered_and_frees_it_all(payloads, cuts):
    rm = ResourceManager(Limits(memory=64 << 20, memory_per_peer=0))
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = KadFrameDecoder(memory=rm.memory.for_buffers(b"a"))
    got, pos, i = [], 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        decoder.receive_data(stream[pos : pos + n])
        pos += n
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
        held = rm.memory.buffers
        assert decoder.buffered - MEMORY_STEP <= held < decoder.buffered + MEMORY_STEP
    assert got == payloads and rm.memory.buffers == 0
    decoder.close()
    assert rm.memory.used == 0
