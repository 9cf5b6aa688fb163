"""Resident memory of one server holding 100 idle connections (target: ours <= 100 MiB).

100 js-libp2p nodes in one process (tests/interop/perf.mjs hold) connect to the server
and stay; the server's VmRSS is read from /proc once they are all connected. Ours: the
p2pd daemon. Peer: a js-libp2p node, same clients, same run. Lower is better.
"""

import shutil
import subprocess
import time
from collections.abc import Iterable

from bench.common import row
from bench.peers import INTEROP, js_server, our_daemon, rss_mib


def _held(server, n: int) -> tuple[float, int]:
    import json

    holder = subprocess.Popen([shutil.which("node") or "node", str(INTEROP / "perf.mjs"), "hold",
                               server.addr, str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        connected = json.loads(holder.stdout.readline())["connected"]
        time.sleep(3)  # identify and the rest settle
        return rss_mib(server.pid), connected
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()


def run(quick: bool) -> Iterable[dict]:
    n = 20 if quick else 100
    with our_daemon() as ours:
        mine, ok_ours = _held(ours, n)
    with js_server() as js:
        theirs, ok_js = _held(js, n)
    if ok_ours != n or ok_js != n:
        raise RuntimeError(f"not all connected: ours {ok_ours}/{n}, js {ok_js}/{n}")
    yield row("idle", f"rss_with_{n}_connections_MiB", mine, "MiB",
              "js-libp2p 3 node", theirs, higher_is_better=False)
