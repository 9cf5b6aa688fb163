"""Port mapping on the home router with NAT-PMP (RFC 6886), so peers on the internet can dial
in: the codec (sans-IO), the gateway lookup, and a trio edge that keeps one mapping per
TCP listen port alive.

A mapping is asked for with the suggested external port equal to the internal one, for
:data:`LIFETIME` seconds, renewed at half its granted lifetime and deleted (lifetime 0) at
shutdown. The router's external address plus the mapped port becomes an address candidate
(:meth:`p2pd.net.addrs.AddressManager.add_candidate`) that AutoNAT then confirms or not:
a router may grant a mapping that the world still cannot reach (double NAT, CGNAT).
Requests are retried at 250 ms doubling (RFC 6886 section 3.1), 4 times here; a router
that never answers means no port mapping, said once in the log.

UPnP IGD (SSDP and SOAP) is not done yet; miniupnpd, most home routers' firmware, speaks
both.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)

PORT = 5351
LIFETIME = 7200
OP_ADDRESS, OP_MAP_UDP, OP_MAP_TCP = 0, 1, 2
RESULTS = {0: "success", 1: "unsupported version", 2: "not authorized or refused",
           3: "network failure", 4: "out of resources", 5: "unsupported opcode"}
TRIES = 4


class PortMapError(Exception):
    """The router refused or never answered."""


@dataclass(slots=True)
class Mapping:
    internal: int
    external: int
    lifetime: int


def address_request() -> bytes:
    return b"\x00\x00"


def map_request(internal: int, external: int, lifetime: int, tcp: bool = True) -> bytes:
    return struct.pack(">BBHHHI", 0, OP_MAP_TCP if tcp else OP_MAP_UDP, 0, internal, external,
                       lifetime)


def _check(data: bytes, op: int, size: int) -> None:
    if len(data) < size:
        raise PortMapError(f"a NAT-PMP answer of {len(data)} bytes")
    version, got_op, result = struct.unpack(">BBH", data[:4])
    if version != 0 or got_op != 128 + op:
        raise PortMapError(f"not an answer to opcode {op} (version {version}, op {got_op})")
    if result:
        raise PortMapError(f"the router says: {RESULTS.get(result, result)}")


def parse_address(data: bytes) -> ipaddress.IPv4Address:
    _check(data, OP_ADDRESS, 12)
    return ipaddress.IPv4Address(data[8:12])


def parse_map(data: bytes, tcp: bool = True) -> Mapping:
    _check(data, OP_MAP_TCP if tcp else OP_MAP_UDP, 16)
    internal, external, lifetime = struct.unpack(">HHI", data[8:16])
    return Mapping(internal, external, lifetime)


def default_gateway(route_file: str = "/proc/net/route") -> str | None:
    """The IPv4 default gateway from the kernel's routing table, or None."""
    try:
        with open(route_file) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 2:
            return str(ipaddress.IPv4Address(struct.pack("<I", int(fields[2], 16))))
    return None


class PortMapper:
    """Keeps a NAT-PMP mapping for each of ``ports()`` (TCP) and reports the external
    addresses through ``on_external(list of (ip, external port, internal port))``."""

    def __init__(self, ports: Callable[[], list[int]],
                 on_external: Callable[[list[tuple[str, int, int]]], None],
                 gateway: str | None = None) -> None:
        self.ports = ports
        self.on_external = on_external
        self.gateway = gateway
        self.mappings: dict[int, Mapping] = {}
        self.external_ip: str | None = None
        self.error: str | None = None

    async def _ask(self, sock, request: bytes) -> bytes:
        delay = 0.25
        for _ in range(TRIES):
            try:
                await sock.send(request)
                with trio.move_on_after(delay):
                    while True:
                        data, src = await sock.recvfrom(64)
                        if src[0] == self.gateway:
                            return data
            except OSError as exc:  # ICMP port unreachable: no NAT-PMP on that router
                raise PortMapError(f"{self.gateway} does not speak NAT-PMP: {exc}") from None
            delay *= 2
        raise PortMapError(f"no NAT-PMP answer from {self.gateway}")

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.gateway = self.gateway or default_gateway()
        if self.gateway is None:
            self.error = "no default gateway"
            return
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            try:
                await sock.connect((self.gateway, PORT))
            except OSError as exc:
                self.error = f"cannot reach {self.gateway}: {exc}"
                log.info("no port mapping: %s", self.error)
                return
            try:
                self.external_ip = str(parse_address(await self._ask(sock, address_request())))
            except PortMapError as exc:
                self.error = str(exc)
                log.info("no port mapping: %s", exc)
                return
            while True:
                wait = LIFETIME / 2
                for port in self.ports():
                    try:
                        got = parse_map(await self._ask(sock, map_request(port, port, LIFETIME)))
                    except PortMapError as exc:
                        self.error = str(exc)
                        log.info("port mapping for %d failed: %s", port, exc)
                        continue
                    if self.mappings.get(port) != got:
                        log.info("router %s maps %s:%d to port %d for %d s", self.gateway,
                                 self.external_ip, got.external, port, got.lifetime)
                    self.mappings[port] = got
                    wait = min(wait, max(got.lifetime / 2, 30.0))
                self.on_external([(self.external_ip, m.external, p)
                                  for p, m in self.mappings.items()])
                await trio.sleep(wait)
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(2):
                    for port in list(self.mappings):
                        try:  # lifetime 0: delete (RFC 6886 section 3.4)
                            await sock.send(map_request(port, 0, 0))
                            with trio.move_on_after(0.5):
                                data, _src = await sock.recvfrom(64)
                                parse_map(data)
                                log.info("port mapping for %d removed", port)
                        except (OSError, PortMapError) as exc:
                            log.info("removing the port mapping for %d: %s", port, exc)
                        del self.mappings[port]
            sock.close()

    def summary(self) -> dict:
        return {"gateway": self.gateway, "external_ip": self.external_ip,
                "mappings": {str(p): m.external for p, m in self.mappings.items()},
                "error": self.error}
