"""Load held: our daemon vs the go daemon (hivemind's fork) under the same load, one run.

Each daemon in turn, on 127.0.0.1 (tests/harness/loadgen.py drives both the same way):

1. 1,000 peers (each its own identity; Noise, Yamux) dial it at 200/s from one client
   process, while a control client sends an IDENTIFY every 100 ms: connections held, the
   slowest IDENTIFY during the flood, RSS holding them.
2. With those held, 10,000 IDENTIFY requests from 50 control clients at once (one
   connection per request, as p2pclient): requests/s, p50 and p99 latency, peak RSS.
3. With those held, one more peer opens 500 ping streams (/ipfs/ping/1.0.0), one round
   trip each, and holds them: streams held, RSS.

Ours runs in home mode with ``max_conns_inbound = 1024`` (the default 768 would refuse
some of the 1,000; go's default limits are go's own), DHT, pubsub and Bitswap off as the
go daemon without flags. ``--quick``: 200 peers, 2,000 requests, 100 streams.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import trio

from tests.harness.loadgen import control_load, quiet_config, wait_listening

from .common import row
from .daemon import Launched, _tcp_addr
from .peers import ROOT, rss_mib

BENCH = "load"

OUR_CONFIG = quiet_config("/ip4/127.0.0.1/tcp/0", "max_conns = 1100\nmax_conns_inbound = 1024\n")


class Ours:
    """Our daemon in home mode with OUR_CONFIG; ``control``, ``peer_id`` as Launched."""

    kind = "ours"

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bl-ours-", dir="/tmp"))
        home = self.tmp / "home"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text(OUR_CONFIG)
        env = dict(os.environ, P2PD_HOME=str(home), P2PD_BOOTSTRAP_PEERS="none")
        self.proc = subprocess.Popen([sys.executable, "-m", "p2pd"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        lines = [self.proc.stdout.readline().strip() for _ in range(2)]
        if not lines[0].startswith("Control socket: "):
            self.stop()
            raise RuntimeError(f"our daemon did not start: {lines}")
        self.control = lines[0].removeprefix("Control socket: ")
        self.peer_id = lines[1].removeprefix("Peer ID: ")
        wait_listening(self.control)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _loadgen(*args: str) -> tuple[subprocess.Popen, dict]:
    """A loadgen process and its first report (it holds what it made until stopped)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.harness.loadgen", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"loadgen {args[0]} ended without a report")
    return proc, json.loads(line)


def _release(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def _measure(d, conns: int, requests: int, streams: int) -> dict:
    addr = f"{_tcp_addr(d)}/p2p/{d.peer_id}"
    out = {"idle_rss": rss_mib(d.proc.pid)}
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            load = trio.run(control_load, d.control, 1, 1, 10.0)
            probes.extend(load.latencies or [10.0])
            time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        dialer, report = _loadgen("dial", addr, str(conns), "200")
    finally:
        done.set()
        prober.join()
    holders = [dialer]
    try:
        out["conns_held"] = report["held"]
        out["conns_seconds"] = report["seconds"]
        out["flood_identify_max_ms"] = max(probes) * 1000
        time.sleep(1.0)
        out["conns_rss"] = rss_mib(d.proc.pid)
        peak = [out["conns_rss"]]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mib(d.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            load = trio.run(control_load, d.control, 50, requests, 30.0)
        finally:
            sampling.set()
            sampler.join()
        out["requests_answered"] = load.answered
        out["requests_per_s"] = load.rate
        out["request_p50_ms"] = load.percentile(50) * 1000
        out["request_p99_ms"] = load.percentile(99) * 1000
        out["requests_rss_peak"] = peak[0]
        holder, sreport = _loadgen("streams", addr, str(streams))
        holders.append(holder)
        out["streams_held"] = sreport["held"]
        time.sleep(1.0)
        out["streams_rss"] = rss_mib(d.proc.pid)
    finally:
        for h in holders:
            _release(h)
    return out


def run(quick: bool) -> Iterable[dict]:
    conns, requests, streams = (200, 2000, 100) if quick else (1000, 10_000, 500)
    results = {}
    for kind in ("ours", "go"):
        d = Ours() if kind == "ours" else Launched("go")
        try:
            results[kind] = _measure(d, conns, requests, streams)
        finally:
            d.stop()
        print(f"[load] {kind}: {results[kind]}", file=sys.stderr)
    ours, go = results["ours"], results["go"]
    peer = "go-libp2p-daemon (hivemind 1.1.12)"

    def r(metric: str, key: str, unit: str, higher: bool = True) -> dict:
        return row(BENCH, metric, ours[key], unit, peer, go[key], higher_is_better=higher)

    yield r(f"connections held ({conns} dialed at 200/s)", "conns_held", "connections")
    yield r("slowest control IDENTIFY during the connection flood (lower is better)",
            "flood_identify_max_ms", "ms", higher=False)
    yield r("RSS holding the connections (lower is better)", "conns_rss", "MiB", higher=False)
    yield r(f"control requests/s, {requests} IDENTIFY from 50 clients, connections held",
            "requests_per_s", "req/s")
    yield r("control request p50 latency under that load (lower is better)",
            "request_p50_ms", "ms", higher=False)
    yield r("control request p99 latency under that load (lower is better)",
            "request_p99_ms", "ms", higher=False)
    yield r("peak RSS during the control load (lower is better)", "requests_rss_peak", "MiB",
            higher=False)
    yield r(f"ping streams held from one peer ({streams} opened)", "streams_held", "streams")
    yield r("RSS holding connections and streams (lower is better)", "streams_rss", "MiB",
            higher=False)
