"""The lab's DNS server: a tiny authoritative UDP responder for TXT and A records (stdlib only).

Run inside a lab namespace: ``python dnsserver.py ADDR PORT RECORDS.json``. The JSON file
(``{"txt": {name: [text, ...]}, "a": {name: [ipv4, ...]}}``) is read again whenever it
changes, so records can be set after the server started (a peer id known only later).
Unknown names get NXDOMAIN, other query types an empty answer; malformed packets are dropped.
Prints ``dns ready ADDR:PORT`` once it listens.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

TYPE_A, TYPE_TXT = 1, 16


def parse_question(msg: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of question) of a query; ValueError when malformed."""
    if len(msg) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack(">HHH", msg[:6])
    if flags & 0x8000 or qdcount != 1:
        raise ValueError("not a single-question query")
    labels, pos = [], 12
    while True:
        if pos >= len(msg):
            raise ValueError("truncated name")
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(msg) or len(labels) > 127:
            raise ValueError("bad label")
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    if pos + 4 > len(msg):
        raise ValueError("truncated question")
    qtype, _qclass = struct.unpack(">HH", msg[pos : pos + 4])
    return qid, flags, ".".join(labels), qtype, pos + 4


def answer(msg: bytes, records: dict) -> bytes:
    qid, flags, name, qtype, end = parse_question(msg)
    txt = {k.lower().rstrip("."): v for k, v in records.get("txt", {}).items()}
    a = {k.lower().rstrip("."): v for k, v in records.get("a", {}).items()}
    known = name in txt or name in a
    rdatas: list[tuple[int, bytes]] = []
    if qtype == TYPE_TXT:
        for text in txt.get(name, []):
            raw = text.encode()
            rdatas.append(
                (
                    TYPE_TXT,
                    b"".join(
                        bytes([len(raw[i : i + 255])]) + raw[i : i + 255]
                        for i in range(0, max(len(raw), 1), 255)
                    ),
                )
            )
    elif qtype == TYPE_A:
        for addr in a.get(name, []):
            rdatas.append((TYPE_A, socket.inet_aton(addr)))
    body = b"".join(
        b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 30, len(r)) + r for rtype, r in rdatas
    )
    rcode = 0 if known else 3
    header = struct.pack(
        ">HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x80 | rcode, 1, len(rdatas), 0, 0
    )
    return header + msg[12:end] + body


class Records:
    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.data: dict = {}

    def get(self) -> dict:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self.stamp:
                with open(self.path) as fh:
                    self.data = json.load(fh)
                self.stamp = stamp
        except (OSError, ValueError):
            pass  # keep the last good records
        return self.data


def main(argv: list[str]) -> None:
    addr, port, path = argv[0], int(argv[1]), argv[2]
    records = Records(path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print(f"dns ready {addr}:{port}", flush=True)
    while True:
        msg, peer = sock.recvfrom(4096)
        try:
            reply = answer(msg, records.get())
        except ValueError:
            continue
        name = parse_question(msg)[2]
        print(f"query {peer[0]} {name}", flush=True)
        sock.sendto(reply, peer)


if __name__ == "__main__":
    main(sys.argv[1:])
