"""Stream throughput over loopback (TCP, Noise or with ``--security tls`` TLS 1.3, Yamux) with
the libp2p perf protocol.

Three pairs in one run, each a separate client process dialing a server process:
ours->ours (bench/ourpeer.py client, p2pd daemon server), js->js (tests/interop/perf.mjs
both sides; @libp2p/perf is not in our registry, so perf.mjs implements /perf/1.0.0 from
the spec) and js->ours. Upload and download of 256 MiB each (16 MiB with --quick);
the figure is bytes / client wall time of the transfer (connection set up excluded),
best of three runs with the pairs taking turns.
"""

from collections.abc import Iterable

from bench.common import row
from bench.peers import js_server, our_daemon, run_js, run_ours

MiB = 1 << 20


def _rate(size: int, result: dict) -> float:
    return size / MiB / (result["upload_s"] + result["download_s"])


def run(quick: bool, security: str = "noise") -> Iterable[dict]:
    size = (16 if quick else 256) * MiB
    repeat = 1 if quick else 3
    sec = {"security": security}
    prefix = "" if security == "noise" else f"{security}_"
    peer = "js-libp2p 3 -> js-libp2p 3" + ("" if security == "noise" else f", {security}")
    with our_daemon(security) as ours, js_server(security) as js:
        for direction, up, down in (("upload", size, 0), ("download", 0, size)):
            args = (str(up), str(down))
            oo = jj = jo = 0.0
            for _ in range(repeat):  # best of, the three pairs taking turns
                oo = max(oo, _rate(size, run_ours("client", ours.addr, *args, **sec)))
                jj = max(jj, _rate(size, run_js("client", js.addr, *args, **sec)))
                jo = max(jo, _rate(size, run_js("client", ours.addr, *args, **sec)))
            label = f"{prefix}{size // MiB}MiB_{direction}"
            yield row("stream", f"{label}_ours_to_ours_MiBps", oo, "MiB/s", peer, jj)
            yield row("stream", f"{label}_js_to_ours_MiBps", jo, "MiB/s", peer, jj)
