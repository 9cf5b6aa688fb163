"""The three things every protocol does with a libp2p stream besides writing to it.

A read that turns end-of-stream into ``b""``, a close that never raises (and resets a
stream it could not close), and a reset that never raises. One copy for kad, Bitswap,
gossip, perf and the control server. Our swarm's streams say end-of-stream with ``b""``;
a py-libp2p style stream raises ``StreamEOF``, recognised by name so that nothing here
imports py-libp2p (its import alone costs about a second and 80 MB).
"""

from __future__ import annotations


def is_eof(exc: BaseException) -> bool:
    """``exc`` is a py-libp2p style end-of-stream (``StreamEOF``), not a failure."""
    return any(cls.__name__ == "StreamEOF" for cls in type(exc).__mro__)


_is_eof = is_eof


async def read_some(stream) -> bytes:
    """Whatever the stream has buffered (at least one byte), or ``b""`` at its end."""
    try:
        return await stream.read()
    except Exception as exc:
        if _is_eof(exc):
            return b""
        raise


async def reset_quietly(stream) -> None:
    """Reset ``stream``; a stream that is already gone is fine."""
    try:
        await stream.reset()
    except Exception:
        pass


async def close_quietly(stream) -> None:
    """Close ``stream`` (our side: EOF to the peer); reset it if it cannot be closed."""
    try:
        await stream.close()
    except Exception:
        await reset_quietly(stream)
