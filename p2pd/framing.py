"""Varint-length-delimited frames, sans-IO: the framing of the daemon control protocol,
Kademlia, pubsub and Bitswap messages alike.

The length is untrusted: a frame longer than ``max_frame`` is refused before any of
its body is buffered, so a peer announcing 2**62 bytes costs nothing.

A decoder given a ``memory`` (the peer's share of the resource manager's budget,
p2pd/net/rcmgr.py ``MemoryBudget.for_buffers``) counts what it holds beyond its first
:data:`MEMORY_STEP` there, in steps of that size (one reservation per step, not per byte):
a stream holding part of a large message from a peer whose share is gone raises
:class:`~p2pd.errors.LimitExceeded` and its protocol resets it, so N streams x
``max_frame`` buffered cannot pass the share. What it holds is given back as frames are
taken and on :meth:`FrameDecoder.close` (or leaving its ``with`` block). The first step is
free so that small messages (nearly all of them) cost one length comparison: it is a
quarter of the 256 KiB receive window every Yamux stream reserves already.
"""

from __future__ import annotations

from .errors import InvalidVarint, LimitExceeded, P2PDError
from .varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

DEFAULT_MAX_FRAME = 4 << 20
#: what a decoder's buffer reserves from its memory share at a time
MEMORY_STEP = 64 << 10


def _steps(n: int) -> int:
    """What holding ``n`` bytes reserves: beyond the first step, rounded up to steps."""
    return -(-(n - MEMORY_STEP) // MEMORY_STEP) * MEMORY_STEP if n > MEMORY_STEP else 0


class FramingError(P2PDError, ValueError):
    """Bytes that are not a valid varint-delimited frame."""


class FrameDecoder:
    """Split a byte stream into varint-length-delimited frames.

    Feed bytes with :meth:`receive_data`, take frames with :meth:`next_frame` until it
    returns ``None`` (more bytes needed). After the last frame of the protocol
    exchange (for example a STREAM_OPEN request), :meth:`take_unconsumed` returns the
    bytes that already arrived behind it (for the daemon protocol: the piped stream).
    ``memory``: where the buffered bytes are counted (``reserve(n) -> bool``,
    ``release(n)``, ``describe()``), or None.
    """

    __slots__ = ("_buf", "_max_frame", "_eof", "_memory", "_held")

    #: What malformed input raises; protocols subclass with their own error.
    error: type[Exception] = None  # set below

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, memory=None) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self._buf = bytearray()
        self._max_frame = max_frame
        self._eof = False
        self._memory = memory
        self._held = 0  # bytes reserved from ``memory``

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; an empty ``data`` means the peer closed its side.

        Raises :class:`~p2pd.errors.LimitExceeded` (and holds nothing more) when the
        bytes do not fit in the decoder's memory share."""
        if not data:
            self._eof = True
        else:
            self._buf += data
            if self._memory is not None and len(self._buf) > self._held + MEMORY_STEP:
                self._grow()

    def _grow(self) -> None:
        want = _steps(len(self._buf))
        memory = self._memory
        if not memory.reserve(want - self._held):
            size = len(self._buf)
            self.close()
            raise LimitExceeded("memory", f"resource limit memory: {size} bytes of a "
                                          f"message buffered: {memory.describe()}")
        self._held = want

    def _shrink(self) -> None:
        keep = _steps(len(self._buf))
        if self._held - keep >= MEMORY_STEP:
            self._memory.release(self._held - keep)
            self._held = keep

    def close(self) -> None:
        """Forget what is buffered and give back what it held (idempotent)."""
        self._buf.clear()
        if self._held:
            self._memory.release(self._held)
            self._held = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """Return the next complete frame, or ``None`` if more bytes are needed.

        Raises ``self.error`` for a malformed or oversized length prefix, and for a
        frame cut short by end of stream.
        """
        buf = self._buf
        header_end = -1
        for i in range(min(len(buf), MAX_VARINT_BYTES)):
            if not buf[i] & 0x80:
                header_end = i + 1
                break
        if header_end < 0:
            if len(buf) >= MAX_VARINT_BYTES:
                raise self.error("message length prefix is longer than 9 bytes")
            if self._eof and buf:
                raise self.error("stream ended inside a message length prefix")
            return None
        try:
            length, offset = decode_uvarint(buf[:header_end])
        except InvalidVarint as exc:
            raise self.error(f"invalid message length prefix: {exc}") from None
        if length > self._max_frame:
            raise self.error(
                f"message of {length} bytes exceeds the limit of {self._max_frame} bytes"
            )
        end = offset + length
        if len(buf) < end:
            if self._eof:
                raise self.error(
                    f"stream ended after {len(buf) - offset} of {length} message bytes"
                )
            return None
        frame = bytes(buf[offset:end])
        del buf[:end]
        if self._held:
            self._shrink()
        return frame

    def take_unconsumed(self) -> bytes:
        """Return and forget every buffered byte not yet returned as a frame."""
        data = bytes(self._buf)
        self.close()
        return data


FrameDecoder.error = FramingError


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its varint length."""
    return encode_uvarint(len(payload)) + payload
