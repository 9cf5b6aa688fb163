"""Bandwidth: rates of the byte counters, and the node-wide upload/download caps.

Sans-IO: both classes are fed byte counts and the time and answer with numbers; the
swarm's streams count and wait (p2pd/net/swarm.py), a node task samples once a second.

* :class:`RateMeter` turns ever-growing byte counters (per protocol, per peer, total)
  into rates: each sample's bytes per second, smoothed over ``window`` seconds (an
  exponentially weighted mean, as go-flow-metrics does for kubo's ``stats bw``).
* :class:`TokenBucket` is a cap for a home uplink (``[limits] max_upload_rate`` and
  ``max_download_rate``): ``take(n, now)`` says how long to wait before the next ``n``
  bytes go (a write) or are read on (a read: the peer then meets the muxer's flow
  control and slows down). Waiters share one debt, so many streams together keep to
  the rate.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping


class RateMeter:
    """Bytes per second of many counters, from samples of their totals."""

    __slots__ = ("window", "_last", "_time", "rates")

    def __init__(self, window: float = 5.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self._last: dict[Hashable, int] = {}
        self._time: float | None = None
        #: key -> smoothed bytes per second (0.0 for a counter seen once)
        self.rates: dict[Hashable, float] = {}

    def sample(self, now: float, totals: Mapping[Hashable, int]) -> None:
        """Take the counters' totals at ``now`` (seconds, monotonic). A key that has
        disappeared from ``totals`` is forgotten."""
        if self._time is None or now <= self._time:
            if self._time is None:
                self._time = now
                self._last = dict(totals)
                self.rates = dict.fromkeys(totals, 0.0)
            return
        dt = now - self._time
        alpha = 1.0 - math.exp(-dt / self.window)
        rates = {}
        for key, total in totals.items():
            before = self._last.get(key, 0)  # a new counter started at 0 since then
            instant = max(total - before, 0) / dt
            rates[key] = self.rates.get(key, 0.0) + alpha * (instant - self.rates.get(key, 0.0))
        self.rates, self._last, self._time = rates, dict(totals), now

    def rate(self, key: Hashable) -> float:
        return self.rates.get(key, 0.0)


class TokenBucket:
    """``rate`` bytes per second on average, at most ``burst`` bytes at once ahead."""

    __slots__ = ("rate", "burst", "_tokens", "_time")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        #: a tenth of a second's worth (at least 16 KiB): smooth, yet few wakeups
        self.burst = float(burst if burst is not None else max(rate / 10, 16384))
        self._tokens = self.burst
        self._time: float | None = None

    def take(self, n: int, now: float) -> float:
        """Spend ``n`` bytes at ``now``; the seconds to wait before they may pass (0.0:
        at once). What is spent beyond the tokens is a debt the next callers wait for."""
        if self._time is not None and now > self._time:
            self._tokens = min(self.burst, self._tokens + (now - self._time) * self.rate)
        if self._time is None or now > self._time:
            self._time = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class BandwidthStats:
    """Totals and rates of a swarm's traffic counters (``Traffic``: ``bytes_in``,
    ``bytes_out`` per protocol, ``peer_in``, ``peer_out`` per peer, the caps), for
    ``p2pd stats bw``. ``sample(now)`` once a second keeps the rates current."""

    def __init__(self, traffic, window: float = 5.0) -> None:
        self.traffic = traffic
        self.meter = RateMeter(window)

    def _totals(self) -> dict[tuple, int]:
        t = self.traffic
        totals: dict[tuple, int] = {("all", "in"): sum(t.bytes_in.values()),
                                    ("all", "out"): sum(t.bytes_out.values())}
        for kind, direction, table in (("proto", "in", t.bytes_in), ("proto", "out", t.bytes_out),
                                       ("peer", "in", t.peer_in), ("peer", "out", t.peer_out)):
            for key, n in table.items():
                totals[(kind, key, direction)] = n
        return totals

    def sample(self, now: float) -> None:
        self.meter.sample(now, self._totals())

    def report(self) -> dict:
        """``{"TotalIn", "TotalOut", "RateIn", "RateOut", "Protocols": {proto: {...}},
        "Peers": {peer bytes: {...}}, "Caps": {"Upload", "Download"}}`` (bytes, bytes/s;
        a cap of 0 is none). Peers folded away past the table's bound are under ``b""``."""
        totals, rate = self._totals(), self.meter.rate

        def entry(*key) -> dict:
            return {"TotalIn": totals.get((*key, "in"), 0),
                    "TotalOut": totals.get((*key, "out"), 0),
                    "RateIn": round(rate((*key, "in")), 1),
                    "RateOut": round(rate((*key, "out")), 1)}

        t = self.traffic
        return {
            **entry("all"),
            "Protocols": {p: entry("proto", p) for p in sorted({*t.bytes_in, *t.bytes_out})},
            "Peers": {p: entry("peer", p) for p in {*t.peer_in, *t.peer_out}},
            "Caps": {"Upload": int(t.upload.rate) if t.upload else 0,
                     "Download": int(t.download.rate) if t.download else 0},
        }
