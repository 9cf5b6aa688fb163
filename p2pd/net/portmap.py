"""Port mapping on the home router with UPnP IGD or NAT-PMP (RFC 6886), so peers on the
internet can dial in: the NAT-PMP codec (sans-IO; UPnP's is :mod:`p2pd.net.upnp`), the
gateway lookup, and a trio edge that keeps one mapping per TCP listen port alive.

UPnP IGD is tried first (most home routers speak it: an SSDP search on the LAN, the
gateway's description, then SOAP AddPortMapping with a lease), then NAT-PMP. A mapping is
asked for with the external port equal to the internal one (another free one if a
different host holds it), for :data:`LIFETIME` seconds, renewed at half its granted
lifetime and deleted at shutdown. The router's external address plus the mapped port
becomes an address candidate (:meth:`p2pd.net.addrs.AddressManager.add_candidate`)
that AutoNAT then confirms or not: a router may grant a mapping that the world still
cannot reach (double NAT, CGNAT). NAT-PMP requests are retried at 250 ms doubling (RFC
6886 section 3.1), 4 times here; a router that speaks neither means no port mapping, said
once in the log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

from . import upnp

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


class NatPmpClient:
    """NAT-PMP with the gateway: ``open`` (its external address), ``map``, ``unmap``."""

    name = "NAT-PMP"

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def _ask(self, request: bytes) -> bytes:
        delay = 0.25
        for _ in range(TRIES):
            try:
                await self.sock.send(request)
                with trio.move_on_after(delay):
                    while True:
                        data, src = await self.sock.recvfrom(64)
                        if src[0] == self.gateway:
                            return data
            except OSError as exc:  # ICMP port unreachable: no NAT-PMP on that router
                raise PortMapError(f"{self.gateway} does not speak NAT-PMP: {exc}") from None
            delay *= 2
        raise PortMapError(f"no NAT-PMP answer from {self.gateway}")

    async def open(self) -> str:
        try:
            await self.sock.connect((self.gateway, PORT))
        except OSError as exc:
            raise PortMapError(f"cannot reach {self.gateway}: {exc}") from None
        return str(parse_address(await self._ask(address_request())))

    async def map(self, port: int, lifetime: int) -> Mapping:
        return parse_map(await self._ask(map_request(port, port, lifetime)))

    async def unmap(self, port: int, mapping: Mapping) -> None:
        await self.sock.send(map_request(port, 0, 0))  # lifetime 0: delete (RFC 6886 3.4)
        with trio.move_on_after(0.5):
            data, _src = await self.sock.recvfrom(64)
            parse_map(data)

    def close(self) -> None:
        self.sock.close()


SSDP_WAIT = 2.0
HTTP_TIMEOUT = 5.0


class UpnpClient:
    """UPnP IGD: find the gateway device by SSDP, then SOAP calls to its WAN connection."""

    name = "UPnP"

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.service: upnp.Service | None = None
        self.local_ip: str | None = None
        self.permanent = False

    async def _discover(self) -> str:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
            await sock.bind(("0.0.0.0", 0))
            errors = []
            with trio.move_on_after(SSDP_WAIT):
                for target in upnp.SEARCH_TARGETS:
                    for dest in (upnp.SSDP_ADDR, (self.gateway, upnp.SSDP_ADDR[1])):
                        try:
                            await sock.sendto(upnp.search_request(target), dest)
                        except OSError as exc:
                            errors.append(str(exc))
                while True:
                    data, _src = await sock.recvfrom(upnp.MAX_SSDP + 1)
                    try:
                        return upnp.parse_search_response(data)
                    except upnp.UpnpError as exc:
                        errors.append(str(exc))
            raise PortMapError("no UPnP gateway answered the SSDP search"
                               + (f" ({errors[-1]})" if errors else ""))
        finally:
            sock.close()

    async def _http(self, request: tuple[str, int, bytes]) -> upnp.Response:
        host, port, data = request
        with trio.move_on_after(HTTP_TIMEOUT) as scope:
            stream = await trio.open_tcp_stream(host, port)
            try:
                self.local_ip = stream.socket.getsockname()[0]
                await stream.send_all(data)
                got = bytearray()
                while chunk := await stream.receive_some(16384):
                    got += chunk
                    if len(got) > upnp.MAX_HTTP:
                        raise PortMapError(f"{host}:{port} sent more than {upnp.MAX_HTTP} bytes")
            finally:
                await stream.aclose()
        if scope.cancelled_caught:
            raise PortMapError(f"{host}:{port} did not answer within {HTTP_TIMEOUT:g} s")
        return upnp.parse_http_response(bytes(got))

    async def _call(self, request: tuple[str, int, bytes], action: str) -> dict[str, str]:
        try:
            return upnp.parse_soap_response(await self._http(request), action)
        except OSError as exc:
            raise PortMapError(f"{action}: {exc}") from None

    async def open(self) -> str:
        try:
            location = await self._discover()
            host, port, req = upnp.http_request("GET", location)
            desc = await self._http((host, port, req))
            if desc.status != 200:
                raise PortMapError(f"the device description at {location}: HTTP {desc.status}")
            self.service = upnp.parse_description(desc.body, location)
            return upnp.parse_external_ip(
                await self._call(upnp.external_ip_request(self.service), "GetExternalIPAddress"))
        except (upnp.UpnpError, OSError) as exc:
            raise PortMapError(f"UPnP: {exc}") from None

    async def map(self, port: int, lifetime: int) -> Mapping:
        assert self.service is not None and self.local_ip is not None
        lease = 0 if self.permanent else lifetime
        candidates = [port, *(1024 + (port * 7 + i * 7919) % 64000 for i in range(1, 4))]
        last: Exception | None = None
        for external in candidates:
            try:
                await self._call(upnp.add_port_mapping(
                    self.service, self.local_ip, port, external, lease), "AddPortMapping")
                return Mapping(port, external, lease or LIFETIME)
            except upnp.UpnpError as exc:
                last = exc
                if exc.code == upnp.ONLY_PERMANENT and lease:
                    self.permanent = True
                    return await self.map(port, lifetime)
                if exc.code != upnp.CONFLICT:
                    break
        raise PortMapError(f"UPnP AddPortMapping for {port}: {last}")

    async def unmap(self, port: int, mapping: Mapping) -> None:
        assert self.service is not None
        try:
            await self._call(upnp.delete_port_mapping(self.service, mapping.external),
                             "DeletePortMapping")
        except upnp.UpnpError as exc:
            raise PortMapError(str(exc)) from None

    def close(self) -> None:
        pass


class PortMapper:
    """Keeps a mapping for each of ``ports()`` (TCP) on the router, with the first of
    ``protocols`` it speaks, and reports the external addresses through
    ``on_external(list of (ip, external port, internal port))``."""

    def __init__(self, ports: Callable[[], list[int]],
                 on_external: Callable[[list[tuple[str, int, int]]], None],
                 gateway: str | None = None,
                 protocols: tuple[str, ...] = ("upnp", "natpmp")) -> None:
        self.ports = ports
        self.on_external = on_external
        self.gateway = gateway
        self.protocols = protocols
        self.protocol: str | None = None
        self.mappings: dict[int, Mapping] = {}
        self.external_ip: str | None = None
        self.error: str | None = None

    async def _open(self):
        errors = []
        for name in self.protocols:
            client = (UpnpClient if name == "upnp" else NatPmpClient)(self.gateway)
            try:
                self.external_ip = await client.open()
            except PortMapError as exc:
                client.close()
                errors.append(str(exc))
                continue
            self.protocol = client.name
            return client
        self.error = "; ".join(errors)
        log.info("no port mapping: %s", self.error)
        return None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.gateway = self.gateway or default_gateway()
        if self.gateway is None:
            self.error = "no default gateway"
            return
        client = await self._open()
        if client is None:
            return
        try:
            while True:
                wait = LIFETIME / 2
                for port in self.ports():
                    try:
                        got = await client.map(port, LIFETIME)
                    except PortMapError as exc:
                        self.error = str(exc)
                        log.info("port mapping for %d failed: %s", port, exc)
                        continue
                    if self.mappings.get(port) != got:
                        log.info("router %s maps %s:%d to port %d for %d s (%s)", self.gateway,
                                 self.external_ip, got.external, port, got.lifetime,
                                 client.name)
                    self.mappings[port] = got
                    wait = min(wait, max(got.lifetime / 2, 30.0))
                self.on_external([(self.external_ip, m.external, p)
                                  for p, m in self.mappings.items()])
                await trio.sleep(wait)
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(3):
                    for port, mapping in list(self.mappings.items()):
                        try:
                            await client.unmap(port, mapping)
                            log.info("port mapping for %d removed", port)
                        except (OSError, PortMapError) as exc:
                            log.info("removing the port mapping for %d: %s", port, exc)
                        del self.mappings[port]
            client.close()

    def summary(self) -> dict:
        return {"gateway": self.gateway, "protocol": self.protocol,
                "external_ip": self.external_ip,
                "mappings": {str(p): m.external for p, m in self.mappings.items()},
                "error": self.error}
