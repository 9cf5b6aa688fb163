"""The sans-IO Kademlia core: routing table and lookup state machine."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.kad.keyspace import common_prefix_len, key_for
from p2pd.kad.lookup import Lookup, State
from p2pd.kad.routing import RoutingTable


def ids(n: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(34) for _ in range(n)]


def test_keyspace():
    a, b = key_for(b"a"), key_for(b"b")
    assert common_prefix_len(a, a) == 256
    assert 0 <= common_prefix_len(a, b) < 256
    assert key_for(b"a") == a  # stable


def test_table_refuses_itself_and_fills_buckets_up_to_k():
    local = b"me" * 17
    table = RoutingTable(local, k=3)
    assert not table.add(local, 0).added
    peers = ids(400)
    for p in peers:
        table.add(p, 1.0)
    for b in table.buckets:
        assert len(b.members) <= 3
    assert len(table) > 0 and all(p in peers for p in (e.peer for e in table.peers()))


def test_full_bucket_parks_the_newcomer_and_names_the_oldest_to_check():
    local = b"L" * 34
    table = RoutingTable(local, k=2)
    table_key = table.local_key
    same = [p for p in ids(3000, 2) if common_prefix_len(table_key, key_for(p)) == 0][:4]
    assert table.add(same[0], 1).added and table.add(same[1], 2).added
    result = table.add(same[2], 3)
    assert not result.added and result.check == same[0]
    table.seen(same[0], 4)  # it answered: now same[1] is the oldest
    assert table.add(same[3], 5).check == same[1]
    table.failed(same[1])  # it did not: evicted, the freshest replacement promoted
    members = set(table.buckets[0].members)
    assert same[1] not in members and same[3] in members and same[0] in members


def test_closest_matches_brute_force():
    local = b"x" * 34
    table = RoutingTable(local, k=20)
    peers = ids(500, 3)
    for p in peers:
        table.add(p, 0)
    inside = [e.peer for e in table.peers()]
    target = key_for(b"target")
    want = sorted(inside, key=lambda p: key_for(p) ^ target)[:20]
    assert table.closest(target) == want


def test_refresh_targets_fall_in_their_buckets():
    local = b"r" * 34
    table = RoutingTable(local, k=20, now=0)
    for p in ids(300, 4):
        table.add(p, 0)
    rnd = random.Random(5)
    targets = table.refresh_targets(now=1000, interval=600, rng=rnd)
    assert targets
    for i, key in enumerate(targets):
        assert common_prefix_len(table.local_key, key) == i
    table.touched(targets[0], 1000)
    assert len(table.refresh_targets(now=1001, interval=600, rng=rnd)) == len(targets) - 1


class Sim:
    """A small network answering FIND_NODE from full routing tables."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.ids = ids(n, seed)
        self.tables = {}
        for p in self.ids:
            t = RoutingTable(p, k=20)
            for q in self.ids:
                t.add(q, 0)
            self.tables[p] = t


def run(lookup: Lookup, answer, max_steps: int = 10_000) -> None:
    now = 0.0
    for _ in range(max_steps):
        if lookup.done:
            return
        batch = lookup.next_queries(now)
        assert len([p for p, s in lookup.state.items() if s is State.WAITING]) <= lookup.alpha
        for peer in batch:
            answer(lookup, peer, now)
        now += 1.0
    raise AssertionError("lookup never finished")


def test_lookup_finds_the_k_closest():
    sim = Sim(200)
    target = key_for(b"some key")
    src = sim.ids[0]
    lk = Lookup(target, sim.tables[src].closest(target), 0, local_id=src)
    run(lk, lambda lk, p, now: lk.answered(p, sim.tables[p].closest(target), now))
    want = sorted(sim.ids, key=lambda p: key_for(p) ^ target)
    want = [p for p in want if p != src][:20]
    assert lk.closest() == want


def test_lookup_survives_dead_and_lying_peers():
    sim = Sim(150, seed=8)
    target = key_for(b"other key")
    src = sim.ids[0]
    dead = set(sim.ids[1:40])
    liars = set(sim.ids[40:50])
    junk = ids(5000, 99)

    def answer(lk, peer, now):
        if peer in dead or peer not in sim.tables:
            return  # never answers (offline, or made up by a liar): expires after the timeout
        if peer in liars:  # thousands of fake closer peers, and itself
            lk.answered(peer, [peer, *junk], now)
            return
        lk.answered(peer, sim.tables[peer].closest(target), now)

    lk = Lookup(target, sim.tables[src].closest(target), 0, local_id=src, timeout=3)
    now = 0.0
    for _ in range(10_000):
        if lk.done:
            break
        for peer in lk.next_queries(now):
            answer(lk, peer, now)
        now += 1.0
    assert lk.done
    honest = [p for p in sim.ids if p not in dead and p != src]
    best_honest = min(honest, key=lambda p: key_for(p) ^ target)
    # The liars' junk was bounded (max_closer per answer) and did not hide the honest best.
    assert len(lk.state) <= 150 + 10 * lk.max_closer
    assert best_honest in lk.closest() or best_honest in liars


def test_unsolicited_and_late_answers_are_ignored():
    lk = Lookup(key_for(b"t"), [b"a" * 34], 0, timeout=2)
    assert lk.next_queries(0) == [b"a" * 34]
    lk.answered(b"z" * 34, [b"q" * 34], 0)  # never asked
    assert b"q" * 34 not in lk.state
    assert lk.expire(5) == [b"a" * 34]
    lk.answered(b"a" * 34, [b"q" * 34], 6)  # too late: already failed
    assert b"q" * 34 not in lk.state and lk.done


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=4, max_size=8), min_size=1, max_size=60, unique=True),
       st.binary(min_size=1, max_size=8))
def test_property_closest_is_sorted_by_distance(peers, target_raw):
    table = RoutingTable(b"\x00local", k=20)
    for p in peers:
        table.add(p, 0)
    target = key_for(target_raw)
    got = table.closest(target, 10)
    dists = [key_for(p) ^ target for p in got]
    assert dists == sorted(dists)
    members = [e.peer for e in table.peers()]
    assert got == sorted(members, key=lambda p: key_for(p) ^ target)[:10]
