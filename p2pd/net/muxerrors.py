"""What our muxers (Yamux, mplex) raise, in the shape py-libp2p's muxer errors had: a stream
at its end is an ``EOFError``; a reset, a closed stream and a dead connection are
``ConnectionError``s, so callers catch them with the standard classes."""

from __future__ import annotations


class MuxedStreamError(ConnectionError):
    """A stream operation failed."""


class MuxedStreamEOF(MuxedStreamError, EOFError):
    """The peer closed its side; everything it sent was read."""


class MuxedStreamReset(MuxedStreamError):
    """The stream was reset (by the peer, by us, or because its connection died)."""


class MuxedStreamClosed(MuxedStreamError):
    """We closed our side; no more writes."""


class MuxedConnUnavailable(ConnectionError):
    """The connection is closed or closing."""
