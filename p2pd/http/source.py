"""What the HTTP side reads of a running node, in one place.

:class:`NodeSource` is the narrow port: counters for the metrics collector, a status
snapshot for the page, and block access (local first, then Bitswap within a deadline)
for the gateway. Everything it returns is plain data read at call time; nothing here
keeps a reference to the node's internals beyond the call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from ..blocks.cid import CID
from ..errors import BlockNotFound

#: How long a cached repo usage (a scan of the block index) stays fresh, in seconds.
USAGE_TTL = 30.0
#: Connected peers listed on the status page (the count is always exact).
MAX_LISTED_PEERS = 200


@dataclass(slots=True)
class Counters:
    """The node's counters at one moment (what the metrics collector exposes)."""

    peer_id: str = ""
    version: str = ""
    uptime: float = 0.0
    connections: dict[tuple[str, str], int] = field(default_factory=dict)
    connections_opened: dict[tuple[str, str], int] = field(default_factory=dict)
    peers: int = 0
    streams_open: int = 0
    streams_opened: dict[tuple[str, str], int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)
    bytes_out: dict[str, int] = field(default_factory=dict)
    dht: dict | None = None
    bitswap: dict | None = None
    pubsub: dict | None = None
    repo: dict | None = None


class NodeSource:
    def __init__(self, node, version: str) -> None:
        self._node = node
        self.version = version
        self._usage: tuple[float, int, int] | None = None
        self._started = time.monotonic()

    @property
    def peer_id(self) -> str:
        return self._node.peer_id.to_base58()

    # -- counters ---------------------------------------------------------------------
    def counters(self) -> Counters:
        """A snapshot of the counters (O(connections + protocols), no I/O but one
        directory listing of the datastore for its size on disk)."""
        node = self._node
        swarm = node.net.swarm
        c = Counters(peer_id=self.peer_id, version=self.version,
                     uptime=time.monotonic() - self._started)
        for conns in swarm.conns.values():
            for conn in conns:
                if conn.closed:
                    continue
                key = (conn.direction, conn.transport)
                c.connections[key] = c.connections.get(key, 0) + 1
                c.streams_open += len(getattr(conn.session, "streams", ()))
        c.peers = len(swarm.conns)
        c.connections_opened = dict(swarm.conns_opened)
        c.streams_opened = dict(swarm.traffic.streams)
        c.bytes_in = dict(swarm.traffic.bytes_in)
        c.bytes_out = dict(swarm.traffic.bytes_out)
        dht = node.dht
        if dht is not None:
            c.dht = {"queries": dict(dht.queries), "latency": dht.query_latency,
                     "served": dht.queries_served, "routing_table": len(dht.table),
                     "server": dht.server}
        repo = node.repo
        if repo is not None:
            b = repo.bitswap
            c.bitswap = {"blocks_sent": b.blocks_sent, "blocks_received": b.blocks_received,
                         "bytes_sent": b.bytes_sent, "bytes_received": b.bytes_received,
                         "duplicate_blocks": b.duplicate_blocks,
                         "peers": len(b.engine.ledgers)}
            c.repo = {"disk_bytes": repo.disk_usage(), "gc_runs": repo.gc_runs,
                      "auto_gc_runs": repo.auto_gc_runs, "storage_max": repo.storage_max,
                      "fetches_in_flight": repo.fetches_in_flight}
        pubsub = node.pubsub
        if pubsub is not None:
            c.pubsub = {**pubsub.router.counters, "peers": len(pubsub.router.peers),
                        "topics": len(pubsub.topics())}
        return c

    # -- the status page -----------------------------------------------------------------
    async def status(self) -> dict:
        """What the status page shows (JSON-ready)."""
        node = self._node
        swarm = node.net.swarm
        c = self.counters()
        peers = []
        for peer, conns in list(swarm.conns.items())[:MAX_LISTED_PEERS]:
            live = [x for x in conns if not x.closed]
            if not live:
                continue
            peers.append({"id": _b58(peer), "addr": _text(live[-1].remote_addr),
                          "direction": live[-1].direction, "transport": live[-1].transport,
                          "agent": swarm.peerstore.agents.get(peer, "")})
        out = {
            "peer_id": c.peer_id, "version": c.version, "agent": node.agent_version,
            "uptime": round(c.uptime, 1),
            "addrs": node.listen_addrs(),
            "reachability": node.reachability(),
            "peer_count": c.peers, "peers": peers,
            "connections": sum(c.connections.values()),
            "bandwidth": {"in": sum(c.bytes_in.values()), "out": sum(c.bytes_out.values()),
                          "by_protocol": {p: {"in": c.bytes_in.get(p, 0),
                                              "out": c.bytes_out.get(p, 0)}
                                          for p in sorted({*c.bytes_in, *c.bytes_out})}},
            "dht": ({"routing_table": c.dht["routing_table"], "server": c.dht["server"],
                     "queries": c.dht["queries"]} if c.dht else None),
            "bitswap": c.bitswap, "pubsub": c.pubsub, "repo": None,
        }
        repo = node.repo
        if repo is not None:
            blocks, block_bytes = await self._repo_usage()
            out["repo"] = {**c.repo, "blocks": blocks, "blocks_bytes": block_bytes,
                           "pins": [{"cid": str(p.cid), "name": p.name}
                                    for p in repo.pin_ls()[:MAX_LISTED_PEERS]],
                           "pin_count": len(repo.pin_ls())}
        return out

    async def _repo_usage(self) -> tuple[int, int]:
        now = time.monotonic()
        if self._usage is None or now - self._usage[0] > USAGE_TTL:
            blocks, total = await trio.to_thread.run_sync(self._node.repo.store.usage)
            self._usage = (now, blocks, total)
        return self._usage[1], self._usage[2]

    # -- blocks, for the gateway ------------------------------------------------------------
    @property
    def has_blocks(self) -> bool:
        return self._node.repo is not None

    def has_block(self, cid: CID) -> bool:
        return self._node.repo.store.has(cid)

    async def get_block(self, cid: CID, timeout: float) -> bytes:
        """The verified block: from the blockstore, else through Bitswap within
        ``timeout`` (:class:`trio.TooSlowError` past it)."""
        repo = self._node.repo
        try:
            return repo.store.get(cid)
        except BlockNotFound:
            pass
        if not self._node.net.swarm.conns and self._node.dht is None:
            raise BlockNotFound(f"block {cid} is not stored here and no peer is connected "
                                "to ask for it")
        with trio.fail_after(timeout):  # Bitswap stores only blocks that verified
            return await repo.block_get(cid, timeout=timeout)

    async def prefetch(self, cid: CID, timeout: float) -> None:
        """Fetch the whole DAG under ``cid`` through Bitswap (what is stored stays)."""
        await self._node.repo.fetch(cid, timeout=timeout)

    @asynccontextmanager
    async def holding(self, cid: CID) -> AsyncIterator[None]:
        async with self._node.repo.holding(cid):
            yield


def _b58(peer: bytes) -> str:
    from ..net.swarmhost import PeerId

    return PeerId(peer).to_base58()


def _text(addr: bytes) -> str:
    from ..maddr import text

    return text(addr)
