"""Log levels for the daemon and the CLI: one line per event, tracebacks only at debug.

``configure(level)`` sets the level of the root logger (so our modules and py-libp2p
alike) and installs :class:`OneLineFormatter`: below debug, a record that carries an
exception shows it as ``message (ExcType: text)`` instead of a traceback, since the
network failures a node meets all day (a refused dial, a timeout, a peer without the
protocol) are expected, and a screen of traceback per failure hides what matters.
"""

from __future__ import annotations

import logging
import os

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    def __init__(self, tracebacks: bool) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not record.exc_info:
            return super().format(record)
        exc = record.exc_info[1]
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        if exc is not None:
            text = str(exc).splitlines()[0] if str(exc) else ""
            line += f" ({type(exc).__name__}{': ' + text if text else ''})"
        return line.replace("\n", " | ")


def level_from_env(default: str = "warning") -> str:
    """``P2PD_DEBUG_LOG`` (a level name) if set, else ``default``."""
    value = os.environ.get("P2PD_DEBUG_LOG", "").strip().lower()
    return value if value in LEVELS else default


def configure(level: str) -> None:
    """Every logger at ``level`` (one of :data:`LEVELS`), one line per record below debug."""
    number = getattr(logging, level.upper())
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(tracebacks=number <= logging.DEBUG))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name in ("libp2p", "multiaddr", "aioquic", "trio_websocket"):
        logging.getLogger(name).setLevel(number)  # py-libp2p and the rest as our own
