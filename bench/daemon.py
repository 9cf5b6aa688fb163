"""Our daemon vs the go-libp2p daemon (hivemind's fork), driven the same way.

Both are started with the same go-daemon flags (``-listen /unix/... -hostAddrs
/ip4/127.0.0.1/tcp/0``) and driven by the same unmodified ``p2pclient`` 0.3 over a Unix
control socket. Measured: start-up (process start to the ``Peer Addrs`` line with the
control socket accepting), idle RSS, RSS holding 100 inbound connections, IDENTIFY round
trips per second from one client, DISCONNECT+CONNECT cycles per second between two
daemons of a kind, and a 256 MiB stream through the control sockets (client -> daemon ->
daemon -> client: the receiving daemon's stream handler is a Unix socket that counts what
arrives, the sender writes into its STREAM_OPEN socket; driven by
tests/harness/gocontrol.py, because the fork drops streams opened through p2pclient 0.3).
The go binary comes from the hivemind wheel on PyPI (tests/harness/godaemon.py).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .common import row
from .peers import ROOT, Server, rss_mib

BENCH = "daemon"


class Launched:
    """One daemon process started with go-daemon flags; stopped by :meth:`stop`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bd-{kind}-", dir="/tmp"))
        self.sock = self.tmp / "ctl.sock"
        if kind == "go":
            from tests.harness.godaemon import go_daemon_path

            cmd = [str(go_daemon_path())]
        else:
            cmd = [sys.executable, "-m", "p2pd"]
        cmd += ["-listen", f"/unix{self.sock}", "-hostAddrs", "/ip4/127.0.0.1/tcp/0"]
        env = dict(os.environ, P2PD_HOME=str(self.tmp / "home"), P2PD_BOOTSTRAP_PEERS="none")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=self.tmp)
        self.peer_id = None
        for _ in range(20):
            line = self.proc.stdout.readline()
            if not line or line.startswith("Peer Addrs:"):
                break
            if line.startswith("Peer ID:"):
                self.peer_id = line.split(":", 1)[1].strip()
        if self.peer_id is None:
            self.stop()
            raise RuntimeError(f"{kind} daemon did not start")
        while True:  # the control socket accepts
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.sock))
                break
            except OSError:
                time.sleep(0.002)
        self.startup_s = time.perf_counter() - t0

    @property
    def control(self) -> str:
        return f"/unix{self.sock}"

    def stop(self) -> None:
        Server(self.proc, "", self.tmp).stop()


def _client(d: Launched):
    from multiaddr import Multiaddr
    from p2pclient import Client

    return Client(Multiaddr(d.control))


def _identify_rate(d: Launched, seconds: float) -> float:
    import trio

    async def main() -> float:
        c = _client(d)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await c.identify()
            n += 1
        return n / (time.perf_counter() - t0)

    return trio.run(main)


def _reconnect_rate(a: Launched, b: Launched, cycles: int) -> float:
    import trio

    async def main() -> float:
        ca, cb = _client(a), _client(b)
        b_id, b_addrs = await cb.identify()
        await ca.connect(b_id, b_addrs)
        t0 = time.perf_counter()
        for _ in range(cycles):
            await ca.disconnect(b_id)
            await ca.connect(b_id, b_addrs)
        return cycles / (time.perf_counter() - t0)

    return trio.run(main)


