"""The ``Range`` request header (RFC 9110 section 14), sans-IO.

One byte range is served (``bytes=0-99``, ``bytes=100-``, ``bytes=-500``). A header
that is not a byte range, or asks for several ranges, is ignored and the whole
representation is served, as the RFC allows; a range no byte of the representation
falls in is :class:`RangeNotSatisfiable` (416). Numbers are bounded by the header's
length, so a huge value costs nothing.
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


def _unsatisfiable(size: int):
    raise RangeNotSatisfiable(size)


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"
