"""One RocksDB per node, split into typed key spaces by key prefix.

Why one database and prefixes rather than one database (or column family) per
concern: a single write batch can then change blocks, pins and metadata
atomically, there is one WAL to replay after a crash, and one LOCK file that
tells a second process the node is already running.

Durability: the WAL is always on and every write (single put or batch) goes
through it before it is acknowledged. By default we do *not* fsync per write
(``sync=False``): RocksDB hands the WAL record to the kernel with ``write(2)``
before returning, and the kernel keeps it when the process dies, so an
acknowledged write survives ``kill -9`` or a crash of p2pd. It does not
necessarily survive a power cut or kernel panic; pass ``sync=True`` to
:meth:`Datastore.open` to fsync the WAL on every write (several milliseconds per
write on ordinary disks) when that matters more than throughput. On reopen
RocksDB replays the WAL in ``point_in_time`` recovery, so a torn last record is
dropped instead of refusing to open.

A full disk: every write first checks the free space (one statvfs, about a microsecond)
and is refused with :class:`StoreFull` when it would leave less
than :attr:`Datastore.reserve` bytes, so RocksDB itself rarely meets ``ENOSPC``. When it does
anyway (another program filled the disk between two checks), RocksDB stops writing for good
(its WAL writer keeps the error) while reads go on; the write is reported as
:class:`StoreFull`, and the first write after enough space is back closes and reopens the
database (replaying its WAL, nothing acknowledged is lost) before it is tried.

A damaged table file: RocksDB refuses to read a block whose checksum fails (those keys
read as errors, the rest as usual), and once a compaction meets the damage it refuses every
write until the database is reopened, and again at the next compaction after it. Repairing in
place (RepairDB) drops whole table files, good blocks with the bad. So the first write after
a read or a write met a ``Corruption`` error salvages the database online
(:meth:`Datastore.salvage`): every key is copied to a fresh database (checksums verified;
where they fail, the damaged region is read again unverified and only what a space's
*checker* accepts is kept, e.g. blocks that hash to their CIDs), which is then swapped in by
renaming, the damaged directory kept aside (``datastore.damaged-<time>``) for the user. A
crash during the copy leaves the old database in place (the copy is discarded at the next
open); a crash between the two renames is finished at the next open.

Keys and values are raw bytes (rocksdict raw mode): nothing is pickled, so the
files are readable by any RocksDB tool and by later versions of p2pd.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from ..errors import StoreError, StoreFull

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

#: Prefixes of the typed key spaces. A prefix never is a prefix of another one,
#: so iterating one space never yields another space's keys.
SPACES: dict[str, bytes] = {
    "blocks": b"/blocks/",
    "blockinfo": b"/blockinfo/",
    "quarantine": b"/quarantine/",
    "pins": b"/pins/",
    "records": b"/records/",
    "providers": b"/providers/",
    "peers": b"/peers/",
    "meta": b"/meta/",
}

#: On-disk layout version, written to ``/meta/format`` on first open.
FORMAT_VERSION = b"1"


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``.

    Used as an exclusive iterator upper bound so RocksDB stops at the end of a
    space instead of us comparing every key. ``None`` when no such key exists
    (the prefix is all 0xff bytes), meaning "to the end of the database".
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _bytes(value: Buffer, what: str) -> bytes:
    # rocksdict's raw mode takes exactly ``bytes``; copying a memoryview here is the
    # one copy between the caller's buffer and RocksDB's memtable.
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes-like, not {type(value).__name__}")


class KeySpace:
    """One typed key space: the keys under one prefix, addressed without it.

    Callers use short keys (a multihash, a peer id); the prefix is added here so
    no caller can read or clobber another space's data by accident.
    """

    __slots__ = ("_store", "name", "prefix", "_end")

    def __init__(self, store: Datastore, name: str, prefix: bytes) -> None:
        self._store = store
        self.name = name
        self.prefix = prefix
        self._end = prefix_end(prefix)

    def __repr__(self) -> str:
        return f"KeySpace({self.name!r}, {self.prefix!r})"

    def key(self, key: Buffer) -> bytes:
        """The full database key of ``key`` in this space."""
        return self.prefix + _bytes(key, "key")

    def get(self, key: Buffer) -> bytes | None:
        """The value under ``key``, or ``None`` when absent (an empty value is ``b""``)."""
        return self._store._get(self.key(key))

    def has(self, key: Buffer) -> bool:
        return self._store._get(self.key(key)) is not None

    def put(self, key: Buffer, value: Buffer) -> None:
        """Write one value; durable (see the module docstring) when this returns."""
        self._store._put(self.key(key), _bytes(value, "value"))

    def delete(self, key: Buffer) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        self._store._delete(self.key(key))

    def items(self, prefix: Buffer = b"") -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs whose key starts with ``prefix``, in key order.

        Keys are yielded without the space's prefix.
        """
        lo = self.key(prefix)
        hi = prefix_end(lo) if prefix else self._end
        cut = len(self.prefix)
        for k, v in self._store._scan(lo, hi, values=True):
            yield k[cut:], v

    def keys(self, prefix: Buffer = b"") -> Iterator[bytes]:
        """Keys (without the space's prefix) starting with ``prefix``, in key order."""
        lo = self.key(prefix)
        hi = prefix_end(lo) if prefix else self._end
        cut = len(self.prefix)
        for k, _v in self._store._scan(lo, hi, values=False):
            yield k[cut:]

    def count(self, prefix: Buffer = b"") -> int:
        """Number of keys starting with ``prefix`` (a scan: O(keys))."""
        return sum(1 for _ in self.keys(prefix))


