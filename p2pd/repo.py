"""A node's blocks: the blockstore, pins, garbage collection and Bitswap, behind the
operations the control socket offers (add, cat, get, pin, gc, block get/put/stat).

Consistency under ``kill -9``: an add writes its blocks (one bulk write, flushed) before
its pin; a fetch stores each message's blocks durably before walking on, and pins only
when the whole DAG is local. So a pin never points at a missing block, every stored block
verified before it was written, and a restarted ``get`` finds what it already has.
Garbage collection never waits on the network: it waits only for local writes in
progress (an import, a pin being written, a block put), never for a fetch. Instead every
operation that fetches or reads a DAG registers its root while it runs (:meth:`Repo.holding`),
and gc keeps whatever those roots reach besides what the pins reach. It lists the stored
blocks before it marks, so a block a running fetch stores meanwhile is never swept. A fetch
whose client went away is cancelled by the control server; one with a deadline stops there.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from .blocks.blockstore import Blockstore
from .blocks.cid import CID
from .blocks.exporter import export_file, export_path, stat
from .blocks.importer import ImportResult, import_path
from .blocks.multicodec import Codec
from .blocks.pins import Pins
from .errors import CorruptBlock, P2PDError, StoreFull
from .exchange.service import BitswapService, FetchStats

log = logging.getLogger(__name__)

#: Seconds between checks of the repo's size against ``[datastore] storage_max`` (one
#: also follows every add and fetch).
AUTO_GC_CHECK = 30.0


@dataclass(slots=True)
class Progress:
    """Shared with a worker thread: plain ints, read by the control handler."""

    done: int = 0
    total: int = 0
    blocks: int = 0
    peers: int = 0


class _Stopped(Exception):
    """An import whose caller was cancelled stops at its next write."""


class _CountingSink:
    """The importer's sink: the blockstore's bulk writer plus progress and, when peers
    wait for blocks, the CIDs they may want."""

    def __init__(self, writer, progress: Progress, watch: set[bytes],
                 stop: threading.Event | None = None) -> None:
        self.writer = writer
        self.progress = progress
        self.watch = watch
        self.stop = stop
        self.wanted: list[CID] = []
        self.cids: list[CID] = []
        self.collect_all = False

    def put_many(self, blocks: Iterable) -> int:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped
        items = list(blocks)
        n = self.writer.put_many(items)
        for cid, data in items:
            self.progress.done += memoryview(data).nbytes
            self.progress.blocks += 1
            if self.collect_all:
                self.cids.append(cid)
            if cid.multihash in self.watch:
                self.wanted.append(cid)
        return n


class Repo:
    def __init__(self, node, datastore, *, cache_bytes: int, provide: str = "roots") -> None:
        self.node = node
        self.datastore = datastore
        self.store = Blockstore(datastore, cache_bytes=cache_bytes)
        self.pins = Pins(datastore, self.store)
        self.bitswap = BitswapService(node, self.store, routing=node.dht)
        self.provide_mode = provide
        self._gc_lock = trio.Lock()
        self._writers = 0
        self._idle = trio.Event()
        self._idle.set()
        #: Roots of the DAGs operations are fetching or reading now, with how many use each.
        self._held: dict[CID, int] = {}
        self.fetches_in_flight = 0
        config = getattr(node, "config", None)
        #: ``[datastore] storage_max`` (0: none) and the percent of it that starts a gc.
        self.storage_max = getattr(config, "storage_max", 0)
        self.gc_watermark = getattr(config, "gc_watermark", 90)
        self.gc_runs = 0
        self.auto_gc_runs = 0
        self._grew = trio.Event()
        self._nursery: trio.Nursery | None = None

    def attach(self) -> None:
        self.bitswap.attach()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.bitswap.run)
            if self.storage_max:
                nursery.start_soon(self._collect_when_full)
            task_status.started()
            await trio.sleep_forever()

    # -- storage limit ------------------------------------------------------------------------
    @property
    def gc_threshold(self) -> int:
        """Bytes on disk above which gc runs by itself (0: never)."""
        return self.storage_max * self.gc_watermark // 100

    def disk_usage(self) -> int:
        return self.datastore.disk_usage()

    async def _collect_when_full(self) -> None:
        """Kubo's StorageGCWatermark: past ``gc_threshold`` bytes, collect what no pin and
        no running operation needs. Still above ``storage_max`` after that: one warning
        (until it is below again), since only unpinning can free the rest."""
        warned = False
        while True:
            with trio.move_on_after(AUTO_GC_CHECK):
                await self._grew.wait()
            self._grew = trio.Event()
            used = await trio.to_thread.run_sync(self.disk_usage)
            if used <= self.gc_threshold:
                warned = False
                continue
            removed, freed = await self.gc(auto=True)
            after = await trio.to_thread.run_sync(self.disk_usage)
            log.info("auto gc: the repo held %d bytes, past %d%% of storage_max %d: removed "
                     "%d blocks (%d bytes); now %d bytes", used, self.gc_watermark,
                     self.storage_max, removed, freed, after)
            if after > self.storage_max and not warned:
                warned = True
                log.warning("the repo holds %.1f MiB, above [datastore] storage_max (%.1f MiB) "
                            "even after gc: the rest is pinned or in use; unpin something or "
                            "raise storage_max", after / (1 << 20), self.storage_max / (1 << 20))
            elif after <= self.storage_max:
                warned = False

    def _stored_more(self) -> None:
        self._grew.set()

    # -- the writer / collector exclusion ------------------------------------------------------
    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        async with self._gc_lock:  # waits while a collection runs
            self._writers += 1
            self._idle = trio.Event()
        try:
            yield
        finally:
            self._writers -= 1
            if not self._writers:
                self._idle.set()

    @asynccontextmanager
    async def holding(self, cid: CID) -> AsyncIterator[None]:
        """Keep the DAG under ``cid`` from gc while the block runs (a fetch, an export, a
        cat). Waits only while a collection runs (local work), never for another fetch."""
        async with self._gc_lock:
            self._held[cid] = self._held.get(cid, 0) + 1
        try:
            yield
        finally:
            left = self._held[cid] - 1
            if left:
                self._held[cid] = left
            else:
                del self._held[cid]

    @asynccontextmanager
    async def _fetching(self, cid: CID) -> AsyncIterator[None]:
        async with self.holding(cid):
            self.fetches_in_flight += 1
            try:
                yield
            finally:
                self.fetches_in_flight -= 1

    # -- add ----------------------------------------------------------------------------------
    async def add(self, path: str, *, chunk_size: int, cid_version: int, raw_leaves: bool | None,
                  pin: bool = True, progress: Progress | None = None,
                  entries: list | None = None) -> ImportResult:
        """Import ``path``; ``entries`` (if given) gets ``[name, cid text, dag size]`` for
        every file and directory, the root last (what ``ipfs add`` prints)."""
        progress = progress or Progress()
        progress.total = await trio.to_thread.run_sync(_tree_size, path)
        async with self._writing():
            watch = set(self.bitswap.engine._wanted_by)
            options = dict(chunk_size=chunk_size, cid_version=cid_version, raw_leaves=raw_leaves)
            if entries is not None:
                options["on_entry"] = lambda name, r: entries.append([name, str(r.cid), r.tsize])

            stop, finished = threading.Event(), threading.Event()

            def work() -> tuple[ImportResult, _CountingSink]:
                try:
                    with self.store.bulk(prehashed=True) as writer:
                        sink = _CountingSink(writer, progress, watch, stop)
                        sink.collect_all = self.provide_mode == "all"
                        return import_path(path, sink, **options), sink
                finally:
                    finished.set()

            try:
                result, sink = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
            except trio.Cancelled:
                # The client left: the import stops at its next write; keep the guard
                # until the thread is really done so gc never races its last write.
                stop.set()
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(finished.wait)
                raise
            if pin:
                # The bulk write above was flushed: the whole DAG is durably stored.
                self.pins.add(result.cid, os.path.basename(os.path.normpath(path)),
                              complete=True)
        self._stored_more()
        if sink.wanted and self.bitswap.engine.blocks_added(sink.wanted):
            self.bitswap._work.set()
        self._announce([result.cid] if self.provide_mode == "roots" else sink.cids)
        return result

    def _announce(self, cids: list[CID]) -> None:
        """Provide on the DHT in the background (``[bitswap] provide``)."""
        dht = self.node.dht
        if dht is None or self.provide_mode == "none" or not cids or self._nursery is None:
            return

        async def provide_all() -> None:
            for cid in cids:
                try:
                    await dht.provide(cid.multihash)
                except Exception as exc:
                    log.info("providing %s failed: %s", cid, exc)

        self._nursery.start_soon(provide_all)

    # -- fetch, get, cat --------------------------------------------------------------------------
    async def fetch(self, cid: CID, *, timeout: float | None = None, offline: bool = False,
                    progress: Progress | None = None) -> FetchStats:
        progress = progress or Progress()

        def report(stats: FetchStats) -> None:
            if not progress.total and self.store.has(cid):
                progress.total = self._dag_size(cid)  # the root is here: the bar has a total
            progress.done = stats.bytes_fetched
            progress.blocks = stats.blocks_fetched + stats.blocks_local
            progress.peers = stats.peers

        if offline:
            from .blocks.pins import missing_blocks

            missing = missing_blocks(self.store, cid, limit=1)
            if missing:
                raise FileNotFoundError(f"block {missing[0]} is not stored (offline)")
            return FetchStats()
        async with self._fetching(cid):
            try:
                return await self.bitswap.fetch(cid, timeout=timeout, progress=report)
            finally:
                self._stored_more()

    def _dag_size(self, cid: CID) -> int:
        """Bytes of every block under ``cid``, as its root's links promise (the Tsizes);
        0 when the root does not say (it is only a progress bar's total)."""
        try:
            block = self.store.get(cid)
            if cid.codec != Codec.DAG_PB:
                return len(block)
            from .blocks import dagpb

            links = dagpb.decode_node(block).links
            return len(block) + sum(link.tsize or 0 for link in links)
        except P2PDError:
            return 0

    async def get(self, cid: CID, dest: str, *, timeout: float | None = None,
                  offline: bool = False, progress: Progress | None = None) -> int:
        progress = progress or Progress()
        async with self.holding(cid):
            await self.fetch(cid, timeout=timeout, offline=offline, progress=progress)
            try:
                return await trio.to_thread.run_sync(export_path, self.store, cid, dest)
            except CorruptBlock as exc:
                if offline:
                    raise
                # The bad block is quarantined now and reads as missing: fetch it again.
                log.warning("get %s: %s; fetching it again", cid, exc)
                await trio.to_thread.run_sync(_remove, dest)  # it did not exist before
            await self.fetch(cid, timeout=timeout, progress=progress)
            return await trio.to_thread.run_sync(export_path, self.store, cid, dest)

    async def cat_size(self, cid: CID, *, timeout: float | None = None,
                       offline: bool = False) -> int:
        await self.fetch(cid, timeout=timeout, offline=offline)
        node = await trio.to_thread.run_sync(stat, self.store, cid)
        if not node.is_file:
            raise IsADirectoryError(f"{cid} is a {node.type.name.lower()}, not a file; use get")
        return node.content_size()

    async def cat(self, cid: CID) -> AsyncIterator[bytes]:
        pieces = export_file(self.store, cid)
        while True:
            piece = await trio.to_thread.run_sync(next, pieces, None)
            if piece is None:
                return
            yield piece

    # -- pins and gc ------------------------------------------------------------------------------
    async def pin_add(self, cid: CID, *, timeout: float | None = None, offline: bool = False):
        async with self.holding(cid):
            if not offline:
                async with self._fetching(cid):
                    await self.bitswap.fetch(cid, timeout=timeout)
            async with self._writing():  # the network part is done: only the pin is written
                return await trio.to_thread.run_sync(self.pins.add, cid)

    def pin_rm(self, cid: CID) -> None:
        self.pins.remove(cid)

    def pin_ls(self):
        return self.pins.list()

    async def gc(self, *, auto: bool = False) -> tuple[int, int]:
        """Remove every block no pin and no running operation reaches.

        Waits for local writes in progress (their blocks are not pinned yet), never for
        a fetch: what fetches use is kept through the roots they hold."""
        async with self._gc_lock:
            await self._idle.wait()
            held = list(self._held)  # no operation starts holding while the lock is ours

            def collect() -> tuple[int, int]:
                removed, freed = self.pins.gc(held)
                if removed:  # give the space back now, not at some later compaction
                    try:
                        self.datastore.compact("blocks", "blockinfo")
                    except StoreFull as exc:  # removed all the same; RocksDB compacts later
                        log.warning("gc removed %d blocks but could not compact now: %s",
                                    removed, exc)
                return removed, freed

            result = await trio.to_thread.run_sync(collect)
            self.gc_runs += 1
            if auto:
                self.auto_gc_runs += 1
            return result

    # -- single blocks --------------------------------------------------------------------------
    async def block_get(self, cid: CID, *, timeout: float | None = None,
                        offline: bool = False) -> bytes:
        if offline or self.store.has(cid):
            return self.store.get(cid)
        async with self._fetching(cid):
            return await self.bitswap.fetch_block(cid, timeout=timeout)

    async def block_put(self, data: bytes, codec: int = Codec.RAW, version: int = 1) -> CID:
        cid = CID.for_block(data, codec, version)
        async with self._writing():
            self.store.put(cid, data)
        if self.bitswap.engine.blocks_added([cid]):
            self.bitswap._work.set()
        return cid

    def block_size(self, cid: CID) -> int:
        return self.store.size(cid)

    async def verify(self) -> dict:
        """Re-hash every stored block (a bad one is quarantined) and check that every
        pin's DAG is complete."""
        from .blocks.pins import missing_blocks
        from .errors import BlockNotFound

        def work() -> dict:
            ok = bad = 0
            for cid in list(self.store.cids()):
                try:
                    self.store.cache.discard(cid.multihash)
                    self.store.get(cid)
                    ok += 1
                except (CorruptBlock, BlockNotFound):
                    bad += 1
            incomplete = [str(p.cid) for p in self.pins.list()
                          if missing_blocks(self.store, p.cid, limit=1)]
            return {"blocks_ok": ok, "blocks_bad": bad, "pins": len(self.pins.list()),
                    "pins_incomplete": incomplete}

        return await trio.to_thread.run_sync(work)

    async def stats(self) -> dict:
        """``repo stat``: what kubo's shows (blocks, bytes, size on disk, storage max,
        path) plus pins, gc runs and the Bitswap counters."""
        blocks, block_bytes = await trio.to_thread.run_sync(self.store.usage)
        return {"blocks": blocks, "blocks_bytes": block_bytes,
                "repo_size": await trio.to_thread.run_sync(self.disk_usage),
                "storage_max": self.storage_max, "gc_watermark": self.gc_watermark,
                "path": str(self.datastore.path), "pins": len(self.pins.list()),
                "gc_runs": self.gc_runs, "auto_gc_runs": self.auto_gc_runs,
                "fetches_in_flight": self.fetches_in_flight,
                "wal_dropped": self.datastore.recovery_drops,
                "salvages": [{k: v for k, v in r.items() if k != "dropped_keys"}
                             for r in self.datastore.salvages],
                "salvage_dropped_blocks": [str(c) for c in self.store.salvage_dropped],
                **self.bitswap.stats()}


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _tree_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
