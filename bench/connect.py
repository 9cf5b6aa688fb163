"""New secured connections per second over loopback (TCP, Noise, Yamux), one after another:
dial + Noise + Yamux timed, then close (not timed), repeat. Ours: a p2pd node
(bench/ourpeer.py) dialing our daemon. Peer: a js-libp2p node dialing a js-libp2p node
(tests/interop/perf.mjs). Same run."""

from collections.abc import Iterable

from bench.common import row
from bench.peers import js_server, our_daemon, run_js, run_ours


def run(quick: bool) -> Iterable[dict]:
    n = 20 if quick else 100
    with our_daemon() as ours, js_server() as js:
        mine = run_ours("connect", ours.addr, str(n))
        theirs = run_js("connect", js.addr, str(n))
    yield row("connect", "new_secured_connections_per_s", n / mine["seconds"], "conn/s",
              "js-libp2p 3 -> js-libp2p 3", n / theirs["seconds"])
