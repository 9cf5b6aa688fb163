"""Identify (``/ipfs/id/1.0.0``) and identify push (``/ipfs/id/push/1.0.0``), sans-IO.

The message (libp2p identify spec): ``publicKey`` 1, ``listenAddrs`` 2 (repeated, binary
multiaddrs), ``protocols`` 3 (repeated), ``observedAddr`` 4, ``protocolVersion`` 5,
``agentVersion`` 6, ``signedPeerRecord`` 8. The side that opened the stream reads one
uvarint-length-delimited message and the other side closes the stream after writing it;
a push carries the same message the other way. Sizes are bounded (the whole message, the
counts and lengths of addresses and protocols): a message over them is refused whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import P2PDError
from ..protobuf import field_bytes, iter_fields
from ..varint import encode_uvarint

ID = "/ipfs/id/1.0.0"
PUSH = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
#: go-libp2p's limit on an identify message.
MAX_MESSAGE = 64 * 1024
MAX_ADDRS = 128
MAX_PROTOCOLS = 256
MAX_PROTOCOL_LEN = 1024


class IdentifyError(P2PDError):
    """An identify message we refuse; the peer is not identified by it."""


@dataclass(slots=True)
class Identify:
    public_key: bytes = b""
    listen_addrs: list[bytes] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    observed_addr: bytes = b""
    protocol_version: str = ""
    agent_version: str = ""
    signed_peer_record: bytes = b""

    def encode(self) -> bytes:
        out = bytearray()
        if self.public_key:
            out += field_bytes(1, self.public_key)
        for addr in self.listen_addrs:
            out += field_bytes(2, addr)
        for proto in self.protocols:
            out += field_bytes(3, proto.encode())
        if self.observed_addr:
            out += field_bytes(4, self.observed_addr)
        if self.protocol_version:
            out += field_bytes(5, self.protocol_version.encode())
        if self.agent_version:
            out += field_bytes(6, self.agent_version.encode())
        if self.signed_peer_record:
            out += field_bytes(8, self.signed_peer_record)
        return bytes(out)

    def framed(self) -> bytes:
        body = self.encode()
        return encode_uvarint(len(body)) + body


def decode(data: bytes) -> Identify:
    """One identify message (without its length prefix)."""
    if len(data) > MAX_MESSAGE:
        raise IdentifyError(f"identify message of {len(data)} bytes (limit {MAX_MESSAGE})")
    msg = Identify()
    try:
        for num, wire, value in iter_fields(data):
            if wire != 2:
                continue  # a field of a newer version, or a type we do not use
            if num == 1:
                msg.public_key = value
            elif num == 2:
                if len(msg.listen_addrs) >= MAX_ADDRS:
                    raise IdentifyError(f"more than {MAX_ADDRS} listen addresses")
                msg.listen_addrs.append(value)
            elif num == 3:
                if len(msg.protocols) >= MAX_PROTOCOLS:
                    raise IdentifyError(f"more than {MAX_PROTOCOLS} protocols")
                if len(value) > MAX_PROTOCOL_LEN:
                    raise IdentifyError("a protocol id over 1 KiB")
                msg.protocols.append(value.decode())
            elif num == 4:
                msg.observed_addr = value
            elif num == 5:
                msg.protocol_version = value.decode()
            elif num == 6:
                msg.agent_version = value.decode()
            elif num == 8:
                msg.signed_peer_record = value
    except IdentifyError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdentifyError(f"malformed identify message: {exc}") from None
    return msg


__all__ = ["ID", "PUSH", "Identify", "IdentifyError", "decode"]