def _rss_with_connections(d: Launched, n: int) -> float:
    """RSS of ``d`` while our connection holder keeps ``n`` connections to it."""
    addr = f"{_tcp_addr(d)}/p2p/{d.peer_id}"
    holder = subprocess.Popen([sys.executable, "-m", "bench.ourpeer", "hold", addr, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        holder.stdout.readline()  # the holder prints a line once all are up
        time.sleep(1.0)
        return rss_mib(d.proc.pid)
    finally:
        holder.terminate()
        holder.wait(timeout=10)


def _tcp_addr(d: Launched) -> str:
    import trio

    async def main() -> str:
        _, addrs = await _client(d).identify()
        return next(str(a) for a in addrs if "/tcp/" in str(a) and "/ws" not in str(a))

    return trio.run(main)


SINK = "/bench/sink/1.0.0"


def _control_stream_rates(size: int, repeat: int) -> dict[str, float]:
    """MiB/s of one ``size`` stream between two daemons of a kind over TCP, through both
    control sockets; best of ``repeat``, the kinds taking turns."""
    sys.path.insert(0, str(ROOT / "tests"))
    from harness.gocontrol import DaemonPeer, GoPeer, send_sized

    tcp = "/ip4/127.0.0.1/tcp/0"
    peers = []
    try:
        pairs = {}
        for kind in ("ours", "go"):
            a, b = ((GoPeer(tcp), GoPeer(tcp)) if kind == "go" else
                    (DaemonPeer([sys.executable, "-m", "p2pd"], tcp),
                     DaemonPeer([sys.executable, "-m", "p2pd"], tcp)))
            peers += [a, b]
            b.handle(SINK, "sink")
            a.connect(b.peer, b.addrs)
            pairs[kind] = (a, b)
        best = dict.fromkeys(pairs, 0.0)
        for _ in range(repeat + 1):  # the first round warms up
            for kind, (a, b) in pairs.items():
                t0 = time.perf_counter()
                got = send_sized(a.open_stream(b.peer, SINK), size)
                dt = time.perf_counter() - t0
                if got != size:
                    raise RuntimeError(f"{kind}: the sink counted {got} of {size} bytes")
                best[kind] = max(best[kind], size / dt / 2**20)
        return best
    finally:
        for peer in peers:
            peer.stop()


def run(quick: bool) -> Iterable[dict]:
    rounds = 3 if quick else 7
    seconds = 1.0 if quick else 3.0
    cycles = 20 if quick else 100
    results: dict[str, dict[str, list[float]]] = {"ours": {}, "go": {}}
    for _ in range(rounds):  # alternate so both get the same share of the machine
        for kind in ("ours", "go"):
            d = Launched(kind)
            try:
                results[kind].setdefault("startup", []).append(d.startup_s)
                time.sleep(0.5)
                results[kind].setdefault("idle", []).append(rss_mib(d.proc.pid))
            finally:
                d.stop()
    for kind in ("ours", "go"):
        a, b = Launched(kind), Launched(kind)
        try:
            results[kind]["identify"] = [_identify_rate(a, seconds) for _ in range(2)]
            results[kind]["reconnect"] = [_reconnect_rate(a, b, cycles)]
            results[kind]["rss100"] = [_rss_with_connections(b, 100)]
        finally:
            a.stop()
            b.stop()
    size = (32 if quick else 256) << 20
    streams = _control_stream_rates(size, 1 if quick else 3)
    peer = "go-libp2p-daemon (hivemind 1.1.12 fork)"
    o, g = results["ours"], results["go"]
    yield row(BENCH, "start-up to ready, median", statistics.median(o["startup"]), "s", peer,
              statistics.median(g["startup"]), higher_is_better=False)
    yield row(BENCH, "idle RSS, median", statistics.median(o["idle"]), "MiB", peer,
              statistics.median(g["idle"]), higher_is_better=False)
    yield row(BENCH, "RSS with 100 inbound connections", o["rss100"][0], "MiB", peer,
              g["rss100"][0], higher_is_better=False)
    yield row(BENCH, "IDENTIFY round trips, one p2pclient", max(o["identify"]), "req/s", peer,
              max(g["identify"]))
    yield row(BENCH, "DISCONNECT+CONNECT cycles", o["reconnect"][0], "cycles/s", peer,
              g["reconnect"][0])
    yield row(BENCH, f"{size >> 20} MiB stream through both control sockets", streams["ours"],
              "MiB/s", peer, streams["go"])
