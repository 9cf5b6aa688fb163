"""``-pprof``: the go daemon's debug handler, for a Python process (``/debug/pprof/`` on
localhost). Go's handler serves runtime profiles; these are the same questions answered
with what Python has, as text:

- ``goroutine``: every trio task with its stack (``?debug=1``: one line per task), the
  question "what is it doing / where is it stuck";
- ``profile?seconds=N`` (1-60, default 10): a cProfile of the daemon's trio thread for N
  seconds, pstats sorted by cumulative time (``?sort=tottime`` for own time);
- ``heap``: live objects by type (``gc.get_objects``), the largest counts, and the RSS;
  with ``tracemalloc`` running (``PYTHONTRACEMALLOC``) its top allocation sites too;
- ``threadcreate``: the process's threads and their stacks;
- ``cmdline``: the command line, NUL-separated as go's.

One profile at a time (a second request while one runs is told 409).
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import sys
import threading
import traceback
from collections import Counter

import trio

from .server import Response, text_response
from .wire import Request

PROFILES = ("goroutine", "profile", "heap", "threadcreate", "cmdline")
MAX_SECONDS = 60


def _task_tree(debug: int) -> str:
    root = trio.lowlevel.current_root_task()
    out: list[str] = []

    def walk(task, depth: int) -> None:
        pad = "  " * depth
        out.append(f"{pad}task {task.name}")
        if debug != 1:
            frames = []
            coro = task.coro
            while coro is not None:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is None:
                    break
                frames.append(f"{pad}    {frame.f_code.co_filename}:{frame.f_lineno} "
                              f"{frame.f_code.co_name}")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            out.extend(frames)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    if root is not None:
        walk(root, 0)
    count = sum(1 for line in out if line.lstrip().startswith("task "))
    return f"tasks: total {count}\n\n" + "\n".join(out)


def _heap() -> str:
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    lines = [f"objects tracked by gc: {sum(counts.values())}"]
    try:
        import psutil

        mem = psutil.Process().memory_info()
        lines.append(f"rss: {mem.rss} bytes, vms: {mem.vms} bytes")
    except Exception:  # psutil missing or refused: the counts still answer
        pass
    lines.append("")
    lines += [f"{n:>10} {name}" for name, n in counts.most_common(50)]
    import tracemalloc

    if tracemalloc.is_tracing():
        lines += ["", "tracemalloc top allocation sites:"]
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:30]:
            lines.append(f"  {stat}")
    return "\n".join(lines)


def _threads() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    out = [f"threads: {len(names)}"]
    for ident, frame in sys._current_frames().items():
        out.append(f"\nthread {names.get(ident, ident)}:")
        out += [line.rstrip("\n") for line in traceback.format_stack(frame)]
    return "\n".join(out)


class Pprof:
    """The handler; one CPU profile at a time."""

    def __init__(self) -> None:
        self._profiling = False

    async def handle(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if request.method not in ("GET", "HEAD"):
            return text_response(405, "GET only")
        if path in ("/debug/pprof", "/debug/pprof/"):
            links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in PROFILES)
            body = (f"<html><head><title>/debug/pprof/</title></head><body>"
                    f"<p>p2pd debug profiles</p><ul>{links}</ul></body></html>").encode()
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], body)
        name = path.removeprefix("/debug/pprof/")
        if name == "goroutine":
            return text_response(200, _task_tree(_int(request.query.get("debug"), 2)))
        if name == "heap":
            return text_response(200, _heap())
        if name == "threadcreate":
            return text_response(200, _threads())
        if name == "cmdline":
            return Response(200, [("Content-Type", "text/plain; charset=utf-8")],
                            "\0".join(sys.argv).encode())
        if name == "profile":
            seconds = _int(request.query.get("seconds"), 10)
            if not 1 <= seconds <= MAX_SECONDS:
                return text_response(400, f"seconds must be 1-{MAX_SECONDS}")
            sort = request.query.get("sort", "cumulative")
            if sort not in ("cumulative", "tottime", "ncalls"):
                return text_response(400, "sort must be cumulative, tottime or ncalls")
            return await self._profile(seconds, sort)
        return text_response(404, f"unknown profile {name!r}; known: {', '.join(PROFILES)}")

    async def _profile(self, seconds: int, sort: str) -> Response:
        if self._profiling:
            return text_response(409, "a profile is already running")
        self._profiling = True
        profiler = cProfile.Profile()
        try:
            profiler.enable()  # this thread: every trio task of the daemon
            try:
                await trio.sleep(seconds)
            finally:
                profiler.disable()
        finally:
            self._profiling = False
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(60)
        return text_response(200, f"cProfile of the trio thread for {seconds} s\n"
                             + out.getvalue())


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text not in (None, "") else default
    except ValueError:
        return -1
