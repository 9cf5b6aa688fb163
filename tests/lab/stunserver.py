"""A minimal STUN (RFC 5389) binding server for the lab: ``python stunserver.py ADDR PORT``.

Answers every Binding request with the sender's address as XOR-MAPPED-ADDRESS, from the
address it was sent to (CHANGE-REQUEST is ignored). miniupnpd asks it for the router's
public address, which it will not take from its own configuration when that address is in a
documentation range. Prints ``stun ready ADDR:PORT``.
"""

from __future__ import annotations

import socket
import struct
import sys

MAGIC = 0x2112A442


def response(request: bytes, addr: str, port: int) -> bytes | None:
    if len(request) < 20:
        return None
    mtype, _length, magic = struct.unpack(">HHI", request[:8])
    if mtype != 0x0001:
        return None
    tid = request[8:20]
    xport = port ^ (MAGIC >> 16)
    xaddr = struct.unpack(">I", socket.inet_aton(addr))[0] ^ MAGIC
    attr = struct.pack(">HHBBHI", 0x0020, 8, 0, 1, xport, xaddr)
    if magic != MAGIC:  # RFC 3489 client: plain MAPPED-ADDRESS
        attr = struct.pack(">HHBBH4s", 0x0001, 8, 0, 1, port, socket.inet_aton(addr))
    return struct.pack(">HHI", 0x0101, len(attr), magic) + tid + attr


def main(argv: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((argv[0], int(argv[1])))
    print(f"stun ready {argv[0]}:{argv[1]}", flush=True)
    while True:
        msg, peer = sock.recvfrom(2048)
        reply = response(msg, *peer)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main(sys.argv[1:])
