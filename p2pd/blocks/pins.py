"""Pins and garbage collection over the blockstore.

A pin is recursive (the root and everything it links to stays) and lives at
``/pins/<CIDv1 bytes>`` in the datastore (so ``Qm...`` and its ``bafy...`` form are one
pin). The value is a small record: ``varint(version) varint(created, unix seconds)
varint(n) <the CID as given, n bytes> name``.

Consistency rule (what makes ``kill -9`` harmless): a pin is written only after every
block of its DAG is durably stored (:func:`missing_blocks` is empty), so no pin ever
points at a missing block. Garbage collection marks from every pin and sweeps the rest;
the caller keeps local writes out of a running collection (the daemon's lock) and names
the roots of fetches in progress, whose blocks are kept too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import BlockNotFound, CorruptBlock, P2PDError
from ..store import Datastore
from ..varint import decode_uvarint, encode_uvarint
from . import dagpb
from .blockstore import Blockstore
from .cid import CID
from .multicodec import Codec

PIN_VERSION = 1
#: DAGs deeper than this are refused when walked (a UnixFS tree of 256 KiB chunks with
#: 174 links per node is 5 levels deep at 2 PiB).
MAX_DEPTH = 64


class PinError(P2PDError):
    """A pin operation could not be done; the message says why."""


@dataclass(slots=True)
class Pin:
    cid: CID
    created: int
    name: str = ""


def children(cid: CID, block: bytes) -> list[CID]:
    """The CIDs a block links to (dag-pb links; raw blocks link to nothing)."""
    if cid.codec != Codec.DAG_PB:
        return []
    return [link.cid for link in dagpb.decode_node(block).links]


def walk(store: Blockstore, root: CID) -> Iterator[tuple[CID, bool]]:
    """Every block of the DAG under ``root``, breadth first, each multihash once, with
    whether it is stored. Only dag-pb nodes are read (for their links); raw leaves are
    only looked up in the index. A missing or corrupt node's children are unknown."""
    seen = {root.multihash}
    level = [root]
    depth = 0
    while level:
        if depth > MAX_DEPTH:
            raise PinError(f"DAG under {root} is deeper than {MAX_DEPTH} levels")
        nxt = []
        for cid in level:
            if cid.codec != Codec.DAG_PB:
                yield cid, store.has(cid)
                continue
            try:
                block = store.get(cid)
            except (BlockNotFound, CorruptBlock):
                yield cid, False
                continue
            yield cid, True
            for child in children(cid, block):
                if child.multihash not in seen:
                    seen.add(child.multihash)
                    nxt.append(child)
        level = nxt
        depth += 1


def missing_blocks(store: Blockstore, root: CID, limit: int = 1 << 30) -> list[CID]:
    out = []
    for cid, present in walk(store, root):
        if not present:
            out.append(cid)
            if len(out) >= limit:
                break
    return out


class Pins:
    def __init__(self, datastore: Datastore, store: Blockstore) -> None:
        self.ds = datastore
        self.space = datastore.pins
        self.store = store
        datastore.checkers["pins"] = _record_parses  # what a salvage keeps of damaged files

    def add(self, cid: CID, name: str = "", *, complete: bool = False) -> Pin:
        """Pin ``cid`` recursively; every block of its DAG must be stored already.

        ``complete=True`` skips the walk that checks it, for a caller that has just
        durably written the whole DAG itself (the importer, after its bulk flush)."""
        missing = [] if complete else missing_blocks(self.store, cid, limit=1)
        if missing:
            raise PinError(f"cannot pin {cid}: block {missing[0]} is not stored (fetch it first)")
        pin = Pin(cid, int(time.time()), name[:256])
        self.space.put(_key(cid), _encode(pin))
        return pin

    def remove(self, cid: CID) -> None:
        if not self.space.has(_key(cid)):
            raise PinError(f"{cid} is not pinned")
        self.space.delete(_key(cid))

    def has(self, cid: CID) -> bool:
        return self.space.has(_key(cid))

    def list(self) -> list[Pin]:
        out = []
        for key, value in self.space.items():
            try:
                cid = CID.from_bytes(key)
                out.append(_decode(cid, value))
            except Exception:  # a damaged entry is shown, never fatal
                continue
        return out

    def reachable(self, roots: Iterable[CID] = ()) -> set[bytes]:
        """Multihashes of every stored block under any pin or any of ``roots``.

        A root of ``roots`` (a DAG still being fetched, from anyone) may be deeper than
        :data:`MAX_DEPTH`: what the walk reached is kept, the rest is not (a pin is never
        that deep: it could not have been written)."""
        keep: set[bytes] = set()
        for pin in self.list():
            for cid, _present in walk(self.store, pin.cid):
                keep.add(cid.multihash)
        for root in roots:
            try:
                for cid, _present in walk(self.store, root):
                    keep.add(cid.multihash)
            except PinError:
                continue
        return keep

    def gc(self, keep: Iterable[CID] = ()) -> tuple[int, int]:
        """Remove every block no pin reaches, nor any root in ``keep`` (DAGs operations in
        progress use); returns ``(blocks removed, bytes freed)``.

        The stored blocks are listed *before* marking: a block written meanwhile (a
        fetch still running) is not a candidate, and one written before is found by the
        mark if a kept root reaches it."""
        candidates = list(self.store.cids())
        reached = self.reachable(keep)
        removed = freed = 0
        for cid in candidates:
            if cid.multihash in reached:
                continue
            try:
                freed += self.store.size(cid)
            except BlockNotFound:
                continue
            self.store.delete(cid)
            removed += 1
        return removed, freed


def _key(cid: CID) -> bytes:
    return cid.to_v1().to_bytes() if cid.version == 0 else cid.to_bytes()


def _encode(pin: Pin) -> bytes:
    given = pin.cid.to_bytes()
    return (encode_uvarint(PIN_VERSION) + encode_uvarint(pin.created)
            + encode_uvarint(len(given)) + given + pin.name.encode())


def _decode(cid: CID, value: bytes) -> Pin:
    _version, pos = decode_uvarint(value, 0)
    created, pos = decode_uvarint(value, pos)
    n, pos = decode_uvarint(value, pos)
    given = CID.from_bytes(value[pos:pos + n])
    if given.multihash != cid.multihash:
        raise PinError("pin record names another CID than its key")
    return Pin(given, created, value[pos + n:].decode("utf-8", "replace"))


def _record_parses(key: bytes, value: bytes) -> bool:
    try:
        _decode(CID.from_bytes(key), value)
    except Exception:
        return False
    return True
