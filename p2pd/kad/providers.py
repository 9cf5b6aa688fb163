"""Provider records: who provides which key, kept in RocksDB with a 48 h expiry.

Layout in the ``/providers/`` key space: ``varint(len(key)) || key || peer id`` ->
``expiry (8 bytes, ms) || addresses`` (each address varint-prefixed). A key's providers
are one prefix scan. At most ``max_per_key`` providers are kept per key (the ones
expiring last win) and ``max_addrs`` addresses per provider; expired records are never
returned and are removed by :meth:`ProviderStore.sweep`.

Also the republish schedule for what this node provides (every 22 h, spec value).
No I/O besides the datastore; callers pass ``now`` (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StoreError
from ..store import Datastore
from ..varint import decode_uvarint, encode_uvarint

PROVIDER_TTL = 48 * 3600.0
REPUBLISH_INTERVAL = 22 * 3600.0
MAX_PER_KEY = 64
MAX_ADDRS = 16
MAX_KEY_BYTES = 2048


@dataclass(slots=True)
class Provider:
    peer: bytes
    addrs: list[bytes]
    expires: float


def _prefix(key: bytes) -> bytes:
    if not key or len(key) > MAX_KEY_BYTES:
        raise ValueError(f"provider key must be 1..{MAX_KEY_BYTES} bytes")
    return encode_uvarint(len(key)) + key


def _encode(expires: float, addrs: list[bytes]) -> bytes:
    out = bytearray(int(expires * 1000).to_bytes(8, "big"))
    for a in addrs[:MAX_ADDRS]:
        out += encode_uvarint(len(a)) + a
    return bytes(out)


def _decode(raw: bytes) -> tuple[float, list[bytes]]:
    if len(raw) < 8:
        raise StoreError("provider record shorter than its expiry")
    expires = int.from_bytes(raw[:8], "big") / 1000
    addrs, pos = [], 8
    while pos < len(raw) and len(addrs) < MAX_ADDRS:
        try:
            n, pos = decode_uvarint(raw, pos)
        except ValueError as exc:
            raise StoreError(f"provider record: {exc}") from None
        if pos + n > len(raw):
            raise StoreError("provider record: address runs past the end")
        addrs.append(bytes(raw[pos : pos + n]))
        pos += n
    return expires, addrs


class ProviderStore:
    def __init__(self, datastore: Datastore, *, ttl: float = PROVIDER_TTL,
                 max_per_key: int = MAX_PER_KEY) -> None:
        self.space = datastore.providers
        self.ds = datastore
        self.ttl = ttl
        self.max_per_key = max_per_key
        self.local: dict[bytes, float] = {}  # keys we provide -> when last (re)announced

    def add(self, key: bytes, peer: bytes, addrs: list[bytes], now: float) -> None:
        """Record (or refresh) ``peer`` as a provider of ``key`` until now + ttl."""
        prefix = _prefix(key)
        if not peer:
            raise ValueError("provider peer id must not be empty")
        self.space.put(prefix + peer, _encode(now + self.ttl, addrs))
        current = self._scan(key, now=None)
        if len(current) > self.max_per_key:
            current.sort(key=lambda p: p.expires)
            with self.ds.batch() as batch:
                for p in current[: len(current) - self.max_per_key]:
                    batch.delete(self.space, prefix + p.peer)

    def get(self, key: bytes, now: float) -> list[Provider]:
        """Live providers of ``key``, latest expiry first."""
        out = self._scan(key, now)
        out.sort(key=lambda p: -p.expires)
        return out

    def _scan(self, key: bytes, now: float | None) -> list[Provider]:
        prefix = _prefix(key)
        out = []
        for k, raw in self.space.items(prefix):
            try:
                expires, addrs = _decode(raw)
            except StoreError:
                continue
            if now is None or expires > now:
                out.append(Provider(k[len(prefix) :], addrs, expires))
        return out

    def sweep(self, now: float) -> int:
        """Delete every expired or unreadable record; returns how many went."""
        gone = []
        for k, raw in self.space.items():
            try:
                expires, _ = _decode(raw)
            except StoreError:
                expires = 0
            if expires <= now:
                gone.append(k)
        if gone:
            with self.ds.batch() as batch:
                for k in gone:
                    batch.delete(self.space, k)
        return len(gone)

    # -- what we provide ---------------------------------------------------------------
    def provide(self, key: bytes, now: float) -> None:
        self.local[key] = now

    def due_for_republish(self, now: float, interval: float = REPUBLISH_INTERVAL) -> list[bytes]:
        return [k for k, t in self.local.items() if now - t >= interval]
