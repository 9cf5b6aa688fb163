"""The sans-IO bandwidth parts: rates from counters, the token bucket's waits, the
per-peer table's bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pd.net.bandwidth import BandwidthStats, RateMeter, TokenBucket
from p2pd.net.swarm import Traffic


def test_a_steady_counter_reads_its_rate_and_a_stopped_one_decays():
    meter = RateMeter(window=5.0)
    for second in range(40):
        meter.sample(float(second), {"a": 1000 * second, "b": 7})
    assert meter.rate("a") == pytest.approx(1000, rel=0.01)
    assert meter.rate("b") == 0.0
    for second in range(40, 70):
        meter.sample(float(second), {"a": 39_000})
    assert meter.rate("a") < 5
    assert meter.rate("b") == 0.0  # gone from the totals: forgotten


def test_a_counter_that_appears_counts_from_zero():
    meter = RateMeter(window=1.0)
    meter.sample(0.0, {})
    meter.sample(1.0, {"new": 500})
    assert meter.rate("new") == pytest.approx(500 * (1 - 2.718281828 ** -1), rel=0.01)


@given(st.lists(st.integers(1, 200_000), min_size=1, max_size=200),
       st.floats(1_000, 10_000_000))
def test_the_bucket_never_lets_more_than_rate_times_time_plus_burst_through(sizes, rate):
    bucket = TokenBucket(rate)
    now = 0.0
    for n in sizes:  # a writer that waits as told before the next write
        now += bucket.take(n, now)
    assert sum(sizes) <= rate * now + bucket.burst + max(sizes)
    # and it is not slower than the rate: the waits add up to the debt
    assert now <= sum(sizes) / rate + 1e-6


def test_many_waiters_share_one_debt():
    bucket = TokenBucket(1000, burst=100)
    waits = [bucket.take(100, 0.0) for _ in range(10)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_the_peer_table_is_bounded_and_totals_survive():
    traffic = Traffic(max_peers=8)
    for i in range(100):
        traffic.count("/p", i.to_bytes(4, "big"), 10, inbound=True)
        traffic.count("/p", i.to_bytes(4, "big"), 1, inbound=False)
    assert len(traffic.peer_in) + len(traffic.peer_out) <= 2 * 8 + 3
    assert sum(traffic.peer_in.values()) == 1000 and sum(traffic.peer_out.values()) == 100
    report = BandwidthStats(traffic).report()
    assert report["TotalIn"] == 1000 and report["Protocols"]["/p"]["TotalOut"] == 100
    assert b"" in report["Peers"]  # the folded ones
