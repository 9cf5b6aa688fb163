"""The process's own resource use (STATUS "Runtime"): trio tasks, open fds, RSS, threads.

Cheap enough to answer on every STATUS: one walk of the task tree (a few hundred tasks),
one ``listdir`` of ``/proc/self/fd`` and one read of ``/proc/self/statm``; the soak
(bench/soak.py, tests/lab/test_lab_soak.py) samples them over time to see leaks.
"""

from __future__ import annotations

import os
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


def summary() -> dict:
    return {"Tasks": task_count(), "Fds": open_fds(), "RSS": rss_bytes(),
            "Threads": threading.active_count()}
