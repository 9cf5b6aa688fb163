"""UnixFS exporter: a CID in a block store -> the exact file bytes or directory tree.

Everything read is treated as untrusted (blocks may have come from any peer):

* every block is checked against its CID (``verify=True``; a caller whose store
  already verifies on ``get`` may turn it off) -> :class:`CorruptBlock`;
* every node is decoded by the strict codecs and its UnixFS sizes are checked
  against its links; each child's content must be exactly the size its parent's
  ``blocksizes`` promise, so a stream never yields more or fewer bytes than the
  root's ``filesize`` -> :class:`InvalidUnixFS` / :class:`InvalidDagPB`;
* the DAG depth is bounded by :data:`MAX_DEPTH`;
* directory entry names that could escape the destination (``/``, ``..``,
  ``.``, NUL, empty) are refused before anything is written under them.

HAMT-sharded directories and symlinks are not exported yet and are refused
with a message saying so.
"""

import os
from collections.abc import Iterator
from typing import Protocol

from ..errors import CorruptBlock, InvalidUnixFS
from . import dagpb, unixfs
from .cid import CID
from .multicodec import Codec

#: Deepest DAG we follow. A 174-wide balanced tree of depth 8 already spans
#: exabytes of 256 KiB chunks; anything deeper is a malformed or hostile DAG.
MAX_DEPTH = 32


class BlockSource(Protocol):
    """Anything that returns a block's bytes by CID (the blockstore)."""

    def get(self, cid: CID, /) -> bytes: ...


def _fetch(store: BlockSource, cid: CID, verify: bool) -> bytes:
    block = store.get(cid)
    if verify and not cid.verify(block):
        raise CorruptBlock(f"block {cid} does not match its CID; it was not used")
    return block


def _node(cid: CID, block: bytes) -> tuple[dagpb.PBNode, unixfs.UnixFSData]:
    if cid.codec != Codec.DAG_PB:
        raise InvalidUnixFS(f"{cid} is a {cid.codec.name} block, not a UnixFS (dag-pb) node")
    node = dagpb.decode_node(block)
    return node, unixfs.decode_node(node)


def stat(store: BlockSource, cid: CID, *, verify: bool = True) -> unixfs.UnixFSData:
    """The UnixFS metadata of ``cid`` (a raw block reads as a Raw node holding its bytes)."""
    block = _fetch(store, cid, verify)
    if cid.codec == Codec.RAW:
        return unixfs.UnixFSData(unixfs.DataType.RAW, data=block, filesize=len(block))
    return _node(cid, block)[1]


def export_file(store: BlockSource, cid: CID, *, verify: bool = True) -> Iterator[bytes]:
    """Yield the content of the file ``cid`` in order, checking every block on the way."""
    # Stack of (cid, content size the parent promised or None for the root, depth),
    # children pushed in reverse so they pop in order.
    stack: list[tuple[CID, int | None, int]] = [(cid, None, 0)]
    while stack:
        current, expected, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidUnixFS(f"UnixFS DAG under {cid} is deeper than {MAX_DEPTH} levels")
        block = _fetch(store, current, verify)
        if current.codec == Codec.RAW:
            if expected is not None and len(block) != expected:
                raise InvalidUnixFS(
                    f"raw leaf {current} holds {len(block)} bytes, its parent says {expected}"
                )
            if block:
                yield block
            continue
        node, msg = _node(current, block)
        if not msg.is_file:
            if msg.type is unixfs.DataType.DIRECTORY and depth == 0:
                raise InvalidUnixFS(f"{current} is a directory; export it with export_path")
            raise InvalidUnixFS(f"{current} is a {msg.type.name} node, not file content")
        if expected is not None and msg.content_size() != expected:
            raise InvalidUnixFS(
                f"node {current} holds {msg.content_size()} content bytes, its parent says "
                f"{expected}"
            )
        if msg.data:
            yield msg.data
        for link, size in zip(reversed(node.links), reversed(msg.blocksizes), strict=True):
            stack.append((link.cid, size, depth + 1))


def _check_name(name: str | None, parent: CID) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name or "\\" in name:
        raise InvalidUnixFS(
            f"directory {parent} has an entry named {name!r}, which could escape the "
            "destination; refusing to export it"
        )
    return name


def export_path(
    store: BlockSource, cid: CID, dest: str | os.PathLike[str], *, verify: bool = True
) -> int:
    """Write the file or directory tree ``cid`` to ``dest`` (which must not exist).

    Returns the number of content bytes written. Names are checked before use,
    files are created exclusively, so nothing outside ``dest`` is touched.
    """
    dest = os.fspath(dest)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} already exists; export into a new path")
    return _export(store, cid, dest, verify, 0)


def _export(store: BlockSource, cid: CID, dest: str, verify: bool, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise InvalidUnixFS(f"directory tree deeper than {MAX_DEPTH} levels at {cid}")
    if cid.codec == Codec.DAG_PB:
        node, msg = _node(cid, _fetch(store, cid, verify))
        if msg.type is unixfs.DataType.DIRECTORY:
            names = [_check_name(link.name, cid) for link in node.links]
            os.mkdir(dest)
            total = 0
            for link, name in zip(node.links, names, strict=True):
                total += _export(store, link.cid, os.path.join(dest, name), verify, depth + 1)
            return total
        if msg.type is unixfs.DataType.HAMT_SHARD:
            raise InvalidUnixFS(f"{cid} is a HAMT-sharded directory; not supported yet")
        if msg.type is unixfs.DataType.SYMLINK:
            raise InvalidUnixFS(f"{cid} is a symlink; p2pd does not write symlinks")
    written = 0
    with open(dest, "xb") as fh:
        for piece in export_file(store, cid, verify=verify):
            fh.write(piece)
            written += len(piece)
    return written
