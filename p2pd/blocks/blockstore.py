"""The verifying blockstore: blocks in the datastore, a byte-bounded LRU in front.

Layout in the datastore (see :mod:`p2pd.store`):

* ``/blocks/<multihash>`` -> the block's bytes, nothing else;
* ``/blockinfo/<multihash>`` -> ``varint(codec) varint(size)``, written in the
  same batch as the block, so :meth:`Blockstore.size`, :meth:`~Blockstore.has`
  and :meth:`~Blockstore.cids` read a few bytes instead of whole blocks.

Blocks are keyed by **multihash**, not by CID (as kubo's blockstore does): a
block's bytes do not depend on the CID version or codec naming it, so
``Qm...`` (v0, dag-pb) and ``bafy...`` (v1, dag-pb) of the same node, or a raw
and a dag-pb CID of the same bytes, share one stored block. The codec of the
most recent ``put`` is kept in ``/blockinfo/`` and :meth:`~Blockstore.cids`
yields CIDv1 with that codec.

Verification: every block is hashed before it is written, and a block whose
bytes do not match its CID raises :class:`InvalidBlock` with nothing written
(for :meth:`~Blockstore.put_many`, nothing of the whole batch). Every block
read from disk is hashed again before it is served: a mismatch (disk rot, a
bad copy, tampering) raises :class:`CorruptBlock`, is logged, and the bad
bytes are moved to ``/quarantine/<multihash>`` in one batch with the removal
of the block and its info. The block then simply reads as missing, so
:meth:`~Blockstore.has` is false and Bitswap fetches a good copy from peers,
while the bad bytes stay for inspection until the next put of that block. A block
RocksDB itself cannot read back (a damaged table file fails its checksum) is also a
:class:`CorruptBlock`; its keys are removed, so it too reads as missing (a block whose
small index entry is what cannot be read just reads as missing, nothing deleted).
Cache hits are not re-hashed: they were verified when they entered the cache.

Identity-multihash CIDs carry their block inline; they are never stored, and
reading one serves the inline bytes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .. import native
from ..errors import (
    BlockNotFound,
    CorruptBlock,
    InvalidBlock,
    InvalidCID,
    InvalidVarint,
    StoreError,
    StoreFull,
)
from ..store import Datastore
from ..varint import decode_uvarint, encode_uvarint
from . import multihash
from .cid import CID, CIDLike
from .multicodec import Codec, HashCode

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

#: Default bound of the in-memory cache, in block bytes.
DEFAULT_CACHE_BYTES = 64 << 20
#: Largest block accepted. Bitswap peers refuse blocks over 2 MiB and kubo's
#: chunker stops at 1 MiB; 4 MiB leaves room without letting one put eat memory.
MAX_BLOCK_SIZE = 4 << 20


class ByteLRU:
    """Least-recently-used map from multihash to block bytes, bounded by total bytes.

    Thread-safe: the importer writes from worker threads and trio code may read
    through ``trio.to_thread``. A block larger than the whole bound is not
    cached (it would evict everything and then itself).
    """

    __slots__ = ("capacity", "used", "_items", "_lock")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0 bytes, not {capacity}")
        self.capacity = capacity
        self.used = 0
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: bytes, value: bytes) -> None:
        size = len(value)
        if size > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = value
            self.used += size
            while self.used > self.capacity:
                _k, evicted = self._items.popitem(last=False)
                self.used -= len(evicted)

    def discard(self, key: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0


class BulkWriter:
    """What :meth:`Blockstore.bulk` yields: unlogged ``put_many`` (verified unless the
    writer was opened ``prehashed``)."""

    __slots__ = ("_bs", "_prehashed")

    def __init__(self, blockstore: Blockstore, prehashed: bool = False) -> None:
        self._bs = blockstore
        self._prehashed = prehashed

    def put_many(self, blocks: Iterable[tuple[CIDLike, Buffer]]) -> int:
        return self._bs.put_many(blocks, _logged=False, prehashed=self._prehashed)


class Blockstore:
    """Verified blocks by CID over a :class:`~p2pd.store.Datastore`.

    The blockstore does not own the datastore: :meth:`close` drops the cache
    and refuses further use, and whoever opened the datastore closes it.
    Not truthy-by-size on purpose (no ``__len__``): counting is a scan, see
    :meth:`count`.
    """

    def __init__(
        self,
        datastore: Datastore,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_block_size: int = MAX_BLOCK_SIZE,
    ) -> None:
        self._ds: Datastore | None = datastore
        self._blocks = datastore.blocks
        self._info = datastore.blockinfo
        self._quarantine = datastore.quarantine
        self.cache = ByteLRU(cache_bytes)
        self.max_block_size = max_block_size
        #: blocks whose unreadable index entry was already logged
        self._reported: set[bytes] = set()
        #: blocks a salvage of the datastore dropped (damaged on disk), newest last; they
        #: read as missing, so Bitswap fetches them again
        self.salvage_dropped: list[CID] = []
        datastore.checkers["blocks"] = _block_matches
        datastore.checkers["blockinfo"] = _info_parses
        datastore.after_salvage.append(self._after_salvage)

    # -- writing ------------------------------------------------------------------------
    def put(self, cid: CIDLike, data: Buffer) -> None:
        """Verify ``data`` against ``cid`` and store it; durable when this returns."""
        self.put_many([(cid, data)])

    @contextlib.contextmanager
    def bulk(self, *, prehashed: bool = False) -> Iterator[BulkWriter]:
        """A writer for many blocks at once (an import): durable all together at the end.

        Its ``put_many`` verifies exactly like :meth:`put_many` but skips the WAL;
        leaving the ``with`` block normally flushes the memtables, after which every
        block written through it survives a crash. Until then nothing written through
        it is acknowledged, so write what points at the blocks (a pin, a root) after
        the ``with`` block. On an exception the blocks written so far are still
        flushed (they are valid blocks; garbage collection removes them if unpinned),
        except on :class:`StoreFull`: the disk is full and the flush would fail too.

        ``prehashed=True`` is for a caller whose CIDs were computed from these very
        bytes by :mod:`p2pd.native` a moment before, in this process (the UnixFS
        importer, Bitswap's decoder): hashing them a second time proves nothing new, so
        it is skipped. Sizes and identity CIDs are still checked. Bytes from anywhere
        else (a client's block put, a peer's claim of a CID) always take the verified path.
        """
        ds = self._live()
        reopens = ds.reopens
        try:
            yield BulkWriter(self, prehashed)
        except StoreFull:
            raise  # flushing would only meet the full disk again; nothing here is acked
        except BaseException:
            ds.flush()
            raise
        ds.flush()
        if ds.reopens != reopens:
            raise StoreFull(
                f"the disk holding datastore {ds.path} filled up during this write and the "
                "database was reopened, which dropped the blocks written before; nothing of "
                "this write is kept: retry it"
            )

    def put_many(self, blocks: Iterable[tuple[CIDLike, Buffer]], *, _logged: bool = True,
                 prehashed: bool = False) -> int:
        """Verify and store many blocks in one atomic write; return how many were given.

        All blocks are hashed with one native call before anything is written;
        if any block is invalid, :class:`InvalidBlock` names it and none of the
        batch is stored. Buffers may be memoryviews the caller reuses after this
        returns: the datastore copies them. ``prehashed``: see :meth:`bulk`.
        """
        ds = self._live()
        items = list(blocks)
        cids: list[CID] = []
        digests: list[bytes] = []
        hashed: list[Buffer] = []
        hashed_cids: list[CID] = []
        for raw_cid, data in items:
            cid = _cid(raw_cid)
            cids.append(cid)
            size = memoryview(data).nbytes
            if size > self.max_block_size:
                raise InvalidBlock(
                    f"block {cid} has {size} bytes, more than the {self.max_block_size} "
                    "bytes a block may have; nothing was stored"
                )
            code, digest = multihash.decode_exact(cid.multihash)
            if code is HashCode.IDENTITY:
                if bytes(data) != digest:
                    raise InvalidBlock(
                        f"block bytes do not match identity CID {cid}; nothing was stored"
                    )
                continue
            digests.append(digest)
            hashed.append(data)
            hashed_cids.append(cid)
        if hashed and not prehashed:
            bad = native.sha256_mismatches(digests, hashed)
            if bad:
                first = hashed_cids[bad[0]]
                more = f" (and {len(bad) - 1} more in the batch)" if len(bad) > 1 else ""
                raise InvalidBlock(
                    f"block bytes do not match CID {first}{more}; nothing was stored"
                )
        with ds.batch(logged=_logged) as batch:
            for cid, data in zip(hashed_cids, hashed, strict=True):
                mh = cid.multihash
                batch.put(self._blocks, mh, data)
                batch.put(self._info, mh, _info(cid.codec, memoryview(data).nbytes))
                batch.delete(self._quarantine, mh)
        return len(items)

    def delete(self, cid: CIDLike) -> None:
        """Remove a block; removing an absent (or identity) block is not an error."""
        ds = self._live()
        cid = _cid(cid)
        if _is_identity(cid):
            return
        mh = cid.multihash
        self.cache.discard(mh)
        with ds.batch() as batch:
            batch.delete(self._blocks, mh)
            batch.delete(self._info, mh)

    # -- reading ------------------------------------------------------------------------
    def get(self, cid: CIDLike) -> bytes:
        """The verified bytes of ``cid``'s block.

        Raises :class:`BlockNotFound` when absent and :class:`CorruptBlock` when
        the stored bytes no longer match (the block is then quarantined).
        """
        self._live()
        cid = _cid(cid)
        code, digest = multihash.decode_exact(cid.multihash)
        if code is HashCode.IDENTITY:
            return digest
        mh = cid.multihash
        cached = self.cache.get(mh)
        if cached is not None:
            return cached
        try:
            data = self._blocks.get(mh)
        except StoreError as exc:
            if "Corruption" not in str(exc):
                raise
            self._drop_unreadable(cid, exc)
            raise CorruptBlock(
                f"block {cid} is unreadable on disk (RocksDB found its file damaged); it was "
                "not served and was removed (fetch it again from the network)"
            ) from None
        if data is None:
            raise BlockNotFound(f"block {cid} is not in the blockstore")
        if native.sha256(data) != digest:
            self._quarantine_block(cid, data)
            raise CorruptBlock(
                f"block {cid} on disk does not match its CID; it was not served and was "
                "moved to quarantine (fetch it again from the network)"
            )
        self.cache.put(mh, data)
        return data

    def has(self, cid: CIDLike) -> bool:
        self._live()
        cid = _cid(cid)
        if _is_identity(cid):
            return True
        mh = cid.multihash
        if mh in self.cache:
            return True
        try:
            return self._info.has(mh)
        except StoreError as exc:  # its index entry is in a damaged table file
            if "Corruption" not in str(exc):
                raise
            self._index_unreadable(cid, exc)
            return False

    def size(self, cid: CIDLike) -> int:
        """The block's length in bytes, without reading or hashing the block."""
        self._live()
        cid = _cid(cid)
        code, digest = multihash.decode_exact(cid.multihash)
        if code is HashCode.IDENTITY:
            return len(digest)
        mh = cid.multihash
        cached = self.cache.get(mh)
        if cached is not None:
            return len(cached)
        try:
            info = self._info.get(mh)
        except StoreError as exc:
            if "Corruption" not in str(exc):
                raise
            self._index_unreadable(cid, exc)
            info = None
        if info is None:
            raise BlockNotFound(f"block {cid} is not in the blockstore")
        return _parse_info(info, mh)[1]

    def cids(self) -> Iterator[CID]:
        """Every stored block as a CIDv1 with the codec it was last put under.

        Key order (by multihash), not insertion order. Index entries that do not
        parse are logged and skipped.
        """
        self._live()
        for mh, info in self._info.items():
            try:
                codec, _size = _parse_info(info, mh)
                multihash.decode_exact(mh)
            except (InvalidCID, CorruptBlock) as exc:
                log.error("blockstore: skipping bad index entry %s: %s", mh.hex(), exc)
                continue
            yield CID(1, codec, mh)

    def usage(self) -> tuple[int, int]:
        """``(blocks, bytes)`` stored, from the small index (a scan: O(blocks))."""
        self._live()
        blocks = total = 0
        for mh, info in self._info.items():
            try:
                total += _parse_info(info, mh)[1]
            except CorruptBlock:
                continue
            blocks += 1
        return blocks, total

    def count(self) -> int:
        """Number of stored blocks (a scan over the small index: O(blocks))."""
        self._live()
        return self._info.count()

    def close(self) -> None:
        """Drop the cache and refuse further use; idempotent. The datastore stays open."""
        self._ds = None
        self.cache.clear()

    @property
    def closed(self) -> bool:
        return self._ds is None

    # -- internals ----------------------------------------------------------------------
    def _live(self) -> Datastore:
        ds = self._ds
        if ds is None:
            raise StoreError("the blockstore is closed")
        return ds

    def _quarantine_block(self, cid: CID, data: bytes) -> None:
        mh = cid.multihash
        self.cache.discard(mh)
        log.error(
            "blockstore: block %s is corrupt on disk (%d bytes do not hash to its CID); "
            "quarantined, not served",
            cid,
            len(data),
        )
        try:
            with self._live().batch() as batch:
                batch.put(self._quarantine, mh, data)
                batch.delete(self._blocks, mh)
                batch.delete(self._info, mh)
        except Exception:  # the CorruptBlock being raised matters more than the cleanup
            log.exception("blockstore: could not quarantine corrupt block %s", cid)


    def _after_salvage(self, report: dict) -> None:
        """The datastore was salvaged (a damaged table file): the blocks it dropped read as
        missing, and are said; a copy still in the cache (verified when it entered) is
        written back; the small index is mended (an entry without its block goes, a block
        without its entry gets one)."""
        prefix = self._blocks.prefix
        dropped = [bytes.fromhex(k)[len(prefix):] for k in report.get("dropped_keys", ())
                   if bytes.fromhex(k).startswith(prefix)]
        for mh in dropped:
            cid = CID(1, Codec.RAW, mh)
            cached = self.cache.get(mh)
            if cached is not None:
                with contextlib.suppress(Exception):
                    self.put(cid, cached)
                    log.warning("blockstore: block %s was damaged on disk; written back "
                                "from the cache", cid)
                    continue
            self.salvage_dropped.append(cid)
            del self.salvage_dropped[:-1000]
            log.error("blockstore: block %s was damaged on disk and is dropped; it reads as "
                      "missing (fetched again from peers when wanted)", cid)
        blocks = set(self._blocks.keys())
        infos = set(self._info.keys())
        with self._live().batch() as batch:
            for mh in infos - blocks:
                batch.delete(self._info, mh)
            for mh in blocks - infos:
                data = self._blocks.get(mh) or b""
                batch.put(self._info, mh, _info(_guess_codec(data), len(data)))
        if infos ^ blocks:
            log.warning("blockstore: index mended after the salvage: %d entries without "
                        "their block removed, %d added", len(infos - blocks),
                        len(blocks - infos))

    def _drop_unreadable(self, cid: CID, exc: Exception) -> None:
        """A block RocksDB cannot read back (a checksum mismatch in its table file): no
        bytes to quarantine, so only the keys go, and the block reads as missing."""
        mh = cid.multihash
        self.cache.discard(mh)
        log.error("blockstore: block %s is unreadable on disk (%s); removed, not served",
                  cid, exc)
        try:
            with self._live().batch() as batch:
                batch.delete(self._blocks, mh)
                batch.delete(self._info, mh)
        except StoreError as err:  # RocksDB stopped writing (a compaction met the damage)
            log.warning("blockstore: could not remove unreadable block %s: %s", cid, err)

    def _index_unreadable(self, cid: CID, exc: Exception) -> None:
        """The small index entry of a block sits in a damaged table file: the block reads
        as missing (a fetch stores it again, which mends the entry). Nothing is deleted:
        the block's bytes may well be in a good part of the file. Said once per block."""
        mh = cid.multihash
        if mh in self._reported:
            return
        if len(self._reported) < 10_000:
            self._reported.add(mh)
        log.error("blockstore: the index entry of block %s is unreadable on disk (%s); "
                  "the block reads as missing", cid, exc)


def _cid(value: CIDLike) -> CID:
    return CID.decode(value)


def _is_identity(cid: CID) -> bool:
    return cid.multihash[0] == HashCode.IDENTITY


def _info(codec: int, size: int) -> bytes:
    return encode_uvarint(codec) + encode_uvarint(size)


def _parse_info(info: bytes, mh: bytes) -> tuple[Codec, int]:
    try:
        code, pos = decode_uvarint(info)
        size, pos = decode_uvarint(info, pos)
        if pos != len(info):
            raise InvalidVarint("trailing bytes")
        return Codec(code), size
    except (InvalidVarint, ValueError) as exc:
        raise CorruptBlock(
            f"block index entry for multihash {mh.hex()} is corrupt: {exc}"
        ) from None


def _block_matches(mh: bytes, data: bytes) -> bool:
    """A salvage's check of a stored block: its bytes hash to its multihash."""
    try:
        code, digest = multihash.decode_exact(mh)
    except (InvalidCID, ValueError):
        return False
    if code is HashCode.SHA2_256:
        return native.sha256(data) == digest
    return code is HashCode.IDENTITY and data == digest


def _info_parses(mh: bytes, info: bytes) -> bool:
    try:
        _parse_info(info, mh)
    except CorruptBlock:
        return False
    return True


def _guess_codec(data: bytes) -> Codec:
    """The codec of a block whose index entry was lost: dag-pb if it decodes as a node
    with links or UnixFS data, else raw."""
    from .dagpb import decode_node

    try:
        node = decode_node(data)
    except Exception:
        return Codec.RAW
    return Codec.DAG_PB if node.links or node.data is not None else Codec.RAW