class Batch:
    """Writes to any key spaces, applied all together or not at all.

    Build one with :meth:`Datastore.batch`; as a context manager it is written
    when the block exits normally and dropped when it raises, so a failure
    half-way through preparing a change leaves the store untouched.
    """

    __slots__ = ("_store", "_wb", "_done", "_logged", "_puts", "_ops", "_op_bytes")

    def __init__(self, store: Datastore, logged: bool = True) -> None:
        self._store = store
        self._wb = WriteBatch(raw_mode=True)
        self._done = False
        self._logged = logged
        self._puts = False  # only deletes: allowed nearer a full disk
        #: the writes again (the same bytes objects, no copies) while the batch is small:
        #: RocksDB consumes a batch even when writing it fails, and a write that met a
        #: damaged file is tried again after the salvage. A big one (an import's 8 MiB)
        #: is not kept twice; it is not tried again (the damage is mostly found before,
        #: see :meth:`Datastore._writable`)
        self._ops: list[tuple[bytes, bytes | None]] | None = []
        self._op_bytes = 0

    def put(self, space: KeySpace, key: Buffer, value: Buffer) -> None:
        self._check(space)
        self._puts = True
        k, v = space.key(key), _bytes(value, "value")
        self._wb.put(k, v)
        self._keep(k, v)

    def delete(self, space: KeySpace, key: Buffer) -> None:
        self._check(space)
        k = space.key(key)
        self._wb.delete(k)
        self._keep(k, None)

    def _keep(self, k: bytes, v: bytes | None) -> None:
        if self._ops is None:
            return
        self._op_bytes += len(k) + (len(v) if v else 0)
        if self._op_bytes > _RETRY_BATCH_BYTES:
            self._ops = None
        else:
            self._ops.append((k, v))

    def _rebuild(self) -> WriteBatch | None:
        if self._ops is None:
            return None
        wb = WriteBatch(raw_mode=True)
        for k, v in self._ops:
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        return wb

    def __len__(self) -> int:
        return self._wb.len()

    def write(self) -> None:
        """Apply every write at once; durable when this returns. A batch is written once."""
        if self._done:
            raise StoreError("this write batch was already written or discarded; make a new one")
        self._done = True
        try:
            self._store._write(self._wb, self._logged, deletes_only=not self._puts,
                               rebuild=self._rebuild)
        finally:
            self._ops = None

    def discard(self) -> None:
        self._done = True
        self._wb.clear()
        self._ops = None

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if not self._done:
                self.write()
        else:
            self.discard()

    def _check(self, space: KeySpace) -> None:
        if self._done:
            raise StoreError("this write batch was already written or discarded; make a new one")
        if space._store is not self._store:
            raise StoreError(f"{space!r} belongs to another datastore than this batch")


