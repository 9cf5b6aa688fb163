"""Link shapes: rate by a kernel tbf, delay, jitter and loss by a delay line (linkd.py).

A :class:`Link` describes a node's access link to the internet segment. Its delay is split
over the two directions, so ``rtt_ms`` is what a round trip across that one link adds; two
homes with 40 ms links are 80 ms apart. ``up_mbit`` limits what leaves the node,
``down_mbit`` (default: the same) what reaches it. ``loss_pct`` applies in each direction;
``jitter_ms`` is the spread (normal) of a round trip. Frames are never reordered.

This kernel has no netem, so a link with delay, jitter or loss is built from two TAP devices
and a :mod:`linkd` process between them; a rate-only link stays a veth pair. Either way the
rate is a tbf on the egress of each end, holding one bandwidth-delay product (>= 50 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from .netns import run

MTU_BYTES = 1514


@dataclass(frozen=True, slots=True)
class Link:
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    up_mbit: float | None = None
    down_mbit: float | None = None

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "jitter_ms", "loss_pct"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Link.{name} must be a number >= 0")
        if not self.loss_pct <= 100:
            raise ValueError("Link.loss_pct is a percentage (0-100)")
        for name in ("up_mbit", "down_mbit"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Link.{name} must be positive (or None: unlimited)")

    @property
    def down(self) -> float | None:
        return self.down_mbit if self.down_mbit is not None else self.up_mbit

    @property
    def needs_delay_line(self) -> bool:
        return bool(self.rtt_ms or self.jitter_ms or self.loss_pct)

    def direction(self) -> dict:
        """linkd's shape for one direction (each direction gets half the round trip)."""
        return {
            "delay_ms": self.rtt_ms / 2,
            "jitter_ms": self.jitter_ms / 2**0.5,
            "loss_pct": self.loss_pct,
        }


def rate_commands(dev: str, rate_mbit: float | None, rtt_ms: float) -> list[str]:
    """``tc -batch`` lines limiting ``dev``'s egress to ``rate_mbit`` (None: no limit)."""
    if not rate_mbit:
        return []
    bytes_per_s = rate_mbit * 1e6 / 8
    limit = int(max(bytes_per_s * max(rtt_ms, 50) / 1000, 20 * MTU_BYTES))
    burst = int(max(bytes_per_s / 250, 2 * MTU_BYTES))
    return [f"qdisc replace dev {dev} root tbf rate {rate_mbit}mbit burst {burst} limit {limit}"]


def set_rate(ns: str, dev: str, rate_mbit: float | None, rtt_ms: float = 0.0) -> None:
    """Limit (or, with None, stop limiting) the egress of ``dev`` in ``ns``."""
    lines = rate_commands(dev, rate_mbit, rtt_ms)
    if lines:
        run("tc", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")
    else:
        run("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
