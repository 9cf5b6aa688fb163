"""UnixFS importer: files and directories -> dag-pb/raw blocks, kubo-compatible CIDs.

Layout (what ``ipfs add`` and ipfs-unixfs-importer build with the balanced
layout; docs/unixfs.md has the details):

* fixed-size chunks (default 256 KiB); a file that fits in one chunk is that
  single leaf (the root *is* the leaf); an empty file is one empty leaf;
* leaves are grouped, in order, into parents of up to ``max_links`` (174)
  links; those parents are grouped the same way, level by level, until one
  node is left. Every full group of ``max_links`` becomes a parent as soon as
  it fills, so the builder streams with O(depth x max_links) state;
* a parent is a UnixFS File node: ``blocksizes`` lists each child's content
  bytes, links have an empty Name and Tsize = the child's cumulative size;
* a directory is a UnixFS Directory node with one named link per entry, links
  sorted by the names' UTF-8 bytes.

Options follow kubo's CLI: ``cid_version`` 0 or 1, ``raw_leaves`` defaulting
to true exactly when ``cid_version`` is 1. Raw leaves are always CIDv1 (there is
no CIDv0 for the raw codec), so ``cid_version=0, raw_leaves=True`` gives v0
parents over v1 leaves, as kubo does.

Hot path: the file is read in large buffers (:data:`READ_BUFFER`), all chunks of
a buffer are hashed with one :func:`p2pd.native.sha256_chunks` call (the native
core releases the GIL) in a worker thread while the caller's thread writes the
previous buffer's blocks with one ``sink.put_many`` call. Raw leaves are
memoryview slices of the read buffer, never copied here.
"""

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from .. import native
from ..errors import InvalidUnixFS
from . import dagpb, unixfs
from .chunker import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, parse_chunker  # noqa: F401 (also here)
from .cid import CID
from .multicodec import Codec

DEFAULT_MAX_LINKS = 174
#: Bytes read (and hashed) per step, rounded to whole chunks. Measured here: 8 MiB beats
#: 4, 16 and 32 MiB both hashing-only and into RocksDB (stays in cache, smaller batches).
READ_BUFFER = 8 << 20
#: Estimated directory node size above which kubo and js switch to a HAMT shard.
SHARD_THRESHOLD = 262_144

Block = tuple[CID, bytes | memoryview]


class BlockSink(Protocol):
    """Where imported blocks go: the blockstore, or anything with ``put_many``.

    Block bytes may be memoryviews into the importer's reused read buffers: they
    are valid until ``put_many`` returns, so a sink that keeps them must copy them
    (writing them to RocksDB does).
    """

    def put_many(self, blocks: Iterable[Block], /) -> object: ...


