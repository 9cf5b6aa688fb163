"""What the node remembers about other peers, kept in RocksDB across restarts.

A :class:`PeerEntry` is a peer's addresses, protocols and public key (as the peerstore
learned them from connections and identify). :class:`PeerBook` writes entries into the
datastore's ``/peers/`` key space (one value per peer id, one atomic batch per save)
and reads them back on the next start. Values are compact JSON; decoding is strict and
bounded, so a damaged value is reported and skipped, never trusted.

No networking here: the node (p2pd/node.py) turns entries into py-libp2p peerstore
calls and back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import StoreError
from .store import Datastore

log = logging.getLogger(__name__)

#: Bounds on one entry (a peer announcing more is cut, a stored value with more is refused).
MAX_ADDRS = 32
MAX_PROTOCOLS = 128
MAX_ADDR_BYTES = 512
MAX_PROTOCOL_CHARS = 256
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 64 * 1024
#: Peers kept; the least recently seen go first.
DEFAULT_MAX_PEERS = 10_000


@dataclass(slots=True)
class PeerEntry:
    peer_id: bytes
    addrs: list[bytes] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    public_key: bytes = b""  # the libp2p PublicKey protobuf, as identify carries it
    last_seen: float = 0.0

    def bounded(self) -> PeerEntry:
        """This entry cut to the bounds (what a peer told us is not trusted to be small)."""
        return PeerEntry(
            self.peer_id,
            [a for a in self.addrs if len(a) <= MAX_ADDR_BYTES][:MAX_ADDRS],
            [p for p in self.protocols if len(p) <= MAX_PROTOCOL_CHARS][:MAX_PROTOCOLS],
            self.public_key if len(self.public_key) <= MAX_KEY_BYTES else b"",
            self.last_seen,
        )


def encode_entry(entry: PeerEntry) -> bytes:
    e = entry.bounded()
    doc = {"a": [a.hex() for a in e.addrs], "p": e.protocols, "k": e.public_key.hex(),
           "t": round(e.last_seen, 3)}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_entry(peer_id: bytes, raw: bytes) -> PeerEntry:
    """The entry stored under ``peer_id``; :class:`StoreError` says what is wrong with it."""
    where = f"peerstore entry {peer_id.hex()[:16]}"
    if len(raw) > MAX_VALUE_BYTES:
        raise StoreError(f"{where}: {len(raw)} bytes, more than {MAX_VALUE_BYTES}")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise StoreError(f"{where}: not an object")
    addrs, protocols = doc.get("a", []), doc.get("p", [])
    key, seen = doc.get("k", ""), doc.get("t", 0)
    if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS:
        raise StoreError(f"{where}: addresses must be a list of at most {MAX_ADDRS}")
    if not isinstance(protocols, list) or len(protocols) > MAX_PROTOCOLS:
        raise StoreError(f"{where}: protocols must be a list of at most {MAX_PROTOCOLS}")
    if not isinstance(key, str) or not isinstance(seen, int | float) or isinstance(seen, bool):
        raise StoreError(f"{where}: bad key or timestamp")
    try:
        raw_addrs = [bytes.fromhex(a) for a in addrs]
        public_key = bytes.fromhex(key)
    except (TypeError, ValueError):
        raise StoreError(f"{where}: addresses and key must be hex") from None
    if any(len(a) > MAX_ADDR_BYTES or not a for a in raw_addrs) or len(public_key) > MAX_KEY_BYTES:
        raise StoreError(f"{where}: an address or the key is too long")
    if not all(isinstance(p, str) and 0 < len(p) <= MAX_PROTOCOL_CHARS for p in protocols):
        raise StoreError(f"{where}: protocols must be short non-empty strings")
    return PeerEntry(peer_id, raw_addrs, list(protocols), public_key, float(seen))


class PeerBook:
    """Peer entries in the ``/peers/`` key space of a node's datastore."""

    def __init__(self, datastore: Datastore, max_peers: int = DEFAULT_MAX_PEERS) -> None:
        self.ds = datastore
        self.max_peers = max_peers

    def save(self, entries: Iterable[PeerEntry]) -> int:
        """Write ``entries`` (replacing older ones for the same peers) in one batch.

        Keeps at most ``max_peers`` entries: the least recently seen are dropped.
        Returns how many were written.
        """
        now = time.time()
        fresh = {e.peer_id: e for e in entries if e.peer_id}
        with self.ds.batch() as batch:
            for entry in fresh.values():
                if not entry.last_seen:
                    entry.last_seen = now
                batch.put(self.ds.peers, entry.peer_id, encode_entry(entry))
        self._prune()
        return len(fresh)

    def load(self) -> list[PeerEntry]:
        """Every readable entry; damaged ones are logged and removed."""
        out, bad = [], []
        for peer_id, raw in self.ds.peers.items():
            try:
                out.append(decode_entry(peer_id, raw))
            except StoreError as exc:
                log.warning("%s; dropping it", exc)
                bad.append(peer_id)
        if bad:
            with self.ds.batch() as batch:
                for peer_id in bad:
                    batch.delete(self.ds.peers, peer_id)
        return out

    def _prune(self) -> None:
        count = self.ds.peers.count()
        if count <= self.max_peers:
            return
        entries = self.load()
        entries.sort(key=lambda e: e.last_seen)
        with self.ds.batch() as batch:
            for entry in entries[: count - self.max_peers]:
                batch.delete(self.ds.peers, entry.peer_id)
