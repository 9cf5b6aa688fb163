"""The ``Range`` request header (RFC 9110 section 14), sans-IO.

:func:`parse_range` reads one byte range (``bytes=0-99``, ``bytes=100-``, ``bytes=-500``);
:func:`parse_ranges` up to :data:`MAX_RANGES` of them (``bytes=0-99,200-299``), answered
as one ``multipart/byteranges`` body (:func:`multipart_parts`). Overlapping or adjacent
ranges are merged (RFC 9110 14.2 lets a server coalesce them: a client cannot make us
send the same bytes many times); ranges no byte of the representation falls in are
dropped, and when none is left the answer is :class:`RangeNotSatisfiable` (416). A
header that is not byte ranges, is malformed, or asks for more ranges than that is
ignored and the whole representation is served, as the RFC allows. Numbers are bounded
by the header's length, so a huge value costs nothing.
"""

from __future__ import annotations

import re

#: Longest Range header looked at; a longer one is ignored.
MAX_HEADER = 256
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]{0,20})[ \t]*-[ \t]*([0-9]{0,20})[ \t]*")


class RangeNotSatisfiable(ValueError):
    """No byte of the representation is in the range (answer 416 with its size)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte offsets, inclusive, within ``0..size-1``; None: serve it all."""
    if not header or len(header) > MAX_HEADER:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # not one byte range (several, another unit, malformed): ignored
    first_text, last_text = m.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # a suffix: the last N bytes
        n = int(last_text)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return (max(0, size - n), size - 1) if size else _unsatisfiable(size)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid: ignored as the RFC says
    if first >= size:
        raise RangeNotSatisfiable(size)
    return first, min(last, size - 1)


#: Most ranges one request may ask for; more and the header is ignored (200, all of it).
MAX_RANGES = 16
#: Longest header with several ranges looked at.
MAX_MULTI_HEADER = 1024
_SPEC = re.compile(r"[ \t]*([0-9]{0,20})[ \t]*-[ \t]*([0-9]{0,20})[ \t]*")


def parse_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """``[(first, last), ...]`` (inclusive, within ``0..size-1``, sorted, none
    overlapping or touching); None: serve it all. One range gives a list of one."""
    if not header or len(header) > MAX_MULTI_HEADER:
        return None
    unit, eq, specs = header.strip().partition("=")
    if unit.strip() != "bytes" or not eq:
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    spans = []
    for part in parts:
        m = _SPEC.fullmatch(part)
        if m is None or not (m.group(1) or m.group(2)):
            return None
        first_text, last_text = m.groups()
        if not first_text:
            n = int(last_text)
            if n and size:
                spans.append((max(0, size - n), size - 1))
            continue
        first = int(first_text)
        if last_text and int(last_text) < first:
            return None  # invalid: the whole header is ignored
        if first < size:
            spans.append((first, min(int(last_text) if last_text else size - 1, size - 1)))
    if not spans:
        raise RangeNotSatisfiable(size)
    spans.sort()
    merged = [spans[0]]
    for first, last in spans[1:]:
        if first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def multipart_parts(spans: list[tuple[int, int]], size: int, content_type: str,
                    boundary: str) -> tuple[list[bytes], bytes, int]:
    """The ``multipart/byteranges`` framing: a head before each span's bytes, the
    closing delimiter, and the body's whole length (RFC 9110 14.6)."""
    heads = [(f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
              f"Content-Range: {content_range(first, last, size)}\r\n\r\n").encode()
             for first, last in spans]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(map(len, heads)) + len(tail) + sum(last + 1 - first for first, last in spans)
    return heads, tail, length


def _unsatisfiable(size: int):
    raise RangeNotSatisfiable(size)


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"
