"""The process's own resource use (STATUS "Runtime"): trio tasks, open fds, RSS, threads.

Cheap enough to answer on every STATUS: one walk of the task tree (a few hundred tasks),
one ``listdir`` of ``/proc/self/fd`` and one read of ``/proc/self/statm``; the soak
(bench/soak.py, tests/lab/test_lab_soak.py) samples them over time to see leaks.
"""

from __future__ import annotations

import os
import sys
import threading

import trio

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def task_count() -> int:
    """Live trio tasks of this run (0 outside trio)."""
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return 0
    count, todo = 0, [root] if root is not None else []
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def open_fds() -> int:
    """Open file descriptors (-1 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir holds
    except OSError:
        return -1


def rss_bytes() -> int:
    """Resident set size (-1 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return -1


#: glibc's mallopt parameter (malloc.h) and the arenas the daemon allows
_M_ARENA_MAX = -8
ARENA_MAX = 2
#: how often the daemon hands free heap memory back to the kernel
TRIM_INTERVAL = 10.0


def _libc():
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune_allocator() -> bool:
    """Two malloc arenas (glibc), unless ``MALLOC_ARENA_MAX`` says otherwise; whether set.

    Every thread that allocates (``trio.to_thread`` workers, RocksDB's) otherwise gets an
    arena of its own, each keeping what it freed."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))


def trim_memory() -> bool:
    """Give free heap pages back to the kernel (glibc ``malloc_trim``); whether any were.

    glibc raises its mmap threshold each time a large mmapped buffer is freed (up to 32
    MiB), after which 256 KiB blocks come from the heap, and freed heap memory between
    live chunks stays resident. A daemon's RSS then ratchets up with each big add or
    fetch and never comes down: the soak saw +20-40 MiB in two minutes with flat object
    counts. Fixing the threshold instead (every large buffer its own mmap) halves a
    copy-and-hash loop of 256 KiB blocks here (1.6 -> 0.8 GB/s, page faults); a trim
    every TRIM_INTERVAL costs about a millisecond."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


async def trim_memory_every(interval: float = TRIM_INTERVAL) -> None:
    """:func:`trim_memory` every ``interval`` seconds until cancelled."""
    while True:
        await trio.sleep(interval)
        trim_memory()


def summary() -> dict:
    """``PyBlocks``: memory blocks the interpreter has allocated (``sys.getallocatedblocks``,
    O(1)): Python objects that pile up show here even when the allocator keeps RSS flat, and
    a flat count under a growing RSS points at the allocator or native code instead."""
    return {"Tasks": task_count(), "Fds": open_fds(), "RSS": rss_bytes(),
            "Threads": threading.active_count(), "PyBlocks": sys.getallocatedblocks()}
