"""Control endpoints: the multiaddrs ``-listen`` and STREAM_HANDLER accept, as plain values.

Only ``/unix/PATH`` and ``/ip4|ip6/ADDR/tcp/PORT`` are control transports (as in the go
daemon). Parsing is textual and dependency-free so the CLI client can use it without
importing py-libp2p.
"""

from __future__ import annotations

import ipaddress
from collections import namedtuple

from ..errors import ConfigError


class Endpoint(namedtuple("Endpoint", "kind path host port", defaults=("", "", 0))):
    """``kind`` is ``"unix"`` (``path`` set) or ``"tcp"`` (``host`` and ``port`` set).

    A named tuple rather than a dataclass: every CLI command imports this module, and
    dataclasses costs ~7 ms of imports (inspect) at each start (bench/cli.py)."""

    __slots__ = ()
    kind: str
    path: str
    host: str
    port: int

    def multiaddr(self) -> str:
        if self.kind == "unix":
            return "/unix" + (self.path if self.path.startswith("/") else "/" + self.path)
        family = "ip6" if ":" in self.host else "ip4"
        return f"/{family}/{self.host}/tcp/{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``/unix/PATH`` or ``/ip4/A/tcp/P`` (``/ip6`` too); raise :class:`ConfigError`."""
    if text.startswith("/unix/"):
        path = text[len("/unix") :]
        if len(path) < 2:
            raise ConfigError(f"control address {text!r} has an empty socket path")
        return Endpoint("unix", path=path)
    parts = text.split("/")
    if len(parts) == 5 and parts[0] == "" and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
        try:
            ip = ipaddress.ip_address(parts[2])
            port = int(parts[4])
        except ValueError:
            raise ConfigError(f"control address {text!r} has a bad IP or port") from None
        if (ip.version == 4) != (parts[1] == "ip4") or not 0 <= port <= 65535:
            raise ConfigError(f"control address {text!r} has a bad IP or port")
        return Endpoint("tcp", host=str(ip), port=port)
    raise ConfigError(
        f"unsupported control address {text!r}: use /unix/PATH or /ip4/127.0.0.1/tcp/PORT"
    )


def endpoint_listening(endpoint: Endpoint, proc_net: str = "/proc/net") -> bool | None:
    """Whether a socket listens at ``endpoint`` now, read from Linux's ``/proc/net`` tables.

    Asked when a STREAM_HANDLER registration meets a protocol another endpoint holds: a
    probe by connecting would hand the client holding it a connection that carries no
    stream (p2pclient's listener dies of that), reading the table touches nobody.
    ``None`` when the tables cannot be read (not Linux): the caller assumes it listens.
    """
    try:
        if endpoint.kind == "unix":
            with open(f"{proc_net}/unix", encoding="utf-8", errors="replace") as f:
                return _unix_listening(f.read(), endpoint.path)
        want = ipaddress.ip_address(endpoint.host)
        name = "tcp6" if want.version == 6 else "tcp"
        with open(f"{proc_net}/{name}", encoding="ascii", errors="replace") as f:
            return _tcp_listening(f.read(), want, endpoint.port)
    except OSError:
        return None


_SO_ACCEPTCON = 0x10000


def _unix_listening(table: str, path: str) -> bool:
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] == path:
            try:
                if int(fields[3], 16) & _SO_ACCEPTCON:
                    return True
            except ValueError:
                continue
    return False


def _tcp_listening(table: str, want: ipaddress._BaseAddress, port: int) -> bool:
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
            continue
        try:
            host_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(host_hex)
        except ValueError:
            continue
        if int(port_hex, 16) != port:
            continue
        # each 32-bit word of the address is in host (little-endian) order
        addr = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        try:
            got = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if got == want or got.is_unspecified:
            return True
    return False
