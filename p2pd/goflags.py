"""Command-line flags in Go's ``flag`` package syntax, as the go libp2p daemon takes them.

Accepted forms: ``-name``, ``--name`` (booleans), ``-name=value``, ``--name=value``,
``-name value`` (non-booleans). A boolean only takes a value with ``=``
(``-dht=false``), exactly as in Go. Parsing stops at ``--`` or the first
non-flag argument; the rest is returned.

Values are converted as Go's ``flag`` package converts them (``strconv.ParseBool``,
``strconv.ParseInt(s, 0, 64)``, ``strconv.ParseUint``, ``time.ParseDuration``) and a
bad one is refused with Go's own message, so a launcher that matches the go daemon's
stderr sees the same line. Durations come back as float seconds.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}

_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
_GO_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]*|[1-9][0-9_]*)")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_NS = {
    "ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


class FlagError(ConfigError):
    """A flag Go's ``flag`` package would refuse: the go daemon then exits with status 2."""


class Duration:
    """Marker kind for a flag holding a Go duration (``time.Duration``)."""


class Uint:
    """Marker kind for a flag holding an unsigned 64-bit integer (``uint``)."""


def parse_go_int(text: str, unsigned: bool = False) -> int:
    """``strconv.ParseInt(text, 0, 64)`` (or ``ParseUint``): base prefixes, ``_`` separators."""
    if unsigned and text[:1] in "+-":
        raise ValueError("parse error")
    if not _GO_INT.fullmatch(text) or "__" in text or text.endswith("_"):
        raise ValueError("parse error")
    sign, body = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    body = body.replace("_", "")
    if body[:2] in ("0x", "0X", "0b", "0B", "0o", "0O"):
        if len(body) == 2:
            raise ValueError("parse error")
        value = int(body, 0)
    elif len(body) > 1 and body[0] == "0":  # Go reads a leading 0 as octal
        value = int(body[1:], 8)
    else:
        value = int(body)
    value *= sign
    lo, hi = _UINT64 if unsigned else _INT64
    if not lo <= value <= hi:
        raise ValueError("value out of range")
    return value


def parse_go_duration(text: str) -> float:
    """``time.ParseDuration``: ``"1m30s"``, ``"250ms"``, ``"1.5h"``, ``"0"``; in seconds."""
    s = text
    sign = 1.0
    if s[:1] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    pos, total_ns = 0, 0
    for m in _GO_DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        whole, _, frac = m.group(1).partition(".")
        unit = _DURATION_NS[m.group(2)]
        # integer nanoseconds, as Go counts them: "700ms" is 0.7 s exactly, not 0.70000001
        total_ns += int(whole or 0) * unit + (int(frac) * unit // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if pos == 0 or pos != len(s):
        raise ValueError("parse error")
    if total_ns > (1 << 63) - 1:
        raise ValueError("value out of range")
    return sign * total_ns / 1e9


@dataclass(slots=True)
class Flag:
    name: str
    kind: type  # bool, int, float, str, Duration or Uint
    default: Any
    help: str


@dataclass(slots=True)
class FlagSet:
    """A set of declared flags; :meth:`parse` returns the values that were set."""

    program: str
    flags: dict[str, Flag] = field(default_factory=dict)

    def add(self, name: str, kind: type, default: Any, help: str) -> None:
        self.flags[name] = Flag(name, kind, default, help)

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.flags.values()}

    def parse(self, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Return ``(explicitly_set_values, remaining_args)``; refuse with :class:`FlagError`."""
        values: dict[str, Any] = {}
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                return values, argv[i + 1 :]
            if not arg.startswith("-") or arg == "-":
                return values, argv[i:]
            body = arg[2:] if arg.startswith("--") else arg[1:]
            if not body or body[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
            name, eq, raw = body.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind is bool:
                if not eq or raw in _TRUE:
                    values[name] = True
                elif raw in _FALSE:
                    values[name] = False
                else:
                    raise FlagError(f'invalid boolean value "{raw}" for -{name}: parse error')
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise FlagError(f"flag needs an argument: -{name}")
                    raw = argv[i]
                values[name] = self._convert(flag, raw)
            i += 1
        return values, []

    @staticmethod
    def _convert(flag: Flag, raw: str) -> Any:
        try:
            if flag.kind is str:
                return raw
            if flag.kind is int:
                return parse_go_int(raw)
            if flag.kind is Uint:
                return parse_go_int(raw, unsigned=True)
            if flag.kind is Duration:
                return parse_go_duration(raw)
            if flag.kind is float:
                return float(raw)
        except ValueError as exc:
            reason = "value out of range" if "out of range" in str(exc) else "parse error"
            raise FlagError(f'invalid value "{raw}" for flag -{flag.name}: {reason}') from None
        raise TypeError(f"flag -{flag.name} has an unknown kind {flag.kind!r}")

    def usage(self) -> str:
        """Go's ``flag.PrintDefaults`` layout, flags in alphabetical order."""
        lines = []
        for f in sorted(self.flags.values(), key=lambda f: f.name):
            kind = {bool: "", int: " int", float: " float", Duration: " duration", Uint: " uint"}
            head = f"  -{f.name}{kind.get(f.kind, ' string')}"
            head += "\t" if len(head) <= 4 else "\n    \t"
            default = ""
            if f.default not in (None, False, "", 0):
                shown = _go_duration_text(f.default) if f.kind is Duration else f.default
                shown = f'"{shown}"' if f.kind is str else shown
                default = f" (default {'true' if f.default is True else shown})"
            lines.append(head + f.help + default)
        return "\n".join(lines)


def _go_duration_text(seconds: float) -> str:
    """The way Go prints a round duration: ``2m0s``, ``30m0s``, ``1h0m0s``, ``1.5s``."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    s_text = f"{s:g}s"
    if h:
        return f"{int(h)}h{int(m)}m{s_text}"
    if m:
        return f"{int(m)}m{s_text}"
    return s_text