class Datastore:
    """A node's RocksDB, opened once per process; use :meth:`open`.

    Spaces are attributes (``ds.blocks``, ``ds.pins``, ...) and also reachable
    by name with :meth:`space`. Close it explicitly (or use ``with``); closing
    twice is fine, using it after closing raises :class:`StoreError`.
    """

    #: Bytes a write must leave free on the datastore's disk (RocksDB needs some for its
    #: manifest, options and the flush of what is in memory).
    reserve = 2 << 20

    def __init__(self, db: Rdict, path: Path, sync: bool, opts: Options | None = None) -> None:
        self._db: Rdict | None = db
        self.path = path
        self.sync = sync
        self._opts = opts
        #: free bytes at the last statvfs
        self._room = -1
        #: bytes written without the WAL since the last flush (a flush writes them out)
        self._unflushed = 0
        #: RocksDB met ENOSPC and refuses writes until the database is reopened
        self._wedged = False
        self._reopen_lock = threading.Lock()
        #: held around each write, and by a salvage from its copy to its swap: a write made
        #: meanwhile would go to the database being copied, after the copy passed its key
        self._write_lock = threading.Lock()
        #: times the database was reopened after ENOSPC: unlogged writes made before a
        #: reopen are gone (see :meth:`Blockstore.bulk`)
        self.reopens = 0
        #: what RocksDB dropped from a cut or damaged WAL at open (from its LOG file)
        self.recovery_drops: list[str] = []
        #: a read or write met a damaged table file: the next write salvages first
        self._damaged = False
        #: RocksDB's count of background (flush, compaction) errors when last looked at
        self._bg_errors = _background_errors(db)
        #: per key space, a check of (key without prefix, value) that a salvage applies to
        #: every copied entry of that space (and that decides, for entries whose checksums
        #: failed, whether they are kept); spaces without one keep only verified entries
        self.checkers: dict[str, Callable[[bytes, bytes], bool]] = {}
        #: called with the report after each salvage (e.g. the blockstore mends its index)
        self.after_salvage: list[Callable[[dict], None]] = []
        #: what each salvage did (:meth:`salvage`), the newest last
        self.salvages: list[dict] = []
        self._wopt = WriteOptions()
        self._wopt.sync = sync
        self._unlogged = WriteOptions()
        self._unlogged.disable_wal = True
        self._spaces = {name: KeySpace(self, name, p) for name, p in SPACES.items()}
        self.blocks = self._spaces["blocks"]
        self.blockinfo = self._spaces["blockinfo"]
        self.quarantine = self._spaces["quarantine"]
        self.pins = self._spaces["pins"]
        self.records = self._spaces["records"]
        self.providers = self._spaces["providers"]
        self.peers = self._spaces["peers"]
        self.meta = self._spaces["meta"]

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, sync: bool = False,
             memtable_bytes: int | None = None, cache_bytes: int | None = None) -> Datastore:
        """Open (creating if missing) the datastore directory at ``path``.

        A database another process holds open is refused with a
        :class:`StoreError` naming the path, rather than RocksDB's bare I/O error.
        """
        path = Path(path)
        _finish_salvage(path)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
        # 2-core home machines: a couple of background jobs is plenty.
        opts.set_max_background_jobs(2)
        # Most bytes here are blocks: file chunks that are usually already compressed or
        # random. Measured here (256 KiB random blocks, 2 cores): snappy halves write
        # throughput (~240 vs ~450 MB/s) and saves nothing. BlobDB writes as fast but
        # reads ~4x slower (~1 vs ~4 GB/s), so values stay in the LSM, uncompressed.
        opts.set_compression_type(DBCompressionType.none())
        opts.set_keep_log_file_num(4)
        if memtable_bytes is not None:  # [datastore] memtable_mib; RocksDB's default 64 MiB
            opts.set_write_buffer_size(memtable_bytes)
        if cache_bytes is not None:  # [datastore] block_cache_mib; RocksDB's default 32 MiB
            table = BlockBasedOptions()
            table.set_block_cache(Cache(cache_bytes))
            opts.set_block_based_table_factory(table)
        try:
            db = Rdict(str(path), opts)
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's status text
            raise StoreError(_open_error(path, exc)) from None
        store = cls(db, path, sync, opts)
        store.recovery_drops = _recovery_drops(path)
        for what in store.recovery_drops:
            log.warning(
                "datastore %s: its write-ahead log was cut or damaged, and RocksDB dropped "
                "what could not be replayed (%s). Writes made before that point are here; "
                "the dropped ones are gone. `p2pd repo verify` checks blocks and pins", path,
                what)
        try:
            fmt = store.meta.get(b"format")
            if fmt is None:
                store.meta.put(b"format", FORMAT_VERSION)
            elif fmt != FORMAT_VERSION:
                raise StoreError(
                    f"datastore {path} has format {fmt!r}; this p2pd reads format "
                    f"{FORMAT_VERSION!r}. Use a matching p2pd or another $P2PD_HOME"
                )
        except BaseException:
            store.close()
            raise
        return store

    def space(self, name: str) -> KeySpace:
        try:
            return self._spaces[name]
        except KeyError:
            raise StoreError(f"no key space named {name!r}; known: {', '.join(SPACES)}") from None

    def batch(self, *, logged: bool = True) -> Batch:
        """A new atomic batch of writes across key spaces.

        ``logged=False`` skips the WAL: the batch is atomic but *not* durable until
        the next :meth:`flush` (bulk imports write that way and flush once at the
        end, before anything that points at the data is written). A crash before the
        flush loses the whole unlogged batch and nothing else.
        """
        self._live()
        return Batch(self, logged)

    @property
    def closed(self) -> bool:
        return self._db is None

    def flush(self) -> None:
        """Flush memtables to SST files: makes unlogged batches durable (logged ones are)."""
        db = self._writable(self._unflushed)
        try:
            db.flush(True)
        except Exception as exc:
            if not self._salvage_after(exc):  # a salvage flushes the copy it swaps in
                raise self._failed("flush failed", exc) from None
        self._unflushed = 0

    def compact(self, *names: str) -> None:
        """Compact the key spaces ``names`` (all when none is named) now.

        Deleting only writes tombstones: the deleted bytes stay in the SST files until a
        compaction rewrites them, which RocksDB may not start for a long time (a
        restart does not either). After a large delete (``repo gc``), this gives the
        space back to the disk at once."""
        db = self._writable(self._unflushed)
        spaces = [self.space(n) for n in names] if names else list(self._spaces.values())
        try:
            db.flush(True)  # memtable tombstones reach the files the compaction rewrites
            self._unflushed = 0
            for space in spaces:
                db.compact_range(space.prefix, prefix_end(space.prefix))
        except Exception as exc:
            raise self._failed("compaction failed", exc) from None

    def disk_usage(self) -> int:
        """Bytes the database's files take on disk (SST files, WAL, manifest)."""
        total = 0
        for entry in os.scandir(self.path):
            try:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                pass  # a file compaction removed meanwhile
        return total

    def close(self) -> None:
        """Release the database and its LOCK; a second call does nothing."""
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception as exc:
                if self._wedged:  # its WAL writer keeps the ENOSPC; the files are released
                    return
                raise StoreError(f"datastore {self.path}: close failed: {exc}") from None

    def __enter__(self) -> Datastore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Datastore({str(self.path)!r}{', closed' if self.closed else ''})"

    # -- raw access for KeySpace / Batch ---------------------------------------------
    def _live(self) -> Rdict:
        db = self._db
        if db is None:
            raise StoreError(f"datastore {self.path} is closed")
        return db

    def _get(self, key: bytes) -> bytes | None:
        db = self._live()
        try:
            return db.get(key)
        except Exception as exc:
            if self._db is not db or self._reopen_lock.locked():  # reopened under us
                with self._reopen_lock:
                    return self._get(key)
            if _corruption(exc):
                self._damaged = True
            raise StoreError(f"datastore {self.path}: read failed: {exc}") from None

    def _put(self, key: bytes, value: bytes) -> None:
        for attempt in (1, 2):
            self._writable(len(key) + len(value))
            try:
                with self._write_lock:  # the database after a salvage
                    self._live().put(key, value, self._wopt)
                return
            except Exception as exc:
                if attempt == 1 and self._salvage_after(exc):
                    continue
                raise self._failed("write failed", exc) from None

    def _delete(self, key: bytes) -> None:
        for attempt in (1, 2):
            self._writable(len(key), reserve=_DELETE_RESERVE)  # gc on a full disk
            try:
                with self._write_lock:  # the database after a salvage
                    self._live().delete(key, self._wopt)
                return
            except Exception as exc:
                if attempt == 1 and self._salvage_after(exc):
                    continue
                raise self._failed("delete failed", exc) from None

    def _write(self, wb: WriteBatch, logged: bool = True, deletes_only: bool = False,
               rebuild: Callable[[], WriteBatch | None] | None = None) -> None:
        size = wb.size_in_bytes()
        for attempt in (1, 2):
            self._writable(size + (0 if logged else self._unflushed),
                           reserve=_DELETE_RESERVE if deletes_only else None)
            try:
                with self._write_lock:  # the database after a salvage
                    self._live().write(wb, self._wopt if logged else self._unlogged)
                break
            except Exception as exc:
                again = rebuild() if rebuild is not None and _corruption(exc) else None
                if attempt == 1 and again is not None and self._salvage_after(exc):
                    wb = again  # RocksDB consumed the one that failed
                    continue
                raise self._failed("batch write failed", exc) from None
        if not logged:
            self._unflushed += size

    def _salvage_after(self, exc: Exception) -> bool:
        """A write met a damaged table file (RocksDB refuses writes from then on):
        salvage, and say whether the write may be tried again."""
        if not _corruption(exc):
            return False
        self._damaged = True
        try:
            self.salvage(f"a write failed: {exc}")
        except StoreError as err:
            log.error("%s", err)
            return False
        return True

    # -- a full disk ------------------------------------------------------------------
    def free_bytes(self) -> int:
        """Bytes free for us on the disk holding the datastore."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def _writable(self, size: int, reserve: int | None = None) -> Rdict:
        """The database, once a write of ``size`` bytes is sure to leave :attr:`reserve`
        bytes free (:class:`StoreFull` otherwise); reopened first if ENOSPC wedged it."""
        db = self._live()
        self._room = self.free_bytes()  # ~1 us; RocksDB preallocates, so count nothing
        reserve = self.reserve if reserve is None else min(reserve, self.reserve)
        if size > self._room - reserve:
            raise StoreFull(self._full_message(size, size + reserve))
        self.check_damage()  # a flush or compaction failed: damage, or a full disk
        if self._damaged:
            self.salvage("a read or a compaction met a damaged table file")
            db = self._live()
        if self._wedged:
            # Reopening replays the WAL into a new table file: that needs its size free.
            need = size + self._wal_bytes() + max(self.reserve, 1 << 20)
            if self._room < need:
                raise StoreFull(self._full_message(size, need))
            db = self._reopen()
        return db

    def check_damage(self) -> bool:
        """Whether a read or a background error met a damaged table file (a salvage is
        due); cheap: a property read, and a tiny write only when RocksDB counts a new
        background error."""
        db = self._db
        if db is None:
            return False
        bg = _background_errors(db)
        del db  # nothing may hold the database while waiting for a salvage to swap it
        if bg != self._bg_errors:
            self._bg_errors = bg
            self._probe()
        return self._damaged and not self._wedged

    def _probe(self) -> None:
        """A background error appeared: which one. RocksDB refuses writes after it, with
        the error as the reason, so a tiny write tells (a damaged file: salvage; ENOSPC:
        reopen once there is room; none: it recovered by itself)."""
        try:
            with self._write_lock:
                self._live().put(_PROBE_KEY, b"", self._wopt)
        except Exception as exc:
            if _corruption(exc):
                self._damaged = True
            else:
                self._failed("write failed", exc)  # marks a full disk

    def _wal_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.log"))

    def _full_message(self, size: int, need: int = 0) -> str:
        need = need or size + self.reserve
        return (
            f"no space left on device: the disk holding datastore {self.path} has "
            f"{max(self._room, 0) / (1 << 20):.1f} MiB free, too little for a write of "
            f"{size / (1 << 20):.1f} MiB (it needs {need / (1 << 20):.1f} MiB free); "
            "nothing was stored and what was stored before is intact. Free some space "
            "(unpin and `p2pd repo gc`, or delete other files on that disk) and retry"
        )

    def _failed(self, what: str, exc: Exception) -> StoreError:
        """The error to raise for a failed write: :class:`StoreFull` for ENOSPC (and the
        database is marked to be reopened once there is room), else :class:`StoreError`."""
        text = str(exc)
        if "No space left on device" in text or "NoSpace" in text:
            self._wedged = True
            return StoreFull(
                f"no space left on device: the disk holding datastore {self.path} filled up "
                f"during a write ({what}); it was not stored and what was stored before is "
                "intact. Free some space (delete other files on that disk, or unpin and "
                "`p2pd repo gc`) and retry: the next write reopens the database"
            )
        return StoreError(f"datastore {self.path}: {what}: {text}")

    def _reopen(self) -> Rdict:
        """Close the wedged database and open it again (its WAL is replayed); reads that
        meet the swap wait for it and retry."""
        with self._reopen_lock:
            old = self._db
            if old is None:
                raise StoreError(f"datastore {self.path} is closed")
            if not self._wedged:
                return old
            try:
                old.close()  # "Writer has previous error": the files are released anyway
            except Exception:
                pass
            try:
                db = Rdict(str(self.path), self._opts)
            except Exception as exc:
                self._db = None
                raise StoreError(
                    f"datastore {self.path}: could not reopen it after the disk was full: "
                    f"{exc}; restart p2pd once there is space"
                ) from None
            self._db = db
            self._bg_errors = _background_errors(db)
            self.reopens += 1
            self._wedged = False
            self._unflushed = 0  # what was unflushed is gone with the old memtable
            return db

    # -- a damaged table file -------------------------------------------------------------
    def salvage(self, reason: str) -> dict:
        """Copy every readable key to a fresh database and swap it in (see the module
        docstring); the damaged directory is kept aside. Returns (and appends to
        :attr:`salvages`) what was copied and dropped per key space. Reads that meet the
        swap wait for it; a write that met the damage is tried again by the caller."""
        with self._reopen_lock:
            old = self._db
            if old is None:
                raise StoreError(f"datastore {self.path} is closed")
            if not self._damaged:  # another thread salvaged meanwhile
                return self.salvages[-1] if self.salvages else {}
            started = time.monotonic()
            log.error("datastore %s: a table file is damaged (%s); copying every readable "
                      "key to a fresh database, writes wait for it", self.path, reason)
            fresh_path = self.path.with_name(self.path.name + _FRESH)
            shutil.rmtree(fresh_path, ignore_errors=True)
            need = self.disk_usage() + self.reserve
            if self.free_bytes() < need:
                raise StoreFull(
                    f"datastore {self.path} has a damaged table file, and salvaging it needs "
                    f"{need / (1 << 20):.0f} MiB free beside it (a copy of what is readable); "
                    "the disk has less. Reads go on; free some space and retry the write")
            try:
                fresh = Rdict(str(fresh_path), self._opts or Options(raw_mode=True))
            except Exception as exc:
                raise StoreError(f"datastore {self.path}: could not create {fresh_path} to "
                                 f"salvage into: {exc}; restart p2pd") from None
            self._write_lock.acquire()
            try:
                report = self._copy(old, fresh)
                fresh.flush(True)
            except BaseException as exc:
                self._write_lock.release()
                with _quiet():
                    fresh.close()
                shutil.rmtree(fresh_path, ignore_errors=True)
                if isinstance(exc, Exception):
                    raise StoreError(f"datastore {self.path}: salvaging failed: {exc}; "
                                     "reads go on, restart p2pd to retry") from None
                raise
            fresh.close()
            stamp = f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
            aside, n = self.path.with_name(stamp), 1
            while aside.exists():
                n += 1
                aside = self.path.with_name(f"{stamp}-{n}")
            report.update(reason=reason[:500], kept_aside=str(aside),
                          seconds=round(time.monotonic() - started, 3))
            (fresh_path / SALVAGE_MARK).write_text(json.dumps(report))
            _fsync_dir(fresh_path)
            try:
                with _quiet():  # "Corruption" from its background error: files released
                    old.close()
                # Readers holding ``old`` meet its close and retry once the lock is free.
                os.rename(self.path, aside)
                os.rename(fresh_path, self.path)
                _fsync_dir(self.path.parent)
                try:
                    self._db = _open_when_released(self.path, self._opts)
                except Exception as exc:
                    self._db = None
                    raise StoreError(f"datastore {self.path}: could not open the salvaged "
                                     f"database: {exc}; restart p2pd") from None
                (self.path / SALVAGE_MARK).unlink(missing_ok=True)
                self._bg_errors = _background_errors(self._db)
                self._damaged = False
                self._unflushed = 0  # copied, and flushed with the copy
                self.salvages.append(report)
            finally:
                self._write_lock.release()
        dropped = {k: v for k, v in report["dropped"].items() if v}
        log.error("datastore %s: salvaged in %.1f s: %d keys copied, dropped %s; the damaged "
                  "database is kept in %s (delete it when done with it)", self.path,
                  report["seconds"], sum(report["copied"].values()), dropped or "nothing",
                  aside)
        for fn in self.after_salvage:
            try:
                fn(report)
            except Exception:
                log.exception("datastore %s: after the salvage", self.path)
        return report

    def _space_of(self, key: bytes) -> KeySpace | None:
        for space in self._spaces.values():
            if key.startswith(space.prefix):
                return space
        return None

    def _copy(self, old: Rdict, fresh: Rdict) -> dict:
        """Every key of ``old`` into ``fresh``, in key order. Verified reads first; where
        RocksDB reports damage, the same range unverified, one key at a time, until a key
        reads back verified again (a good block of the file; each round takes at least one
        key, so it ends): what was read unverified is
        kept only when its space's checker accepts it. Every entry of a space with a checker
        is checked, verified or not (a block is hashed against its CID)."""
        copied = dict.fromkeys(self._spaces, 0)
        dropped = dict.fromkeys(self._spaces, 0)
        copied["other"] = dropped["other"] = 0
        unverified = skipped_files = 0
        dropped_keys: list[str] = []
        wb = WriteBatch(raw_mode=True)
        wopt = WriteOptions()
        wopt.disable_wal = True  # the copy is flushed before it is swapped in

        def take(key: bytes, value: bytes, verified: bool) -> None:
            nonlocal wb
            space = self._space_of(key)
            name = space.name if space else "other"
            check = self.checkers.get(name)
            ok = check(key[len(space.prefix):], value) if check and space else verified
            if not ok:
                dropped[name] += 1
                if len(dropped_keys) < 1000:
                    dropped_keys.append(key.hex())
                return
            copied[name] += 1
            wb.put(key, value)
            if wb.size_in_bytes() > 16 << 20:
                fresh.write(wb, wopt)
                wb = WriteBatch(raw_mode=True)

        checked = ReadOptions()
        checked.fill_cache(False)
        loose = ReadOptions()
        loose.set_verify_checksums(False)
        loose.fill_cache(False)
        start = b""
        while start is not None:
            start = self._copy_verified(old, checked, start, take)
            if start is None:
                break
            # Damage at or after ``start``: step through it unverified.
            it = old.iter(loose)
            it.seek(start)
            resumed = None
            while True:
                try:
                    if not it.valid():
                        it.status()
                        break
                    key, value = it.key(), it.value()
                except Exception:
                    break
                try:
                    again = old.get(key, read_opt=checked)
                except Exception:
                    again = None
                if again is not None:  # a good block again: verified reads from the next key
                    take(key, again, verified=True)
                    resumed = key + b"\x00"
                    break
                unverified += 1
                take(key, value, verified=False)
                it.next()
            del it
            if resumed is not None:
                start = resumed
                continue
            # Unreadable even unverified (a damaged index or footer): skip to the end of
            # the table file that holds ``start``, and go on after it.
            start = self._past_file(old, start)
            skipped_files += 1
        fresh.write(wb, wopt)
        return {"copied": copied, "dropped": dropped, "read_unverified": unverified,
                "files_skipped": skipped_files, "dropped_keys": dropped_keys}

    @staticmethod
    def _copy_verified(old: Rdict, ropt: ReadOptions, start: bytes,
                       take: Callable[[bytes, bytes, bool], None]) -> bytes | None:
        """Copy from ``start`` with checksums verified; ``None`` when done, else the key
        from which the rest must be read around damage."""
        it = old.iter(ropt)
        it.seek(start)
        last = None
        try:
            while it.valid():
                key = it.key()
                value = it.value()
                take(key, value, True)
                last = key
                it.next()
            it.status()
            return None
        except Exception as exc:
            if not _corruption(exc):
                raise
            return start if last is None else last + b"\x00"
        finally:
            del it

    @staticmethod
    def _past_file(old: Rdict, key: bytes) -> bytes | None:
        """The first key after the table file whose range holds ``key`` (``None``: it was
        the last)."""
        ends = []
        for f in old.live_files():
            lo, hi = f.get("start_key"), f.get("end_key")
            if isinstance(lo, bytes) and isinstance(hi, bytes) and lo <= key <= hi:
                ends.append(hi)
        if not ends:
            return None
        return max(ends) + b"\x00"

    def _scan(self, lo: bytes, hi: bytes | None, values: bool) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` in ``[lo, hi)``, reading in short pages.

        No RocksDB iterator stays alive while the caller holds the generator: a
        live one would pin the database open past :meth:`close` (and keep its
        LOCK). Each page opens a fresh iterator after the last key seen, so a
        scan sees writes made meanwhile (it is not a snapshot) and stops with a
        :class:`StoreError` if the store is closed under it.
        """
        start = lo
        salvaged = False
        while True:
            page: list[tuple[bytes, bytes]] = []
            db = self._db
            if db is None:
                raise StoreError(f"datastore {self.path} was closed during iteration")
            ropt = ReadOptions()
            ropt.set_iterate_lower_bound(start)
            if hi is not None:
                ropt.set_iterate_upper_bound(hi)
            it = None
            try:
                it = db.iter(ropt)
                it.seek(start)
                held = 0
                while it.valid() and len(page) < _PAGE_KEYS and held < _PAGE_BYTES:
                    key = it.key()
                    value = it.value() if values else b""
                    held += len(key) + len(value)
                    page.append((key, value))
                    it.next()
                more = it.valid()
                it.status()
                del it
            except Exception as exc:
                it = None  # a live iterator keeps the database (and its LOCK) open
                if self._db is not db or self._reopen_lock.locked():  # swapped under us
                    with self._reopen_lock:
                        pass
                    if self._db is not db:
                        continue
                if _corruption(exc) and not salvaged:  # salvage, then go on in the copy
                    salvaged = self._damaged = True
                    self.salvage(f"a scan met a damaged table file: {exc}")
                    continue
                raise StoreError(f"datastore {self.path}: iteration failed: {exc}") from None
            yield from page
            if not more:
                return
            start = page[-1][0] + b"\x00"


