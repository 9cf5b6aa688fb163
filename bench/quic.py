"""QUIC v1 on loopback, ours against the go daemon (hivemind's go-libp2p-daemon, quic-go).

Every side is a daemon driven the same way, through its control socket
(tests/harness/gocontrol.py): the receiving daemon has a ``sink`` stream handler (a Unix
socket that reads an 8-byte size, then that many bytes, and answers with the count), the
sending daemon gets STREAM_OPEN and a socket it is fed from. So every figure includes two
control-socket pipes (the go ones too), and the pairs differ only in the daemons.

- ``256MiB_<sender>_to_<receiver>_MiBps``: one 256 MiB stream, for ours->ours, ours->go
  and go->ours, against go->go measured in the same run (best of three, the pairs taking
  turns).
- ``new_quic_connections_per_s``: DISCONNECT + CONNECT cycles over QUIC through the control
  socket, ours->ours against go->go (one after another, each a full QUIC + TLS handshake).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import row

SINK = "/bench/sink/1.0.0"
GO = "go-libp2p-daemon (hivemind 1.1.12) -> go-libp2p-daemon, QUIC v1"


def _harness():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from harness.gocontrol import DaemonPeer, GoPeer, send_sized

    return DaemonPeer, GoPeer, send_sized


def _stream_seconds(send_sized, sender, receiver, size: int) -> float:
    start = time.perf_counter()
    sock = sender.open_stream(receiver.peer, SINK)
    got = send_sized(sock, size)
    seconds = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"the sink counted {got} of {size} bytes")
    return seconds


def _connect_seconds(dialer, target, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        dialer.disconnect(target.peer)
        dialer.connect(target.peer, target.addrs)
    return time.perf_counter() - start


def run(quick: bool) -> Iterable[dict]:
    DaemonPeer, GoPeer, send_sized = _harness()
    size = (32 if quick else 256) << 20
    repeat = 2 if quick else 3
    conns = 20 if quick else 200
    ours_cmd = [sys.executable, "-m", "p2pd"]
    label = f"{size >> 20}MiB"
    peers = []
    try:
        go_a, go_b = GoPeer(), GoPeer()
        peers += [go_a, go_b]
        our_a, our_b = DaemonPeer(ours_cmd), DaemonPeer(ours_cmd)
        peers += [our_a, our_b]
        for receiver in (go_a, our_a):
            receiver.handle(SINK, "sink")
        pairs = {"go_to_go": (go_b, go_a), "ours_to_ours": (our_b, our_a),
                 "ours_to_go": (our_b, go_a), "go_to_ours": (go_b, our_a)}
        for sender, receiver in pairs.values():
            sender.connect(receiver.peer, receiver.addrs)
            _stream_seconds(send_sized, sender, receiver, 1 << 20)  # warm up
        best = dict.fromkeys(pairs, float("inf"))
        for i in range(repeat):
            for name, (sender, receiver) in pairs.items():
                seconds = _stream_seconds(send_sized, sender, receiver, size)
                best[name] = min(best[name], seconds)
                print(f"[quic] {name} run {i + 1}: {size / seconds / 2**20:.1f} MiB/s",
                      file=sys.stderr)
        go_rate = size / best["go_to_go"] / 2**20
        for name in ("ours_to_ours", "ours_to_go", "go_to_ours"):
            yield row("quic", f"{label}_{name}_MiBps", size / best[name] / 2**20, "MiB/s",
                      GO, go_rate)
        # connections: the two pairs take turns in rounds
        rounds = 4
        go_s = ours_s = 0.0
        for _ in range(rounds):
            go_s += _connect_seconds(go_b, go_a, conns // rounds)
            ours_s += _connect_seconds(our_b, our_a, conns // rounds)
        yield row("quic", "new_quic_connections_per_s", conns / ours_s, "conn/s", GO,
                  conns / go_s)
    finally:
        for peer in peers:
            peer.stop()
