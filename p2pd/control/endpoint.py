"""Control endpoints: the multiaddrs ``-listen`` and STREAM_HANDLER accept, as plain values.

Only ``/unix/PATH`` and ``/ip4|ip6/ADDR/tcp/PORT`` are control transports (as in the go
daemon). Parsing is textual and dependency-free so the CLI client can use it without
importing py-libp2p.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(slots=True, frozen=True)
class Endpoint:
    """``kind`` is ``"unix"`` (``path`` set) or ``"tcp"`` (``host`` and ``port`` set)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

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
