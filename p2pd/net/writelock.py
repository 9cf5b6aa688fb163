"""A lock for the write paths (muxed streams, secure channels): free, it is taken at once.

``async with trio.Lock()`` always passes a checkpoint, one more scheduling round per
frame written even when nobody else holds the lock (the common case: one writer per
stream). :class:`WriteLock` takes a free lock synchronously and waits, as trio.Lock
does, only when it is held; cancellation is then noticed at the write it guards, which
checkpoints anyway.
"""

from __future__ import annotations

import trio


class WriteLock:
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.Lock()

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
