"""Yamux frames, sans-IO (hashicorp/yamux spec.md, as libp2p uses it: /yamux/1.0.0).

A frame is a 12-byte header — version (0), type, flags, stream id, length — followed, for
DATA frames only, by ``length`` payload bytes. For WINDOW_UPDATE the length field is the
window delta, for PING an opaque value, for GO_AWAY an error code.

:class:`YamuxDecoder` takes received bytes in any cut and returns complete frames as
``(type, flags, stream_id, value, payload)`` tuples (payload ``None`` except for DATA). It
refuses, with :class:`YamuxWireError`, an unknown version or type and a DATA frame longer
than ``max_data`` (no peer may send more than the largest window we ever grant, so
anything longer is an attack on our memory). Window accounting is the connection's job.
"""

from __future__ import annotations

import struct

from ..errors import P2PDError

VERSION = 0
TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

HEADER_SIZE = 12
#: Every stream's receive window at open (spec: 256 KiB).
INITIAL_WINDOW = 256 * 1024

_header = struct.Struct("!BBHII")
pack_header = _header.pack
_unpack_from = _header.unpack_from


class YamuxWireError(P2PDError):
    """The peer broke the Yamux framing; the connection must end (GO_AWAY protocol error)."""


def header(typ: int, flags: int, stream_id: int, value: int) -> bytes:
    """One frame header (for DATA frames the payload follows it)."""
    return pack_header(VERSION, typ, flags, stream_id, value)


class YamuxDecoder:
    """Cuts a received byte stream into Yamux frames."""

    __slots__ = ("max_data", "_buf")

    def __init__(self, max_data: int) -> None:
        self.max_data = max_data
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[
            tuple[int, int, int, int, bytes | None]]:
        buf = self._buf
        buf += data
        have = len(buf)
        pos = 0
        frames: list[tuple[int, int, int, int, bytes | None]] = []
        max_data = self.max_data
        while have - pos >= HEADER_SIZE:
            version, typ, flags, sid, value = _unpack_from(buf, pos)
            if version != VERSION:
                raise YamuxWireError(f"unsupported Yamux version {version}")
            if typ == TYPE_DATA:
                if value > max_data:
                    raise YamuxWireError(
                        f"Yamux DATA frame of {value} bytes exceeds the {max_data}-byte limit")
                end = pos + HEADER_SIZE + value
                if end > have:
                    break
                frames.append((typ, flags, sid, value, bytes(buf[pos + HEADER_SIZE:end])))
                pos = end
            elif typ <= TYPE_GO_AWAY:
                frames.append((typ, flags, sid, value, None))
                pos += HEADER_SIZE
            else:
                raise YamuxWireError(f"unknown Yamux frame type {typ}")
        if pos:
            del buf[:pos]
        return frames
