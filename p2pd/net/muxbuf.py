"""A stream's received bytes as the payloads arrived, for our muxers (Yamux, mplex).

Payloads are kept as they came (no copying into one growing buffer); ``take()`` returns
everything at once — the payload itself when there is one — and ``take(n)`` at most ``n``
bytes, copying only what it returns. Sans-IO.
"""

from __future__ import annotations

from collections import deque


class ReadBuffer:
    __slots__ = ("_chunks", "_offset", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # into _chunks[0]
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, payload: bytes) -> None:
        if payload:
            self._chunks.append(payload)
            self.size += len(payload)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.size = 0

    def take(self, n: int | None = None) -> bytes:
        """Up to ``n`` bytes (all with ``None`` or a negative ``n``), oldest first."""
        chunks = self._chunks
        if n is None or n < 0 or n >= self.size:
            if self._offset:
                chunks[0] = chunks[0][self._offset:]
                self._offset = 0
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self.size = 0
            return data
        parts = []
        need = n
        while need:
            head = chunks[0]
            avail = len(head) - self._offset
            if avail <= need:
                parts.append(head[self._offset:] if self._offset else head)
                chunks.popleft()
                self._offset = 0
                need -= avail
            else:
                parts.append(head[self._offset:self._offset + need])
                self._offset += need
                need = 0
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.size -= len(data)
        return data
