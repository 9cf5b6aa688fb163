"""Two public daemons that dial each other at the same moment from their listen ports (a
DHT lookup each way does that): their SYNs cross on the 80 ms path and TCP's simultaneous
open makes one connection on which both speak first. Each dial must still connect."""

from __future__ import annotations

import threading
import time

from lab import Link, Nat
from lab.peers import SWARM_PORT, LabDaemon
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient

LINK = Link(rtt_ms=40)


def test_daemons_dialling_each_other_at_once_from_their_listen_ports_both_connect(netlab):
    import multiaddr

    homes = [netlab.add_home(f"s{i}", Nat.NONE, public_lan=True, link=LINK) for i in (1, 2)]
    daemons = [LabDaemon(netlab, h.hosts[0]) for h in homes]
    clients = [ControlClient.for_address(d.control, 30) for d in daemons]
    ids = [b58decode(d.peer_id) for d in daemons]
    addrs = [multiaddr.Multiaddr(f"/ip4/{d.node.addr}/tcp/{SWARM_PORT}").to_bytes()
             for d in daemons]
    def dial(i: int, start: threading.Barrier, errors: list) -> None:
        start.wait()
        try:
            clients[i].connect(ids[1 - i], [addrs[1 - i]], 15)
        except Exception as exc:
            errors.append(exc)

    for _ in range(4):
        start, errors = threading.Barrier(2), []
        threads = [threading.Thread(target=dial, args=(i, start, errors)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert ids[1] in {p.id for p in clients[0].list_peers()}
        clients[0].disconnect(ids[1])
        clients[1].disconnect(ids[0])
        deadline = time.monotonic() + 10
        while clients[0].list_peers() or clients[1].list_peers():
            assert time.monotonic() < deadline, "the connection did not close"
            time.sleep(0.05)
