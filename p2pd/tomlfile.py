"""``config.toml`` as text: where a key is written, and setting one value in place.

tomllib gives values but not lines, so an error about ``datastore.gc_watermark`` could
not say where it is. These helpers read the text the way a person wrote it (tables,
``key = value`` lines, values over several lines) for just that: the line of a key, and
replacing or adding one key's value while every comment and other line stays as it was.
Only tables of one level (``[section]``) and plain keys are written by p2pd; anything
else is found where it can be and left alone.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


def _unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'" else name


def _entries(lines: list[str]):
    """(index, table, key or None) for every table header and ``key =`` line."""
    table = ""
    for i, line in enumerate(lines):
        m = _TABLE.match(line)
        if m and not line.lstrip().startswith("[["):
            table = ".".join(_unquote(p) for p in m.group(1).split("."))
            yield i, table, None
            continue
        m = _KEY.match(line)
        if m:
            yield i, table, _unquote(m.group(1))


def key_line(text: str, dotted: str) -> int | None:
    """The 1-based line where ``section.key`` (or the table ``section``) is written."""
    lines = text.splitlines()
    for i, table, key in _entries(lines):
        name = table if key is None else f"{table}.{key}" if table else key
        if name == dotted:
            return i + 1
    return None


def literal(value: Any) -> str:
    """``value`` written as TOML (strings, booleans, numbers and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # a TOML basic string, but for DEL: JSON leaves it bare, TOML wants it escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def parse_value(text: str) -> Any:
    """A value typed on a command line: TOML (``90``, ``true``, ``["a", "b"]``,
    ``"x"``) when it is one, else the text itself as a string (``10GB``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _value_end(lines: list[str], start: int) -> int:
    """The last line of the value that begins at ``lines[start]`` (arrays may span
    several lines)."""
    for end in range(start, len(lines)):
        try:
            tomllib.loads("\n".join(lines[start:end + 1]))
            return end
        except tomllib.TOMLDecodeError:
            continue
    return start


def set_value(text: str, section: str, key: str, value: Any) -> str:
    """``text`` with ``[section] key = value``: the existing value replaced in place, or
    the key added at the end of its table, or the table added at the end."""
    lines = text.splitlines()
    new = f"{key} = {literal(value)}"
    header, last = None, None
    for i, table, name in _entries(lines):
        if table != section:
            continue
        if name is None:
            header = last = i
        elif name == key:
            end = _value_end(lines, i)
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines[i:end + 1] = [indent + new]
            return "\n".join(lines) + "\n"
        else:
            last = _value_end(lines, i)
    if header is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", new]
    else:
        lines.insert(last + 1, new)
    return "\n".join(lines) + "\n"
