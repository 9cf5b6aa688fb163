"""The one exception hierarchy of p2pd.

Every error raised on purpose by p2pd derives from :class:`P2PDError`. Messages
say what was wrong with which input and, where there is one, what to do about
it: the CLI prints ``str(err)`` to the user instead of a traceback.
"""


class P2PDError(Exception):
    """Base class of every error p2pd raises on purpose."""


class NodeError(P2PDError):
    """A node operation failed; the message is meant for the control client."""


class InvalidVarint(P2PDError, ValueError):
    """An unsigned varint is truncated, too long, or not minimally encoded."""


class InvalidCID(P2PDError, ValueError):
    """A CID, multihash, multibase string or multicodec is malformed or unsupported."""


class InvalidBlock(P2PDError, ValueError):
    """Block bytes do not match the CID they were offered under."""


class CorruptBlock(P2PDError):
    """A block read back from disk no longer matches its CID; it is not served."""


class BlockNotFound(P2PDError, KeyError):
    """The blockstore holds no block for the CID."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "block not found"


class InvalidDagPB(P2PDError, ValueError):
    """A dag-pb node is truncated, oversized, or not canonically encoded."""


class InvalidUnixFS(P2PDError, ValueError):
    """A UnixFS Data message is malformed or inconsistent with its links."""


class HomeError(P2PDError):
    """$P2PD_HOME is missing, not a directory, or not readable/writable."""


class StoreError(P2PDError):
    """The datastore (RocksDB) could not be opened or written."""


class StoreFull(StoreError, OSError):
    """The disk holding the datastore has no room for a write: it was refused whole, and
    nothing stored before is affected. Writes work again once space is freed."""


class ConfigError(P2PDError, ValueError):
    """A configuration file or command-line option is invalid.

    ``problems`` holds ``(key, message)`` pairs for values of ``config.toml`` (key as
    ``section.name``), so the file's path and line can be put in front of each.
    """

    def __init__(self, message: str, key: str | None = None,
                 problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else (
            [(key, message)] if key else [])


class LimitExceeded(P2PDError):
    """A new connection, stream or buffered message would pass a resource limit
    (p2pd/net/rcmgr.py); ``limit`` names it (a ``[limits]`` field)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
