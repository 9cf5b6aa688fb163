"""What the node's host is made of besides the swarm (p2pd/net/swarm.py): its options, the
agent version, and the checks on swarm addresses made before anything listens.

The host itself is ours (p2pd/net/swarmhost.py over p2pd/net/swarm.py): Noise is the only
security protocol (a peer proposing ``/plaintext/2.0.0``, ``/secio/1.0.0`` or anything else
gets multistream ``na``), then our Yamux or mplex. docs/decisions.md says what of py-libp2p
was replaced and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import __version__
from ..errors import ConfigError
from .rcmgr import Limits

AGENT_VERSION = f"p2pd/{__version__}"


@dataclass(slots=True)
class HostOptions:
    """What the host needs beyond its key: addresses and connection limits."""

    listen_addrs: Sequence[str]
    announce_addrs: Sequence[str] = ()
    conn_low: int = 256
    conn_high: int = 512
    conn_grace: float = 120.0
    max_conns_per_peer: int = 8
    max_streams_per_conn: int = 512
    dial_timeout: float = 10.0
    #: The muxer proposed first on outbound connections and preferred on inbound ones
    #: (``-muxer``); the other stays offered for peers without it.
    muxer: str = "yamux"
    #: Channel security protocols by name ("tls", "noise"), most preferred first.
    security: Sequence[str] = ("tls", "noise")
    #: QUIC v1 (``-quic``): listen on the quic-v1 addresses and dial peers' ones.
    quic: bool = True
    #: the resource manager's limits (None: its defaults with the two limits above)
    limits: Limits | None = None


def filter_announced(addrs: Sequence[str], no_announce: Sequence[str]) -> list[str]:
    """``addrs`` without those ``no_announce`` names (kubo's ``Addresses.NoAnnounce``).

    A rule is a multiaddr matched whole or as a leading run of components
    (``/ip4/127.0.0.1`` drops every address on it), or ``/ip4|ip6/NET/ipcidr/BITS``,
    which drops every address whose IP lies in that network.
    """
    import ipaddress

    nets, prefixes = [], []
    for rule in no_announce:
        parts = rule.rstrip("/").split("/")
        if len(parts) == 5 and parts[1] in ("ip4", "ip6") and parts[3] == "ipcidr":
            try:
                nets.append(ipaddress.ip_network(f"{parts[2]}/{parts[4]}", strict=False))
            except ValueError as exc:
                raise ConfigError(f"invalid no_announce filter {rule!r}: {exc}") from None
        else:
            prefixes.append(parts)
    out = []
    for addr in addrs:
        parts = addr.rstrip("/").split("/")
        if any(parts[: len(p)] == p for p in prefixes):
            continue
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and nets:
            try:
                ip = ipaddress.ip_address(parts[2])
            except ValueError:
                ip = None
            if ip is not None and any(ip.version == n.version and ip in n for n in nets):
                continue
        out.append(addr)
    return out


def parse_swarm_addr(text: str):
    """A swarm multiaddr, or :class:`ConfigError` naming the bad one."""
    import multiaddr

    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:
        raise ConfigError(f"invalid swarm address {text!r}: {exc}") from None


def _tcp_parts(addr: str) -> list[str] | None:
    """``addr.split("/")`` for an ``/ip4|ip6/HOST/tcp/PORT...`` address, else None."""
    parts = addr.split("/")
    if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
        return parts
    return None


def separate_ephemeral_ports(addrs: Sequence[str]) -> list[str]:
    """Give every TCP-based address after the first on ``(host, port 0)`` a free port of its own.

    py-libp2p puts a TCP and a WebSocket listener on the same ``host:port`` behind one
    socket and a demultiplexer that sniffs the first bytes; it closes connections whose
    first segment is too short to classify (js-libp2p sends the multistream length byte
    alone), so ``/tcp/0`` + ``/tcp/0/ws`` would drop some inbound TCP dials. Explicit equal
    ports are left as given (the user asked for sharing).
    """
    import socket

    out, seen = [], set()
    for addr in addrs:
        parts = _tcp_parts(addr)
        if parts is not None and parts[4] == "0":
            key = (parts[1], parts[2])
            if key in seen:
                family = socket.AF_INET6 if parts[1] == "ip6" else socket.AF_INET
                with socket.socket(family) as probe:
                    probe.bind((parts[2], 0))
                    parts[4] = str(probe.getsockname()[1])
                addr = "/".join(parts)
            seen.add(key)
        out.append(addr)
    return out


def check_swarm_ports_free(listen_addrs: Sequence[str]) -> None:
    """Raise OSError naming the first TCP swarm address another process listens on.

    py-libp2p's TCP listener binds with SO_REUSEPORT, so a second daemon would silently
    share the port; a probe bind without it fails when the port is taken.
    """
    import socket

    for text in listen_addrs:
        parts = _tcp_parts(text)
        # port 0 is always free; a non-number is refused by parse_swarm_addr, clearly
        if parts is None or parts[4] == "0" or not parts[4].isdigit():
            continue
        family = socket.AF_INET if parts[1] == "ip4" else socket.AF_INET6
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((parts[2], int(parts[4])))
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise OSError(f"swarm address {text} is already in use "
                              "(another p2pd running?)") from None
        finally:
            probe.close()
