"""UPnP IGD port mapping, sans-IO: the SSDP search and its answers, the gateway's device
description, and the SOAP calls of the WANIPConnection / WANPPPConnection service
(UPnP Device Architecture 1.1; IGD:1 and IGD:2, the calls both versions have).

The trio edge that sends these lives in :mod:`p2pd.net.portmap`. Everything here parses
bytes a device on the LAN sent, so every parser bounds its input, refuses what it cannot
read with :class:`UpnpError`, and reads XML only without a DOCTYPE (no entity expansion,
no external entities).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

SSDP_ADDR = ("239.255.255.250", 1900)
SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)
#: the services that map ports, best first
SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
MAX_SSDP = 2048
MAX_HTTP = 65536
DESCRIPTION = "p2pd"
#: UPnP error codes the mapper acts on
CONFLICT = 718  # ConflictInMappingEntry: another host holds that external port
ONLY_PERMANENT = 725  # OnlyPermanentLeasesSupported: ask again with lease 0
NO_SUCH_ENTRY = 714


class UpnpError(Exception):
    """A device's answer we cannot use, or a UPnP fault it sent (``code`` then set)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def search_request(target: str = SEARCH_TARGETS[1], mx: int = 2) -> bytes:
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {SSDP_ADDR[0]}:{SSDP_ADDR[1]}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {target}\r\n\r\n"
    ).encode()


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpnpError(f"not a header line: {line[:60]!r}")
        out[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return out


def parse_search_response(data: bytes) -> str:
    """The LOCATION (device description URL) of an SSDP answer for a gateway device."""
    if len(data) > MAX_SSDP:
        raise UpnpError(f"an SSDP answer of {len(data)} bytes")
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head or not head[0].startswith(b"HTTP/1.") or b" 200" not in head[0][:13]:
        raise UpnpError(f"not an SSDP answer: {head[0][:60]!r}")
    headers = _headers(head[1:])
    if "InternetGatewayDevice" not in headers.get("st", "") and \
            "WAN" not in headers.get("st", ""):
        raise UpnpError(f"not a gateway: ST {headers.get('st', '')[:80]!r}")
    location = headers.get("location", "")
    parts = urlsplit(location)
    try:
        parts.port  # noqa: B018 (a bad port raises)
    except ValueError:
        raise UpnpError(f"bad LOCATION {location[:80]!r}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise UpnpError(f"bad LOCATION {location[:80]!r}")
    return location


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise UpnpError("a truncated chunked body")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise UpnpError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            raise UpnpError("a truncated chunk")
        out += rest[:size]
        body = rest[size + 2:]


def parse_http_response(data: bytes) -> Response:
    """A whole HTTP/1.x answer (the connection was closed after it)."""
    if len(data) > MAX_HTTP:
        raise UpnpError(f"an HTTP answer over {MAX_HTTP} bytes")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise UpnpError("an HTTP answer without the end of its headers")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise UpnpError(f"not an HTTP status line: {lines[0][:60]!r}")
    headers = _headers(lines[1:])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise UpnpError("a bad Content-Length") from None
        if length < 0 or len(body) < length:
            raise UpnpError(f"a body of {len(body)} bytes, {length} announced")
        body = body[:length]
    return Response(int(status[1]), headers, body)


def http_request(method: str, url: str, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """``(host, port, request bytes)`` for ``url`` (http only)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or any(c in url for c in "\r\n "):
        raise UpnpError(f"not an http URL: {url[:80]!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise UpnpError(f"not an http URL: {url[:80]!r}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}:{port}",
             "Connection: close", "User-Agent: p2pd UPnP/1.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _xml(data: bytes) -> ET.Element:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UpnpError("an XML document with a DOCTYPE (refused: entities)")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise UpnpError(f"malformed XML: {exc}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(slots=True, frozen=True)
class Service:
    service_type: str
    control_url: str


def parse_description(data: bytes, location: str) -> Service:
    """The best port-mapping service in a device description fetched from ``location``."""
    root = _xml(data)
    base = location
    found: dict[str, str] = {}
    for el in root.iter():
        name = _local(el.tag)
        if name == "URLBase" and el.text:
            base = el.text.strip()
        elif name == "service":
            kids = {_local(c.tag): (c.text or "").strip() for c in el}
            if kids.get("serviceType") in SERVICES and kids.get("controlURL"):
                found.setdefault(kids["serviceType"], kids["controlURL"])
    for kind in SERVICES:
        if kind in found:
            url = urljoin(base, found[kind])
            if urlsplit(url).scheme != "http":
                raise UpnpError(f"a control URL that is not http: {url[:80]!r}")
            return Service(kind, url)
    raise UpnpError("the device offers no WANIPConnection or WANPPPConnection service")


def soap_request(service: Service, action: str, args: list[tuple[str, str]]) -> tuple[
        str, int, bytes]:
    from xml.sax.saxutils import escape

    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in args)
    body = (
        '<?xml version="1.0"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action} xmlns:u="{service.service_type}">{inner}</u:{action}>'
        "</s:Body></s:Envelope>"
    ).encode()
    return http_request("POST", service.control_url, body, {
        "Content-Type": 'text/xml; charset="utf-8"',
        "SOAPAction": f'"{service.service_type}#{action}"',
    })


def parse_soap_response(response: Response, action: str) -> dict[str, str]:
    """The out-arguments of ``action``'s answer; a UPnP fault raises with its code."""
    root = _xml(response.body) if response.body.strip() else None
    if response.status != 200:
        code, text = None, f"HTTP {response.status}"
        if root is not None:
            for el in root.iter():
                if _local(el.tag) == "errorCode" and (el.text or "").strip().isdigit():
                    code = int(el.text.strip())
                elif _local(el.tag) == "errorDescription" and el.text:
                    text = el.text.strip()[:120]
        raise UpnpError(f"{action}: {text}" + (f" (UPnP error {code})" if code else ""), code)
    if root is None:
        raise UpnpError(f"{action}: an empty answer")
    for el in root.iter():
        if _local(el.tag) == f"{action}Response":
            return {_local(c.tag): (c.text or "").strip() for c in el}
    raise UpnpError(f"{action}: no {action}Response in the answer")


def add_port_mapping(service: Service, internal_client: str, internal: int, external: int,
                     lease: int, protocol: str = "TCP") -> tuple[str, int, bytes]:
    return soap_request(service, "AddPortMapping", [
        ("NewRemoteHost", ""), ("NewExternalPort", str(external)),
        ("NewProtocol", protocol), ("NewInternalPort", str(internal)),
        ("NewInternalClient", internal_client), ("NewEnabled", "1"),
        ("NewPortMappingDescription", DESCRIPTION), ("NewLeaseDuration", str(lease)),
    ])


def delete_port_mapping(service: Service, external: int, protocol: str = "TCP") -> tuple[
        str, int, bytes]:
    return soap_request(service, "DeletePortMapping", [
        ("NewRemoteHost", ""), ("NewExternalPort", str(external)), ("NewProtocol", protocol)])


def external_ip_request(service: Service) -> tuple[str, int, bytes]:
    return soap_request(service, "GetExternalIPAddress", [])


def parse_external_ip(args: dict[str, str]) -> str:
    value = args.get("NewExternalIPAddress", "")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise UpnpError(f"not an external IPv4 address: {value[:40]!r}") from None