@dataclass(slots=True)
class ImportOptions:
    """How to chunk and link; defaults are ``ipfs add``'s."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    cid_version: int = 0
    raw_leaves: bool | None = None
    max_links: int = DEFAULT_MAX_LINKS
    read_buffer: int = READ_BUFFER

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, not {self.cid_version}")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes, not {self.chunk_size}")
        if not 2 <= self.max_links <= dagpb.MAX_LINKS:
            raise ValueError(f"max_links must be 2..{dagpb.MAX_LINKS}, not {self.max_links}")
        if self.raw_leaves is None:
            self.raw_leaves = self.cid_version == 1

    @property
    def buffer_bytes(self) -> int:
        return max(1, self.read_buffer // self.chunk_size) * self.chunk_size

    def node_cid(self, block: bytes) -> CID:
        """CID of a dag-pb node we built."""
        return _dagpb_cid(native.sha256(block), self.cid_version)


@dataclass(slots=True)
class ImportResult:
    """Root of one imported file or directory."""

    cid: CID
    #: Content bytes (the file's length; a directory's files added up).
    size: int
    #: Cumulative DAG size: every block under the root, as a parent's link Tsize counts it.
    tsize: int
    #: Blocks produced (written to the sink unless only hashing).
    blocks: int
    path: str = ""


@dataclass(slots=True)
class _Child:
    cid: CID
    tsize: int
    content: int


_SHA256_MH = b"\x12\x20"


def _dagpb_cid(digest: bytes, version: int) -> CID:
    mh = _SHA256_MH + digest
    return CID(0, Codec.DAG_PB, mh) if version == 0 else CID(1, Codec.DAG_PB, mh)


@dataclass(slots=True)
class BalancedLayout:
    """Sans-IO balanced DAG builder: fed leaves in order, returns parent blocks to store.

    ``push`` takes one leaf and returns any parent blocks that became complete;
    ``finish`` closes the partial groups bottom-up and returns the root. The
    shape equals the reference: leaves grouped by ``max_links``, then the
    parents, and so on, until one node remains (a lone leaf is its own root).
    """

    options: ImportOptions
    levels: list[list[_Child]] = field(default_factory=lambda: [[]])
    counts: list[int] = field(default_factory=lambda: [0])
    blocks: int = 0

    def push(self, cid: CID, tsize: int, content: int, out: list[Block]) -> None:
        self._push(0, _Child(cid, tsize, content), out)

    def _push(self, level: int, child: _Child, out: list[Block]) -> None:
        if level == len(self.levels):
            self.levels.append([])
            self.counts.append(0)
        group = self.levels[level]
        group.append(child)
        self.counts[level] += 1
        self.blocks += 1
        if len(group) == self.options.max_links:
            self.levels[level] = []
            self._push(level + 1, self._parent(group, out), out)

    def _parent(self, children: list[_Child], out: list[Block]) -> _Child:
        data = unixfs.encode(
            unixfs.UnixFSData(unixfs.DataType.FILE, blocksizes=tuple(c.content for c in children))
        )
        links = [dagpb.PBLink(c.cid, "", c.tsize) for c in children]
        block = dagpb.encode(links, data)
        cid = self.options.node_cid(block)
        out.append((cid, block))
        return _Child(
            cid, len(block) + sum(c.tsize for c in children), sum(c.content for c in children)
        )

    def finish(self, out: list[Block]) -> _Child:
        if self.counts[0] == 0:
            raise ValueError("a file has at least one leaf (an empty file has one empty leaf)")
        level = 0
        while self.counts[level] != 1:
            group = self.levels[level]
            if group:
                self.levels[level] = []
                self._push(level + 1, self._parent(group, out), out)
            level += 1
        (root,) = self.levels[level]
        return root


def _fill(fh: BinaryIO, buf: memoryview) -> int:
    """Read into ``buf`` until it is full or the file ends; return the byte count.

    Pipes and sockets return short reads, so one ``readinto`` is not enough.
    """
    got = 0
    size = len(buf)
    readinto = getattr(fh, "readinto", None)
    while got < size:
        if readinto is not None:
            n = readinto(buf[got:])
        else:
            piece = fh.read(size - got)
            n = len(piece) if piece is not None else None
            if n:
                buf[got : got + n] = piece
        if n is None:
            raise OSError("non-blocking file returned no data; pass a blocking file")
        if n == 0:
            break
        got += n
    return got


#: Buffers at least this big are hashed on two threads when the machine has two cores.
_SPLIT_MIN = 4 << 20


class _Reader:
    """Reads buffers and hashes their leaves one buffer ahead, off the caller's thread.

    Two buffers are reused in turn (a fresh multi-MiB allocation per step costs more in
    page faults than the read itself): while the caller writes the blocks of one,
    the worker fills and hashes the other. The order in :meth:`__iter__` (take
    result k, submit k+1, hand k to the caller) guarantees the worker never refills
    a buffer the caller is still writing.
    """

    def __init__(self, fh: BinaryIO, options: ImportOptions, pool: ThreadPoolExecutor) -> None:
        self.fh = fh
        self.options = options
        self.pool = pool
        self.split = (os.cpu_count() or 1) > 1
        size = options.buffer_bytes
        with contextlib.suppress(AttributeError, OSError, ValueError):
            # A small file needs no full-size buffers (faulting them in costs more than the file).
            left = os.fstat(fh.fileno()).st_size - fh.tell()
            if stat.S_ISREG(os.fstat(fh.fileno()).st_mode) and left >= 0:
                size = min(size, max(1, -(-(left + 1) // options.chunk_size)) * options.chunk_size)
        self.buffers = [memoryview(bytearray(size)), memoryview(bytearray(size))]

    def _hash(self, data: memoryview) -> list[bytes]:
        chunk = self.options.chunk_size
        if not self.split or len(data) < _SPLIT_MIN:
            return native.sha256_chunks(data, chunk)
        half = (len(data) // chunk // 2) * chunk
        second = self.pool.submit(native.sha256_chunks, data[half:], chunk)
        first = native.sha256_chunks(data[:half], chunk)
        return first + second.result()

    def _step(self, k: int) -> tuple[memoryview, list[bytes], list[bytes] | None]:
        buf = self.buffers[k % 2]
        data = buf[: _fill(self.fh, buf)]
        if self.options.raw_leaves:
            return data, self._hash(data), None
        leaves = _dagpb_leaves(data, self.options.chunk_size)
        return data, native.sha256_many(leaves), leaves

    def __iter__(self) -> Iterator[tuple[memoryview, list[bytes], list[bytes] | None]]:
        k = 0
        pending: Future = self.pool.submit(self._step, k)
        while True:
            data, digests, leaves = pending.result()
            if not data:
                return
            k += 1
            pending = self.pool.submit(self._step, k)
            yield data, digests, leaves


def _dagpb_leaves(mv: memoryview, chunk_size: int) -> list[bytes]:
    """dag-pb File leaves (fresh bytes) for each chunk of ``mv``."""
    full = len(mv) // chunk_size
    out: list[bytes] = []
    if full:
        prefix, suffix = unixfs.file_leaf_prefix(chunk_size)
        for i in range(full):
            out.append(b"".join((prefix, mv[i * chunk_size : (i + 1) * chunk_size], suffix)))
    rest = len(mv) - full * chunk_size
    if rest:
        prefix, suffix = unixfs.file_leaf_prefix(rest)
        out.append(b"".join((prefix, mv[full * chunk_size :], suffix)))
    return out


def _empty_leaf(options: ImportOptions) -> tuple[CID, bytes]:
    if options.raw_leaves:
        return CID(1, Codec.RAW, _SHA256_MH + native.sha256(b"")), b""
    prefix, suffix = unixfs.file_leaf_prefix(0)
    block = prefix + suffix
    return _dagpb_cid(native.sha256(block), options.cid_version), block


def import_file(
    source: str | os.PathLike[str] | BinaryIO,
    sink: BlockSink | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cid_version: int = 0,
    raw_leaves: bool | None = None,
    max_links: int = DEFAULT_MAX_LINKS,
    read_buffer: int = READ_BUFFER,
) -> ImportResult:
    """Import one file (a path or a binary file object) into ``sink``.

    With ``sink=None`` nothing is stored (``ipfs add --only-hash``). Blocks go to
    the sink with one ``put_many`` per read buffer; parents of a buffer follow
    their leaves, and the root is always in the last call, so a reader that finds
    the root finds everything under it.
    """
    options = ImportOptions(chunk_size, cid_version, raw_leaves, max_links, read_buffer)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=0) as fh:
            return _import_stream(fh, sink, options, os.fspath(source))
    return _import_stream(source, sink, options, "")


def _import_stream(
    fh: BinaryIO, sink: BlockSink | None, options: ImportOptions, path: str
) -> ImportResult:
    layout = BalancedLayout(options)
    chunk = options.chunk_size
    size = 0
    with ThreadPoolExecutor(2, thread_name_prefix="p2pd-import") as pool:
        for buf, digests, leaves in _Reader(fh, options, pool):
            out: list[Block] = []
            n = len(buf)
            if leaves is None:
                for i, digest in enumerate(digests):
                    start = i * chunk
                    leaf = buf[start : start + chunk]
                    # Skip CID.v1's multihash re-validation: we built it from a digest.
                    cid = CID(1, Codec.RAW, _SHA256_MH + digest)
                    out.append((cid, leaf))
                    layout.push(cid, len(leaf), len(leaf), out)
            else:
                for i, (digest, block) in enumerate(zip(digests, leaves, strict=True)):
                    cid = _dagpb_cid(digest, options.cid_version)
                    out.append((cid, block))
                    content = min(chunk, n - i * chunk)
                    layout.push(cid, len(block), content, out)
            size += n
            if sink is not None:
                sink.put_many(out)
    out = []
    if layout.counts[0] == 0:
        cid, block = _empty_leaf(options)
        out.append((cid, block))
        layout.push(cid, len(block), 0, out)
    root = layout.finish(out)
    if sink is not None and out:
        sink.put_many(out)
    return ImportResult(root.cid, size, root.tsize, layout.blocks, path)


def import_path(
    path: str | os.PathLike[str],
    sink: BlockSink | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cid_version: int = 0,
    raw_leaves: bool | None = None,
    max_links: int = DEFAULT_MAX_LINKS,
    read_buffer: int = READ_BUFFER,
    on_entry: Callable[[str, ImportResult], object] | None = None,
) -> ImportResult:
    """Import a file or, recursively, a directory (``ipfs add -r``).

    Symlinks and special files are refused rather than silently followed or
    skipped: a CID must describe exactly what the user pointed at. Directories
    large enough that kubo would shard them (HAMT) are refused too, since the
    CID would differ from kubo's.

    ``on_entry(name, result)`` is called for every file and directory once it is
    imported, children before their directory (so the root comes last), ``name``
    being the path from the root's own name down (``tree/sub/b.txt``), as
    ``ipfs add`` prints them.
    """
    kwargs = dict(
        chunk_size=chunk_size,
        cid_version=cid_version,
        raw_leaves=raw_leaves,
        max_links=max_links,
        read_buffer=read_buffer,
    )
    options = ImportOptions(chunk_size, cid_version, raw_leaves, max_links, read_buffer)
    path = os.fspath(path)
    if os.path.islink(path):
        raise InvalidUnixFS(f"{path} is a symlink; symlinks are not imported yet")
    name = os.path.basename(os.path.normpath(path))
    if not os.path.isdir(path):
        if not stat.S_ISREG(os.stat(path).st_mode):
            # A FIFO or a device would block the reading thread for good (and with it
            # whoever waits for the import, such as the daemon's gc).
            raise InvalidUnixFS(f"{path} is not a regular file or directory")
        result = import_file(path, sink, **kwargs)  # type: ignore[arg-type]
        if on_entry is not None:
            on_entry(name, result)
        return result
    return _import_dir(path, sink, options, kwargs, name, on_entry)


def _import_dir(
    path: str, sink: BlockSink | None, options: ImportOptions, kwargs: dict,
    name: str = "", on_entry: Callable[[str, ImportResult], object] | None = None,
) -> ImportResult:
    links: list[dagpb.PBLink] = []
    size = 0
    blocks = 0
    estimate = 0
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)  # as kubo walks (and prints) them
    for entry in entries:
        try:
            name_bytes = entry.name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidUnixFS(
                f"{entry.path!r}: file name is not valid UTF-8; UnixFS names are UTF-8"
            ) from None
        if entry.is_symlink():
            raise InvalidUnixFS(f"{entry.path} is a symlink; symlinks are not imported yet")
        entry_name = f"{name}/{entry.name}" if name else entry.name
        if entry.is_dir():
            child = _import_dir(entry.path, sink, options, kwargs, entry_name, on_entry)
        elif entry.is_file():
            child = import_file(entry.path, sink, **kwargs)
            if on_entry is not None:
                on_entry(entry_name, child)
        else:
            raise InvalidUnixFS(f"{entry.path} is not a regular file or directory")
        links.append(dagpb.PBLink(child.cid, entry.name, child.tsize))
        size += child.size
        blocks += child.blocks
        estimate += len(name_bytes) + len(bytes(child.cid))
    if estimate > SHARD_THRESHOLD:
        raise InvalidUnixFS(
            f"{path}: directory too large for one node ({len(links)} entries); kubo would "
            "shard it (HAMT), which p2pd does not build yet"
        )
    data = unixfs.encode(unixfs.UnixFSData(unixfs.DataType.DIRECTORY))
    block = dagpb.encode(dagpb.sort_links(links), data)
    cid = options.node_cid(block)
    if sink is not None:
        sink.put_many([(cid, block)])
    tsize = len(block) + sum(link.tsize or 0 for link in links)
    result = ImportResult(cid, size, tsize, blocks + 1, path)
    if on_entry is not None:
        on_entry(name, result)
    return result
