"""10,000 control requests from 50 clients at once against a real daemon: every one is
answered, none waits long, and the daemon's other work goes on (a peer stays connected)."""

from __future__ import annotations

import psutil
from harness.loadgen import control_load
from test_daemon_harness import Daemon


async def test_ten_thousand_control_requests_from_fifty_clients_are_all_answered():
    with Daemon() as d, Daemon() as other:
        from p2pd.cli.client import ControlClient
        from p2pd.control.endpoint import parse_endpoint

        client = ControlClient(parse_endpoint(d.control), timeout=30)
        peer, addrs = ControlClient(parse_endpoint(other.control), timeout=30).identify()
        client.connect(peer, addrs)
        before = psutil.Process(d.proc.pid).memory_info().rss
        load = await control_load(d.control, clients=50, requests=10_000)
        rss = psutil.Process(d.proc.pid).memory_info().rss
        print(f"control load: {load.answered} answered in {load.seconds:.1f} s "
              f"({load.rate:.0f}/s), p50 {load.percentile(50) * 1000:.1f} ms, "
              f"p99 {load.percentile(99) * 1000:.1f} ms, max {max(load.latencies) * 1000:.0f} ms;"
              f" RSS {before >> 20} -> {rss >> 20} MiB")
        assert load.errors == [] and load.answered == 10_000
        assert load.percentile(99) < 2.0 and max(load.latencies) < 10.0
        assert rss - before < 64 << 20
        assert client.ping(peer, 1)  # the node's own work went on
