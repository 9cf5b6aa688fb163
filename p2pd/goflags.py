"""Command-line flags in Go's ``flag`` package syntax, as the go libp2p daemon takes them.

Accepted forms: ``-name``, ``--name`` (booleans), ``-name=value``, ``--name=value``,
``-name value`` (non-booleans). A boolean only takes a value with ``=``
(``-dht=false``), exactly as in Go. Parsing stops at ``--`` or the first
non-flag argument; the rest is returned.
"""

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass(slots=True)
class Flag:
    name: str
    kind: type  # bool, int, float or str
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
        """Return ``(explicitly_set_values, remaining_args)``."""
        values: dict[str, Any] = {}
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                return values, argv[i + 1 :]
            if not arg.startswith("-") or arg == "-":
                return values, argv[i:]
            body = arg[2:] if arg.startswith("--") else arg[1:]
            name, eq, raw = body.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                raise ConfigError(f"flag provided but not defined: -{name} (see {self.program} -help)")
            if flag.kind is bool:
                if not eq:
                    values[name] = True
                elif raw in _TRUE:
                    values[name] = True
                elif raw in _FALSE:
                    values[name] = False
                else:
                    raise ConfigError(f"invalid boolean value {raw!r} for flag -{name}")
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise ConfigError(f"flag needs an argument: -{name}")
                    raw = argv[i]
                values[name] = self._convert(flag, raw)
            i += 1
        return values, []

    @staticmethod
    def _convert(flag: Flag, raw: str) -> Any:
        if flag.kind is str:
            return raw
        try:
            return flag.kind(raw)
        except ValueError:
            raise ConfigError(
                f"invalid value {raw!r} for flag -{flag.name}: expected {flag.kind.__name__}"
            ) from None

    def usage(self) -> str:
        lines = []
        for f in self.flags.values():
            kind = "" if f.kind is bool else f" {f.kind.__name__ if f.kind is not str else 'string'}"
            lines.append(f"  -{f.name}{kind}\n    \t{f.help}" + (
                f" (default {f.default!r})" if f.default not in (None, False, "") else ""))
        return "\n".join(lines)
