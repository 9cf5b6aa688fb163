"""``/dnsaddr`` resolution (multiformats/multiaddr protocols/DNSADDR.md) over DNS TXT.

``/dnsaddr/<domain>`` resolves to the multiaddrs in the TXT records of
``_dnsaddr.<domain>`` (``dnsaddr=<multiaddr>``), recursively for entries that are
themselves ``/dnsaddr``; with a trailing ``/p2p/<id>`` only entries for that peer are
kept. The DNS message codec is sans-IO and bounded (RFC 1035: one question, TXT
answers, name compression); :func:`resolve` is the trio edge, one UDP query per name to
the configured resolver.

Public IPFS bootstrap peers (used when bootstrapping is enabled without a list).
"""

from __future__ import annotations

import os
import random
import struct

import trio

from ..errors import P2PDError

DEFAULT_BOOTSTRAP = (
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
)
TYPE_TXT = 16
MAX_DEPTH = 4
MAX_RESULTS = 64
QUERY_TIMEOUT = 5.0


class DNSError(P2PDError, ValueError):
    pass


def encode_query(name: str, qid: int) -> bytes:
    labels = name.rstrip(".").split(".")
    qname = b""
    for label in labels:
        try:
            raw = label.encode("idna") if label else b""
        except UnicodeError:
            raise DNSError(f"invalid DNS name {name!r}") from None
        if not 0 < len(raw) < 64:
            raise DNSError(f"invalid DNS name {name!r}")
        qname += bytes([len(raw)]) + raw
    if len(qname) > 254:
        raise DNSError(f"DNS name too long: {name!r}")
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD, one question
    return header + qname + b"\x00" + struct.pack(">HH", TYPE_TXT, 1)


def _skip_name(msg: bytes, pos: int) -> int:
    for _ in range(128):
        if pos >= len(msg):
            raise DNSError("truncated DNS name")
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            if pos + 2 > len(msg):
                raise DNSError("truncated DNS name pointer")
            return pos + 2
        if n & 0xC0:
            raise DNSError("unsupported DNS label type")
        pos += 1 + n
    raise DNSError("DNS name too long")


def parse_txt_response(msg: bytes, qid: int) -> list[str]:
    """TXT strings of the answers (each record's strings joined), bounded."""
    if len(msg) < 12:
        raise DNSError("DNS response shorter than its header")
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid:
        raise DNSError("DNS response for another query")
    if not flags & 0x8000:
        raise DNSError("not a DNS response")
    rcode = flags & 0xF
    if rcode == 3:
        return []  # NXDOMAIN: no records
    if rcode:
        raise DNSError(f"DNS server answered with error code {rcode}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    out = []
    for _ in range(min(an, MAX_RESULTS)):
        pos = _skip_name(msg, pos)
        if pos + 10 > len(msg):
            raise DNSError("truncated DNS answer")
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[pos : pos + 10])
        pos += 10
        end = pos + rdlen
        if end > len(msg):
            raise DNSError("DNS answer runs past the end")
        if rtype == TYPE_TXT:
            parts, p = [], pos
            while p < end:
                n = msg[p]
                if p + 1 + n > end:
                    raise DNSError("TXT string runs past its record")
                parts.append(msg[p + 1 : p + 1 + n])
                p += 1 + n
            try:
                out.append(b"".join(parts).decode("utf-8"))
            except UnicodeDecodeError:
                pass  # not ours to read; other records still count
        pos = end
    return out


def resolver_address(configured: str | None = None) -> tuple[str, int]:
    """``P2PD_DNS_RESOLVER`` (host:port), else the config value, else resolv.conf."""
    text = os.environ.get("P2PD_DNS_RESOLVER") or configured
    if not text:
        try:
            with open("/etc/resolv.conf") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        text = parts[1]
                        break
        except OSError:
            pass
    if not text:
        raise DNSError("no DNS resolver configured")
    host, sep, port = text.rpartition(":")
    if not sep or "." not in host and ":" not in host:
        return text, 53
    return host, int(port)


async def query_txt(name: str, resolver: tuple[str, int],
                    timeout: float = QUERY_TIMEOUT) -> list[str]:
    qid = random.getrandbits(16)
    packet = encode_query(name, qid)
    family = trio.socket.AF_INET6 if ":" in resolver[0] else trio.socket.AF_INET
    with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(resolver)
        await sock.send(packet)
        with trio.fail_after(timeout):
            while True:
                data = await sock.recv(4096)
                try:
                    return parse_txt_response(data, qid)
                except DNSError as exc:
                    if "another query" in str(exc):
                        continue
                    raise


async def resolve(addr: str, resolver: tuple[str, int], depth: int = 0) -> list[str]:
    """Multiaddrs (text) that ``addr`` stands for; non-dnsaddr addresses are returned as is."""
    if not addr.startswith("/dnsaddr/"):
        return [addr]
    if depth >= MAX_DEPTH:
        raise DNSError(f"/dnsaddr nested deeper than {MAX_DEPTH}")
    parts = addr.split("/")
    domain = parts[2]
    want = parts[4] if len(parts) >= 5 and parts[3] == "p2p" else None
    out: list[str] = []
    for txt in await query_txt(f"_dnsaddr.{domain}", resolver):
        if not txt.startswith("dnsaddr="):
            continue
        entry = txt[len("dnsaddr="):]
        if want is not None and not entry.endswith(f"/p2p/{want}"):
            continue
        out.extend(await resolve(entry, resolver, depth + 1))
        if len(out) >= MAX_RESULTS:
            break
    return out[:MAX_RESULTS]
