"""The libp2p perf protocol, ``/perf/1.0.0`` (libp2p/specs perf/perf.md).

The client writes the number of bytes it wants back (8 bytes, big-endian), then
uploads any number of bytes and closes its write side; the server reads to the end,
then sends the requested number of bytes and closes. Used to measure throughput
between peers (bench/stream.py) against any implementation that speaks it.

The server refuses (resets) requests above ``max_download`` bytes: a peer must not
be able to make us send without bound.
"""

from __future__ import annotations

import trio

from .streams import read_some

PERF_PROTOCOL = "/perf/1.0.0"
#: Default bound on what one request may ask us to send.
DEFAULT_MAX_DOWNLOAD = 1 << 30
CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)


class PerfError(Exception):
    pass




async def serve(stream, max_download: int = DEFAULT_MAX_DOWNLOAD) -> int:
    """Answer one perf request on ``stream``; returns the bytes uploaded to us."""
    head = b""
    while len(head) < 8:
        data = await read_some(stream)
        if not data:
            await stream.reset()
            raise PerfError("stream ended before the 8-byte length")
        head += data
    want = int.from_bytes(head[:8], "big")
    if want > max_download:
        await stream.reset()
        raise PerfError(f"peer asked for {want} bytes, more than the {max_download} allowed")
    uploaded = len(head) - 8
    while True:
        data = await read_some(stream)
        if not data:
            break
        uploaded += len(data)
    left = want
    while left:
        n = min(left, CHUNK)
        await stream.write(_ZEROS if n == CHUNK else _ZEROS[:n])
        left -= n
    await stream.close()
    return uploaded


async def run(stream, upload: int, download: int) -> tuple[float, float]:
    """Client side: send ``upload`` bytes, receive ``download``; (upload s, download s)."""
    start = trio.current_time()
    await stream.write(download.to_bytes(8, "big"))
    left = upload
    while left:
        n = min(left, CHUNK)
        await stream.write(_ZEROS if n == CHUNK else _ZEROS[:n])
        left -= n
    await stream.close_write()
    uploaded_at = trio.current_time()
    got = 0
    while True:
        data = await read_some(stream)
        if not data:
            break
        got += len(data)
    done = trio.current_time()
    if got != download:
        raise PerfError(f"received {got} bytes, asked for {download}")
    return uploaded_at - start, done - uploaded_at
