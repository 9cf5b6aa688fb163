"""The soak: 12 of our daemons in the network lab for N minutes (``python -m bench soak
--minutes N``; default 10, ``--quick`` 3) under the mixed workload of tests/lab/soakload.py
(adds of mixed sizes fetched across nodes, DHT provide/find, pubsub at a steady rate,
control clients coming and going) with home daemons restarted and uplinks dropped; and the
go daemon (hivemind's fork) beside one of ours ("twin"), both public, under the same
go-compatible control load (IDENTIFY, LIST_PEERS, CONNECT, ping streams, DHT FIND_PEER /
PROVIDE / FIND_PROVIDERS, PUBLISH, a subscription) in the same run. Needs root (the lab).

Rows: for the daemons never restarted, RSS, fds and tasks of the last fifth of the run
against the second (after warm-up), their slopes, acknowledged adds fetched at the end; the
twin against go: RSS and each request's p50 latency; pubsub deliveries per subscription
(soakload.Deliveries: every message from every publisher, the twin's and go's included, by
its id) against what the subscriptions open at the time should get, and duplicates. The
whole series goes to ``--series PATH`` (JSON) when given, a per-minute table to stderr.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from bench.common import row
from tests.lab import Lab, unavailable_reason
from tests.lab.soakload import Soak, SoakConfig, violations

BENCH = "soak"
GO = "go-libp2p-daemon (hivemind 1.1.12), same lab run"


def _say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


def config(minutes: float) -> SoakConfig:
    return SoakConfig(seconds=minutes * 60, publics=3, homes=7, restartable=3, add_every=3.0,
                      publish_per_s=5.0, control_clients=3, restart_every=30.0,
                      flap_every=20.0, flap_seconds=6.0, sample_every=5.0, go=True,
                      peer_ops_every=0.5)


def _minute(samples: dict, m: int, name: str, key: str) -> float | None:
    vals = [s[key] for s in samples.get(name, []) if m * 60 <= s["t"] < (m + 1) * 60]
    return statistics.median(vals) if vals else None


def per_minute(report: dict) -> list[str]:
    """A table: per minute, the median over stable daemons of RSS/fds/tasks/conns, and go's."""
    stable = report["stable"]
    samples = report["samples"]
    end = max((s["t"] for v in samples.values() for s in v), default=0)
    lines = ["minute | ours RSS MiB | fds | tasks | conns | streams | twin RSS | go RSS | go fds"]
    for m in range(int(end // 60) + 1):
        at = partial(_minute, samples, m)
        cols = []
        for key in ("rss", "fds", "tasks", "conns", "streams"):
            vals = [v for n in stable if n != "twin" and (v := at(n, key)) is not None]
            med = statistics.median(vals) if vals else 0
            cols.append(f"{med / (1 << 20):.1f}" if key == "rss" else f"{med:.0f}")
        twin, go, go_fds = at("p2pd-twin", "rss"), at("go", "rss"), at("go", "fds")
        cols += [f"{twin / (1 << 20):.1f}" if twin else "-", f"{go / (1 << 20):.1f}" if go else "-",
                 f"{go_fds:.0f}" if go_fds else "-"]
        lines.append(f"{m} | " + " | ".join(cols))
    return lines


def run(quick: bool = False, minutes: float | None = None,
        series: str | None = None) -> Iterable[dict]:
    why = unavailable_reason()
    if why:
        raise SystemExit(f"soak: {why}")
    minutes = minutes or (3.0 if quick else 10.0)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, Lab(Path(tmp) / "lab") as lab:
        report = Soak(lab, config(minutes), Path(tmp) / "work").run()
    if series:
        Path(series).write_text(json.dumps(report))
    for line in per_minute(report):
        _say(line)
    brief = {k: v for k, v in report.items() if k not in ("samples", "judged")}
    _say(json.dumps(brief))
    bad = violations({n: j for n, j in report["judged"].items() if n != "go"})
    _say("bounds: " + ("held" if not bad else "; ".join(bad)))
    judged = {n: j for n, j in report["judged"].items() if n != "go" and j.get("rss")}
    daemons = report["daemons"]

    def med(key: str, field: str) -> float:
        return statistics.median(j[key][field] for j in judged.values())

    same = f"our {len(judged)} never-restarted daemons, second fifth of the run"
    yield row(BENCH, f"median RSS floor (lowest sample), last fifth of {minutes:g} min, "
              f"{daemons} daemons (lower is better)", med("rss", "last_min") / (1 << 20), "MiB",
              same, med("rss", "second_min") / (1 << 20), higher_is_better=False)
    yield row(BENCH, "median RSS, last fifth (lower is better)",
              med("rss", "last_median") / (1 << 20), "MiB", same,
              med("rss", "second_median") / (1 << 20), higher_is_better=False)
    yield row(BENCH, "median Python allocated blocks, last fifth (lower is better)",
              med("pyblocks", "last_median"), "blocks", same, med("pyblocks", "second_median"),
              higher_is_better=False)
    yield row(BENCH, "median open fds, last fifth (lower is better)", med("fds", "last_median"),
              "fds", same, med("fds", "second_median"), higher_is_better=False)
    yield row(BENCH, "median trio tasks, last fifth (lower is better)",
              med("tasks", "last_median"), "tasks", same, med("tasks", "second_median"),
              higher_is_better=False)
    go = report["judged"].get("go") or {}
    twin = report["judged"].get("p2pd-twin") or {}
    if go.get("rss") and twin.get("rss"):
        yield row(BENCH, "RSS under the same control load, last fifth (lower is better)",
                  twin["rss"]["last_median"] / (1 << 20), "MiB", GO,
                  go["rss"]["last_median"] / (1 << 20), higher_is_better=False)
        yield row(BENCH, "RSS slope after warm-up, same load (lower is better)",
                  twin["rss"]["slope_per_min"] / (1 << 20), "MiB/min", GO,
                  go["rss"]["slope_per_min"] / (1 << 20), higher_is_better=False)
        yield row(BENCH, "open fds, last fifth, same load (lower is better)",
                  twin["fds"]["last_median"], "fds", GO, go["fds"]["last_median"],
                  higher_is_better=False)
    ours_lat, go_lat = report["latency"].get("ours", {}), report["latency"].get("go", {})
    for op in ("IDENTIFY", "LIST_PEERS", "CONNECT", "ping stream", "PUBLISH", "FIND_PEER",
               "PROVIDE", "FIND_PROVIDERS", "DISCONNECT"):
        a, b = ours_lat.get(op, {}), go_lat.get(op, {})
        if a.get("n") and b.get("n"):
            yield row(BENCH, f"{op} p50 latency under the soak (lower is better)",
                      a["p50_ms"], "ms", GO, b["p50_ms"], higher_is_better=False)
    ps = report["pubsub"]
    yield row(BENCH, f"pubsub deliveries, per subscription by message id ({ps['subscriptions']} "
              f"subscriptions, {ps['published']} messages, peers restarting, uplinks dropping)",
              ps["delivered"], "messages", "published x subscriptions open at the time",
              ps["expected"])
    if ps["delivered"]:
        yield row(BENCH, "pubsub copies per delivered message within a subscription "
                  "(lower is better)", (ps["delivered"] + ps["duplicates"]) / ps["delivered"],
                  "copies", "exactly once", 1.0, higher_is_better=False)
    yield row(BENCH, "acknowledged adds fetched at the end by a fresh node, bytes checked",
              report["adds"] - len(report["lost"]), "adds", "acknowledged adds",
              report["adds"])
