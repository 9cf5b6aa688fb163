"""Counters the services keep as they work, for ``p2pd status`` and the metrics endpoint.

Plain numbers updated inline (an add or two per event, no locks: one trio thread),
read as they are at scrape time; nothing here allocates per event.
"""

from __future__ import annotations

import bisect

#: Seconds: the upper bounds of the latency buckets (Prometheus' default set).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Observations counted into fixed buckets (``counts[i]``: values <= ``bounds[i]``,
    the last slot: above every bound), with their sum, as Prometheus histograms are."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of values <= le)]`` ending with ``("+Inf", count)``."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
