"""A delay line: one lab link as two TAP devices in two namespaces, frames copied after a delay.

This kernel has no netem (``CONFIG_NET_SCH_NETEM`` is off; only tbf, htb and fifo qdiscs
exist), so propagation delay, jitter and random loss cannot come from tc. Everything else on
such a link stays kernel networking: the frames are real Ethernet frames from the two
namespaces' stacks (ARP, TCP, conntrack NAT), the rate is a kernel tbf on each TAP's egress
(it holds the queue and gives TCP its backpressure), and this process only holds each frame
until its time and writes it out of the other TAP, in order (jitter never reorders).

``python linkd.py CONFIG.json``; CONFIG::

    {"a": {"ns": "NAME", "dev": "wan0"}, "b": {"ns": "NAME", "dev": "p3"},
     "ab": {"delay_ms": 20, "jitter_ms": 0, "loss_pct": 0},   # frames a sends towards b
     "ba": {"delay_ms": 20, "jitter_ms": 0, "loss_pct": 0}}

Prints ``linkd ready`` once both TAPs exist (they are not persistent: they vanish with this
process). SIGHUP re-reads the ``ab``/``ba`` shapes; SIGTERM ends it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_FRAME = 65536
MAX_QUEUE = 20000  # frames in flight per direction (beyond: dropped, as a full link would)

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_tap(ns: str, dev: str) -> int:
    """A TAP device ``dev`` created inside namespace ``ns``; returns its non-blocking fd."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TAP | IFF_NO_PI))
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
    return fd


class Direction:
    """Frames read from ``src`` wait in FIFO order until due, then go out of ``dst``."""

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.delay = self.jitter = self.loss = 0.0
        self.last_due = 0.0

    def configure(self, shape: dict) -> None:
        self.delay = float(shape.get("delay_ms", 0)) / 1000
        self.jitter = float(shape.get("jitter_ms", 0)) / 1000
        self.loss = float(shape.get("loss_pct", 0)) / 100

    def take(self, now: float) -> None:
        while True:
            try:
                frame = os.read(self.src, MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    return
                raise
            if self.loss and random.random() < self.loss:
                continue
            if len(self.queue) >= MAX_QUEUE:
                continue
            due = now + self.delay
            if self.jitter:
                due = max(now, due + random.gauss(0, self.jitter))
            due = max(due, self.last_due)  # a wire keeps order
            self.last_due = due
            self.queue.append((due, frame))

    def release(self, now: float) -> float | None:
        """Write every due frame; return when the next one is due (None: queue empty)."""
        q = self.queue
        while q and q[0][0] <= now:
            frame = q.popleft()[1]
            try:
                os.write(self.dst, frame)
            except OSError:
                pass  # the far end is down or its queue full: the frame is lost, as on a wire
        return q[0][0] if q else None


def main(path: str) -> None:
    with contextlib.suppress(OSError):
        os.nice(-10)  # a wire: it must not wait behind the processes it carries packets for
    with open(path) as fh:
        config = json.load(fh)
    fa = open_tap(config["a"]["ns"], config["a"]["dev"])
    fb = open_tap(config["b"]["ns"], config["b"]["dev"])
    ab, ba = Direction(fa, fb), Direction(fb, fa)

    def load() -> None:
        with open(path) as fh:
            fresh = json.load(fh)
        ab.configure(fresh.get("ab", {}))
        ba.configure(fresh.get("ba", {}))

    load()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    reload = []
    signal.signal(signal.SIGHUP, lambda *_: reload.append(1))
    poller = select.epoll()
    poller.register(fa, select.EPOLLIN)
    poller.register(fb, select.EPOLLIN)
    poller.register(wake_r, select.EPOLLIN)
    print("linkd ready", flush=True)
    timeout = -1.0
    while True:
        events = poller.poll(timeout)
        now = time.monotonic()
        for fd, _ in events:
            if fd == fa:
                ab.take(now)
            elif fd == fb:
                ba.take(now)
            else:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
        if reload:
            reload.clear()
            load()
        now = time.monotonic()
        nexts = [t for t in (ab.release(now), ba.release(now)) if t is not None]
        timeout = max(0.0, min(nexts) - time.monotonic()) if nexts else -1.0


if __name__ == "__main__":
    main(sys.argv[1])