#: What a delete (a tombstone in the WAL) must leave free: less than other writes, so that
#: unpinning and gc still work on a disk the reserve already stopped adds on.
_DELETE_RESERVE = 256 << 10

#: Scan page bounds: enough keys to amortise opening an iterator, few enough bytes
#: (block values are up to a few MiB) to keep a page's memory small.
_PAGE_KEYS = 512
_PAGE_BYTES = 4 << 20


_DROPPED = re.compile(rb"\[WARN\] .*?([^ /]+\.log): dropping (\d+) bytes; ([^\n]*)")


def _recovery_drops(path: Path) -> list[str]:
    """What RocksDB's recovery just dropped from a WAL, as it wrote in its LOG (RocksDB
    rotates LOG at each open, so the file holds only this open's recovery). With
    ``point_in_time`` recovery a torn or damaged record ends the replay silently: this is
    the only place it is said."""
    try:
        with open(path / "LOG", "rb") as f:
            text = f.read(1 << 20)
    except OSError:
        return []
    return [f"{m[1].decode(errors='replace')}: {int(m[2])} bytes, "
            f"{m[3].decode(errors='replace').strip()}" for m in _DROPPED.finditer(text)]


def _open_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "lock" in text.lower():
        return (
            f"datastore {path} is in use by another process (its RocksDB LOCK is held): "
            "stop the other p2pd, or point $P2PD_HOME at another directory"
        )
    return f"cannot open datastore {path}: {text}"


