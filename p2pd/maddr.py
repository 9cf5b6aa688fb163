"""Multiaddrs between binary and text without py-multiaddr.

``p2pd id`` and ``p2pd peers`` print the addresses the daemon sends, and the daemon parses
its listen addresses and prints its ready lines; importing py-multiaddr for that costs
~10-40 ms (netaddr), a sixth of a command's start. This covers the protocols a libp2p node
announces (multiformats/multiaddr protocols.csv); :func:`text` asks py-multiaddr for any
other, and :func:`from_text` leaves anything it does not read exactly to py-multiaddr.
"""

from __future__ import annotations

import socket

from .blocks.multibase import b58decode, b58encode
from .varint import decode_uvarint, encode_uvarint

#: code -> (name, value size in bytes: 0 none, -1 varint-length-prefixed)
_PROTOCOLS: dict[int, tuple[str, int]] = {
    4: ("ip4", 4), 6: ("tcp", 2), 33: ("dccp", 2), 41: ("ip6", 16), 42: ("ip6zone", -1),
    43: ("ipcidr", 1), 53: ("dns", -1), 54: ("dns4", -1), 55: ("dns6", -1),
    56: ("dnsaddr", -1), 132: ("sctp", 2), 273: ("udp", 2), 280: ("webrtc-direct", 0),
    281: ("webrtc", 0), 290: ("p2p-circuit", 0), 301: ("udt", 0), 302: ("utp", 0),
    400: ("unix", -1), 421: ("p2p", -1), 443: ("https", 0), 448: ("tls", 0),
    449: ("sni", -1), 454: ("noise", 0), 460: ("quic", 0), 461: ("quic-v1", 0),
    465: ("webtransport", 0), 477: ("ws", 0), 478: ("wss", 0), 480: ("http", 0),
}
_TEXT = {42, 53, 54, 55, 56, 449}
#: what a unix path holds unescaped (urllib's quote with "/" safe, as py-multiaddr writes it)
_PATH_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/"


def to_text(raw: bytes) -> str | None:
    """``/ip4/1.2.3.4/tcp/4001/p2p/12D3...`` from the binary form; None when ``raw``
    holds a protocol not listed here or is malformed (the caller decides)."""
    out = []
    pos = 0
    try:
        while pos < len(raw):
            code, pos = decode_uvarint(raw, pos)
            entry = _PROTOCOLS.get(code)
            if entry is None:
                return None
            name, size = entry
            if size == -1:
                size, pos = decode_uvarint(raw, pos)
            value = raw[pos:pos + size]
            if len(value) != size:
                return None
            pos += size
            out.append(name)
            if not size:
                continue
            if code == 4:
                out.append(".".join(str(b) for b in value))
            elif code == 41:
                out.append(socket.inet_ntop(socket.AF_INET6, value))
            elif code in (6, 33, 132, 273):
                out.append(str(int.from_bytes(value, "big")))
            elif code == 43:
                out.append(str(value[0]))
            elif code == 421:
                out.append(b58encode(value))
            elif code == 400:  # a path: go writes its leading "/", py-multiaddr not
                text = value.decode()
                if text.strip(_PATH_SAFE):  # py-multiaddr percent-escapes the rest
                    return None
                out.append(text[1:] if text.startswith("/") else text)
            elif code in _TEXT:
                text = value.decode()
                if not text or "/" in text:
                    return None
                out.append(text)
    except (ValueError, UnicodeDecodeError):  # InvalidVarint is a ValueError
        return None
    return "/" + "/".join(out) if out else None


def text(raw: bytes) -> str:
    """Text form of a binary multiaddr: :func:`to_text`, else py-multiaddr's, else
    ``0x`` and the bytes in hex (something nobody can parse should still print)."""
    out = to_text(raw)
    if out is not None:
        return out
    try:
        import multiaddr  # a protocol not listed here

        return str(multiaddr.Multiaddr(raw))
    except Exception:
        return "0x" + bytes(raw).hex()


_CODES = {name: (code, size) for code, (name, size) in _PROTOCOLS.items()}
#: what from_text reads (the rest, e.g. /unix paths, /ipcidr and the names of /dns* and
#: /sni, which py-multiaddr checks label by label, is py-multiaddr's)
_FROM_TEXT = {4, 6, 41, 273, 421, 443, 448, 454, 460, 461, 465, 477, 478, 480, 290, 280, 281}


def from_text(text: str) -> bytes | None:
    """The binary form of ``/ip4/1.2.3.4/tcp/4001/p2p/12D3...``; None when ``text`` holds
    anything not read exactly here (the caller asks py-multiaddr, which also says what is
    wrong with a bad address)."""
    if not text.startswith("/") or text.endswith("/") and text != "/":
        return None
    parts = text[1:].split("/")
    out = bytearray()
    i = 0
    try:
        while i < len(parts):
            entry = _CODES.get(parts[i])
            if entry is None or entry[0] not in _FROM_TEXT:
                return None
            code, size = entry
            out += encode_uvarint(code)
            i += 1
            if not size:
                continue
            if i >= len(parts):
                return None
            value, i = parts[i], i + 1
            if code == 4:
                if value.count(".") != 3 or not all(p.isdigit() and p == str(int(p))
                                                    for p in value.split(".")):
                    return None
                out += socket.inet_pton(socket.AF_INET, value)
            elif code == 41:
                if "%" in value or "." in value:
                    return None
                out += socket.inet_pton(socket.AF_INET6, value)
            elif code in (6, 273):
                if not value.isdigit() or value != str(int(value)) or int(value) > 65535:
                    return None
                out += int(value).to_bytes(2, "big")
            elif code == 421:
                if not (value.startswith("12D3Koo") or value.startswith("Qm")):
                    return None  # a CID form: py-multiaddr's
                raw = b58decode(value)
                if not (raw[:2] == b"\x12\x20" and len(raw) == 34
                        or raw[:1] == b"\x00" and len(raw) > 2 and raw[1] == len(raw) - 2):
                    return None  # not a sha256 or identity multihash
                out += encode_uvarint(len(raw)) + raw
            else:
                return None
    except (ValueError, OSError):
        return None
    return bytes(out) if out else None
