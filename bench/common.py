"""Helpers shared by benchmarks: timing and the result row."""

import time
from collections.abc import Callable


def row(bench: str, metric: str, value: float, unit: str, peer: str, peer_value: float,
        higher_is_better: bool = True) -> dict:
    """A result row; ``ratio`` is ours/peer when higher is better, else peer/ours."""
    if higher_is_better:
        ratio = value / peer_value if peer_value else float("inf")
    else:
        ratio = peer_value / value if value else float("inf")
    return {
        "bench": bench,
        "metric": metric,
        "value": round(value, 4),
        "unit": unit,
        "peer": peer,
        "peer_value": round(peer_value, 4),
        "ratio": round(ratio, 3),
    }


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Fastest wall time of ``repeat`` calls, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_of_alternating(fns: list[Callable[[], object]], repeat: int = 9) -> list[float]:
    """Fastest wall time of each function, running them in turn ``repeat`` times.

    Alternating ours and the peer's runs gives both the same share of whatever else
    the machine is doing, which a block of runs each would not.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