#: Where a salvage builds the fresh database, beside the datastore directory, and the file
#: that marks the copy complete (written after its flush, removed once it is in place).
_FRESH = ".salvage"
SALVAGE_MARK = "SALVAGED"


#: Batches up to this size are kept to be written again after a salvage (Batch._ops).
_RETRY_BATCH_BYTES = 1 << 20
#: What :meth:`Datastore._probe` writes to learn which background error RocksDB has.
_PROBE_KEY = SPACES["meta"] + b"probe"


def _corruption(exc: BaseException) -> bool:
    return "Corruption" in str(exc)


def _background_errors(db: Rdict) -> int:
    try:
        return db.property_int_value("rocksdb.background-errors") or 0
    except Exception:
        return 0


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], Exception)


def _open_when_released(path: Path, opts: Options | None) -> Rdict:
    """Open ``path``; while the process still holds the LOCK of the database that was
    there (an iterator another thread is reading a page with keeps it open until it
    drops it), try again for a few seconds."""
    import gc

    deadline = time.monotonic() + 5.0
    while True:
        try:
            return Rdict(str(path), opts)
        except Exception as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            gc.collect()
            time.sleep(0.02)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_salvage(path: Path) -> None:
    """At open: a salvage's copy left beside the datastore. Complete (its mark written)
    and the datastore gone: the crash came between the renames, so put it in place;
    otherwise the copy was cut short and the old database is still there: drop the copy."""
    fresh = path.with_name(path.name + _FRESH)
    if not fresh.exists():
        return
    if (fresh / SALVAGE_MARK).exists() and not path.exists():
        os.rename(fresh, path)
        (path / SALVAGE_MARK).unlink(missing_ok=True)
        log.warning("datastore %s: put the salvaged copy in place (p2pd stopped during the "
                    "swap)", path)
        return
    shutil.rmtree(fresh, ignore_errors=True)
