"""IPFS paths: ``CID``, ``CID/a/b``, ``/ipfs/CID/a/b``, resolved through UnixFS directories.

Sans-IO: :func:`parse_path` splits the text, :func:`step` takes one directory block (as
fetched by whoever has the network) and a name and returns the entry's CID. The caller
loops, fetching each directory on the way, so the same code serves the CLI (which asks
the daemon for blocks) and anything holding a blockstore.

Everything is untrusted: the text comes from a user, the blocks from any peer. A block
must hash to the CID it is used as; names with ``/`` or NUL cannot be looked up; HAMT
sharded directories are refused with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidCID, InvalidDagPB, InvalidUnixFS, P2PDError
from . import dagpb, unixfs
from .cid import CID
from .multicodec import Codec

#: Deepest path we resolve (segments after the CID).
MAX_SEGMENTS = 64
#: Longest path text accepted.
MAX_PATH_TEXT = 4096


class PathError(P2PDError, ValueError):
    """A path that is malformed or does not lead anywhere; the message says why."""


@dataclass(frozen=True, slots=True)
class IPFSPath:
    root: CID
    segments: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/ipfs/" + "/".join((str(self.root), *self.segments))


def parse_path(text: str) -> IPFSPath:
    """``CID[/name...]`` or ``/ipfs/CID[/name...]`` (empty segments, as from ``a//b`` or a
    trailing ``/``, are dropped)."""
    if not isinstance(text, str):
        raise PathError(f"a path is text, not {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_PATH_TEXT:
        raise PathError(f"path of {len(text)} characters is too long")
    if text.startswith("/ipfs/"):
        text = text[len("/ipfs/"):]
    elif text.startswith("/"):
        kind = text.split("/")[1]
        raise PathError(f"unsupported path namespace /{kind}/: only /ipfs/ paths are resolved")
    first, _, rest = text.partition("/")
    try:
        root = CID.decode(first)
    except InvalidCID as exc:
        raise PathError(str(exc)) from None
    segments = tuple(s for s in rest.split("/") if s)
    if len(segments) > MAX_SEGMENTS:
        raise PathError(f"path has {len(segments)} segments; at most {MAX_SEGMENTS} are resolved")
    for s in segments:
        if "\0" in s or s in (".", ".."):
            raise PathError(f"path segment {s!r} cannot name a directory entry")
    return IPFSPath(root, segments)


def _unixfs(cid: CID, block: bytes):
    try:
        node = dagpb.decode_node(block)
        return node, unixfs.decode_node(node)
    except (InvalidDagPB, InvalidUnixFS) as exc:
        raise PathError(f"{cid} is not a UnixFS node: {exc}") from None


def list_links(cid: CID, block: bytes) -> list[tuple[str, CID, int]]:
    """``(name, CID, size)`` of each link of the node ``cid`` whose bytes are ``block``,
    as kubo's ``ipfs ls``: a directory's entries, a file's chunks (no names); a raw
    block has none. Size is the link's Tsize (everything under it)."""
    if not cid.verify(block):
        raise PathError(f"block {cid} does not match its CID; not used")
    if cid.codec != Codec.DAG_PB:
        return []
    node, data = _unixfs(cid, block)
    if data.type is unixfs.DataType.HAMT_SHARD:
        raise PathError(f"{cid} is a HAMT-sharded directory; listing it is not supported yet")
    return [(link.name or "", link.cid, link.tsize or 0) for link in node.links]


def step(cid: CID, block: bytes, name: str) -> CID:
    """The CID of entry ``name`` of the UnixFS directory ``cid`` whose bytes are ``block``."""
    if not cid.verify(block):
        raise PathError(f"block {cid} does not match its CID; not used")
    if cid.codec != Codec.DAG_PB:
        raise PathError(f"{cid} is a {cid.codec.name.lower()} block, not a directory; "
                        f"it has no entry {name!r}")
    node, data = _unixfs(cid, block)
    if data.type is unixfs.DataType.HAMT_SHARD:
        raise PathError(f"{cid} is a HAMT-sharded directory; looking names up in it is not "
                        "supported yet")
    if data.type is not unixfs.DataType.DIRECTORY:
        raise PathError(f"{cid} is a {data.type.name.lower()}, not a directory; it has no "
                        f"entry {name!r}")
    for link in node.links:
        if link.name == name:
            return link.cid
    raise PathError(f"no entry {name!r} in directory {cid}")
