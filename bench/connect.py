"""New secured connections per second over loopback, one after another, for TCP + Noise,
TCP + TLS 1.3 (both with Yamux) and QUIC v1, against js-libp2p and the go daemon.

- ``tcp_<security>_node_connections_per_s``: dial + security handshake + muxer timed, then
  close (not timed), repeat. Ours: a p2pd node (bench/ourpeer.py) dialing our daemon; peer: a
  js-libp2p node dialing a js-libp2p node (tests/interop/perf.mjs). js has no QUIC for Node.
- ``<transport>_daemon_connect_cycles_per_s``: DISCONNECT + CONNECT cycles through the control
  socket (tests/harness/gocontrol.py), our daemon dialing our daemon against the go daemon
  (hivemind 1.1.12, go-libp2p-daemon) dialing the go daemon; each CONNECT is a full handshake
  plus identify (the control call returns once the peer is identified, as go's). The two
  pairs take turns in four rounds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import row
from bench.peers import js_server, our_daemon, run_js, run_ours

JS = "js-libp2p 3 -> js-libp2p 3"
GO = "go-libp2p-daemon (hivemind 1.1.12) -> go-libp2p-daemon"
#: transport -> (hostAddrs, flags), the same for both daemons
DAEMON_TRANSPORTS = {
    "tcp_noise": ("/ip4/127.0.0.1/tcp/0", ("-tls=false",)),
    "tcp_tls": ("/ip4/127.0.0.1/tcp/0", ("-noise=false",)),
    "quic": ("/ip4/127.0.0.1/udp/0/quic-v1", ()),
}


def _cycles(dialer, target, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        dialer.disconnect(target.peer)
        dialer.connect(target.peer, target.addrs)
    return time.perf_counter() - start


def _daemons(quick: bool) -> Iterable[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from harness.gocontrol import DaemonPeer, GoPeer

    n = 20 if quick else 200
    rounds = 4
    for name, (host_addrs, flags) in DAEMON_TRANSPORTS.items():
        peers = []
        try:
            ours = [sys.executable, "-m", "p2pd"]
            for _ in range(2):
                peers.append(GoPeer(host_addrs, *flags))
            for _ in range(2):
                peers.append(DaemonPeer(ours, host_addrs, *flags))
            go_a, go_b, our_a, our_b = peers
            go_b.connect(go_a.peer, go_a.addrs)
            our_b.connect(our_a.peer, our_a.addrs)
            go_s = ours_s = 0.0
            for _ in range(rounds):
                go_s += _cycles(go_b, go_a, n // rounds)
                ours_s += _cycles(our_b, our_a, n // rounds)
            print(f"[connect] {name} daemons: ours {n / ours_s:.1f}/s, go {n / go_s:.1f}/s",
                  file=sys.stderr)
            yield row("connect", f"{name}_daemon_connect_cycles_per_s", n / ours_s, "conn/s",
                      f"{GO}, {name.replace('_', '+')}", n / go_s)
        finally:
            for peer in peers:
                peer.stop()


def run(quick: bool) -> Iterable[dict]:
    n = 20 if quick else 100
    for security in ("noise", "tls"):
        with our_daemon(security) as ours, js_server(security) as js:
            mine = theirs = 0.0
            for _ in range(1 if quick else 2):  # the two take turns
                mine += run_ours("connect", ours.addr, str(n), security=security)["seconds"]
                theirs += run_js("connect", js.addr, str(n), security=security)["seconds"]
        runs = 1 if quick else 2
        yield row("connect", f"tcp_{security}_node_connections_per_s", runs * n / mine, "conn/s",
                  f"{JS}, tcp+{security}", runs * n / theirs)
    yield from _daemons(quick)
