"""multistream-select 1.0 (``/multistream/1.0.0``), sans-IO.

Every message is a uvarint length, then that many bytes ending in ``\\n``. Both sides
send the header ``/multistream/1.0.0``; the dialer proposes one protocol at a time and the
listener echoes the one it takes or answers ``na``. ``ls`` asks the listener for its
protocols (answered with one message holding a message per protocol, as go and js do).

:class:`Dialer` and :class:`Listener` are fed bytes and return bytes to send; when the
negotiation ends, ``protocol`` holds the choice and ``leftover`` whatever arrived after
the last negotiation message (the first bytes of the protocol itself). A dialer sends its
header and first proposal in one write, so a successful negotiation costs one round trip.
Anything that is not multistream (no header, a message without ``\\n``, a length over
:data:`MAX_MESSAGE`, too many proposals) raises :class:`MultistreamError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import P2PDError
from ..varint import decode_uvarint, encode_uvarint

HEADER = "/multistream/1.0.0"
NA = "na"
LS = "ls"
#: Longest message accepted (go-multistream's limit on a protocol id is 1 KiB; a listener's
#: ``ls`` answer may list many, so the dialer side accepts more).
MAX_MESSAGE = 1024
MAX_LS_ANSWER = 64 * 1024
#: Most proposals a listener hears on one stream before it gives up on the dialer.
MAX_PROPOSALS = 32


class MultistreamError(P2PDError):
    """The peer did not speak multistream-select 1.0, or agreed on nothing."""


class NoProtocol(MultistreamError):
    """The listener refused every protocol we proposed."""


def encode(message: str) -> bytes:
    raw = message.encode() + b"\n"
    return encode_uvarint(len(raw)) + raw


class _Reader:
    """Cuts varint-framed messages out of whatever bytes arrive."""

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.header_seen = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> bytes | None:
        """The next whole message (without its ``\\n``), or None until more arrives."""
        buf = self.buf
        if not buf:
            return None
        try:
            length, pos = decode_uvarint(buf)
        except ValueError:
            if len(buf) >= 10:
                raise MultistreamError("malformed length prefix") from None
            return None  # a varint cut by the read
        if length > self.limit:
            raise MultistreamError(f"message of {length} bytes (limit {self.limit})")
        if length == 0:
            raise MultistreamError("empty message")
        if len(buf) < pos + length:
            return None
        msg = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        if not msg.endswith(b"\n"):
            raise MultistreamError("message does not end in a newline")
        return msg[:-1]

    def take_rest(self) -> bytes:
        rest = bytes(self.buf)
        self.buf.clear()
        return rest

    def next_after_header(self) -> str | None:
        """The next message after the ``/multistream/1.0.0`` header, as text (the header
        itself is checked and swallowed); None until more arrives."""
        while True:
            msg = self.next()
            if msg is None:
                return None
            text = _text(msg)
            if self.header_seen:
                return text
            if text != HEADER:
                raise MultistreamError(f"expected {HEADER!r}, got {text[:64]!r}")
            self.header_seen = True


def _text(msg: bytes) -> str:
    try:
        return msg.decode()
    except UnicodeDecodeError:
        raise MultistreamError("protocol id is not UTF-8") from None


class Dialer:
    """The side that proposes: ``start()`` once, then ``receive(data)`` until ``done``."""

    def __init__(self, protocols: Sequence[str]) -> None:
        if not protocols:
            raise ValueError("no protocol to propose")
        self.protocols = list(protocols)
        self._next = 0
        self._reader = _Reader(MAX_MESSAGE)
        self.protocol: str | None = None
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self.protocol is not None

    def start(self) -> bytes:
        """The header and the first proposal, to be sent together."""
        self._next = 1
        return encode(HEADER) + encode(self.protocols[0])

    def receive(self, data: bytes) -> bytes:
        """Feed what the listener sent; returns what to send next (maybe nothing).
        Raises :class:`NoProtocol` when every proposal was refused."""
        self._reader.feed(data)
        out = b""
        while self.protocol is None:
            text = self._reader.next_after_header()
            if text is None:
                break
            proposed = self.protocols[self._next - 1]
            if text == proposed and text != NA:  # "na" is the refusal, never a protocol
                self.protocol = proposed
                self.leftover = self._reader.take_rest()
            elif text == NA:
                if self._next >= len(self.protocols):
                    raise NoProtocol(f"the peer speaks none of {self.protocols}")
                out += encode(self.protocols[self._next])
                self._next += 1
            else:
                raise MultistreamError(f"the peer answered {text[:64]!r} to {proposed!r}")
        return out


class Listener:
    """The side that answers: ``start()`` once, then ``receive(data)`` until ``done``.

    ``supported`` says whether a protocol id is served (a set's ``__contains__`` or a
    function, so handlers added later count); ``available()`` lists them for ``ls``.
    """

    def __init__(self, supported, available=None) -> None:
        self._supported = supported
        self._available = available or (lambda: [])
        self._reader = _Reader(MAX_MESSAGE)
        self._proposals = 0
        self.protocol: str | None = None
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self.protocol is not None

    def start(self) -> bytes:
        return encode(HEADER)

    def _serves(self, protocol: str) -> bool:
        s = self._supported
        return s(protocol) if callable(s) else protocol in s

    def receive(self, data: bytes) -> bytes:
        self._reader.feed(data)
        out = b""
        while self.protocol is None:
            text = self._reader.next_after_header()
            if text is None:
                break
            self._proposals += 1
            if self._proposals > MAX_PROPOSALS:
                raise MultistreamError(f"more than {MAX_PROPOSALS} proposals")
            if text == LS:
                listing = b"".join(encode(p) for p in self._available())
                out += encode_uvarint(len(listing) + 1) + listing + b"\n"
            elif text != NA and self._serves(text):
                self.protocol = text
                self.leftover = self._reader.take_rest()
                out += encode(text)
            else:
                out += encode(NA)
        return out


__all__ = ["Dialer", "Listener", "MultistreamError", "NoProtocol", "encode", "HEADER"]
