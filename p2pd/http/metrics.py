"""Prometheus metrics: one collector that reads the node's own counters at scrape time.

Nothing is counted twice: the swarm, the DHT, Bitswap, pubsub and the repo keep plain
counters as they work (:class:`p2pd.http.source.Counters`), and :class:`NodeCollector`
turns one snapshot of them into metric families when Prometheus asks. It is registered
in a registry of its own (never the process-wide default), and the exposition is cached
for :data:`MIN_SCRAPE_INTERVAL` so a scraper hammering the endpoint costs the node at
most one snapshot per interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .source import Counters

#: Seconds a rendered exposition is reused.
MIN_SCRAPE_INTERVAL = 0.5
CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeCollector:
    """A custom collector over ``snapshot()`` (a :class:`Counters`)."""

    def __init__(self, snapshot: Callable[[], Counters]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator:
        c = self._snapshot()
        info = InfoMetricFamily("p2pd", "p2pd build and identity")
        info.add_metric([], {"version": c.version, "peer_id": c.peer_id})
        yield info
        yield GaugeMetricFamily("p2pd_uptime_seconds", "Seconds since the node started",
                                value=c.uptime)
        conns = GaugeMetricFamily("p2pd_connections", "Open connections",
                                  labels=["direction", "transport"])
        for (direction, transport), n in sorted(c.connections.items()):
            conns.add_metric([direction, transport], n)
        yield conns
        opened = CounterMetricFamily("p2pd_connections_opened", "Connections opened",
                                     labels=["direction", "transport"])
        for (direction, transport), n in sorted(c.connections_opened.items()):
            opened.add_metric([direction, transport], n)
        yield opened
        yield GaugeMetricFamily("p2pd_peers", "Connected peers", value=c.peers)
        yield GaugeMetricFamily("p2pd_streams_open", "Open muxed streams", value=c.streams_open)
        streams = CounterMetricFamily("p2pd_streams_opened", "Streams negotiated, by protocol",
                                      labels=["protocol", "direction"])
        for (proto, direction), n in sorted(c.streams_opened.items()):
            streams.add_metric([proto, direction], n)
        yield streams
        traffic = CounterMetricFamily("p2pd_protocol_bytes",
                                      "Stream payload bytes, by protocol and direction",
                                      labels=["protocol", "direction"])
        for direction, table in (("in", c.bytes_in), ("out", c.bytes_out)):
            for proto, n in sorted(table.items()):
                traffic.add_metric([proto, direction], n)
        yield traffic
        if c.dht is not None:
            yield from _dht(c.dht)
        if c.bitswap is not None:
            yield from _bitswap(c.bitswap)
        if c.pubsub is not None:
            yield from _pubsub(c.pubsub)
        if c.repo is not None:
            yield from _repo(c.repo)


def _dht(d: dict) -> Iterator:
    q = CounterMetricFamily("p2pd_dht_queries", "Kademlia queries sent, by outcome",
                            labels=["outcome"])
    for outcome, n in sorted(d["queries"].items()):
        q.add_metric([outcome], n)
    yield q
    h = d["latency"]
    yield HistogramMetricFamily("p2pd_dht_query_duration_seconds",
                                "Time to the answer of a Kademlia query that succeeded",
                                buckets=h.cumulative(), sum_value=h.total)
    yield CounterMetricFamily("p2pd_dht_queries_served", "Kademlia requests answered",
                              value=d["served"])
    yield GaugeMetricFamily("p2pd_dht_routing_table_peers", "Peers in the routing table",
                            value=d["routing_table"])
    yield GaugeMetricFamily("p2pd_dht_server_mode", "1 while the node answers DHT queries",
                            value=1 if d["server"] else 0)


def _bitswap(b: dict) -> Iterator:
    blocks = CounterMetricFamily("p2pd_bitswap_blocks", "Bitswap blocks, sent and received",
                                 labels=["direction"])
    blocks.add_metric(["sent"], b["blocks_sent"])
    blocks.add_metric(["received"], b["blocks_received"])
    yield blocks
    data = CounterMetricFamily("p2pd_bitswap_bytes", "Bitswap block bytes, sent and received",
                               labels=["direction"])
    data.add_metric(["sent"], b["bytes_sent"])
    data.add_metric(["received"], b["bytes_received"])
    yield data
    yield CounterMetricFamily("p2pd_bitswap_duplicate_blocks",
                              "Blocks received that we already had", value=b["duplicate_blocks"])
    yield GaugeMetricFamily("p2pd_bitswap_peers", "Peers with a Bitswap ledger",
                            value=b["peers"])


def _pubsub(p: dict) -> Iterator:
    msgs = CounterMetricFamily("p2pd_pubsub_messages", "Pubsub messages received, by outcome",
                               labels=["outcome"])
    msgs.add_metric(["delivered"], p.get("delivered", 0))
    msgs.add_metric(["rejected"], p.get("invalid", 0))
    msgs.add_metric(["duplicate"], p.get("duplicates", 0))
    yield msgs
    yield CounterMetricFamily("p2pd_pubsub_forwarded", "Pubsub messages forwarded",
                              value=p.get("forwarded", 0))
    yield GaugeMetricFamily("p2pd_pubsub_peers", "Peers speaking pubsub", value=p["peers"])
    yield GaugeMetricFamily("p2pd_pubsub_topics", "Topics subscribed", value=p["topics"])


def _repo(r: dict) -> Iterator:
    yield GaugeMetricFamily("p2pd_blockstore_disk_bytes", "Bytes the datastore takes on disk",
                            value=r["disk_bytes"])
    yield GaugeMetricFamily("p2pd_blockstore_storage_max_bytes",
                            "[datastore] storage_max (0: no limit)", value=r["storage_max"])
    gc = CounterMetricFamily("p2pd_gc_runs", "Garbage collections run", labels=["trigger"])
    gc.add_metric(["manual"], r["gc_runs"] - r["auto_gc_runs"])
    gc.add_metric(["auto"], r["auto_gc_runs"])
    yield gc
    yield GaugeMetricFamily("p2pd_fetches_in_flight", "DAG fetches running",
                            value=r["fetches_in_flight"])


class Metrics:
    """The registry and a cached exposition of it."""

    def __init__(self, snapshot: Callable[[], Counters]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(snapshot))
        self._cached: tuple[float, bytes] | None = None

    def render(self) -> bytes:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= MIN_SCRAPE_INTERVAL:
            self._cached = (now, generate_latest(self.registry))
        return self._cached[1]
