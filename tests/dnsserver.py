"""A tiny local DNS server answering TXT queries from a dict (tests only, 127.0.0.1)."""

from __future__ import annotations

import socket
import struct
import threading


def _qname(msg: bytes) -> tuple[str, int]:
    labels, pos = [], 12
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1 : pos + 1 + n].decode())
        pos += 1 + n
    return ".".join(labels), pos + 1


class TxtServer:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.queries: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            qid = struct.unpack(">H", msg[:2])[0]
            name, end = _qname(msg)
            self.queries.append(name)
            answers = self.records.get(name)
            rcode = 0 if answers is not None else 3
            body = b""
            for txt in answers or []:
                raw = txt.encode()
                rdata = b"".join(bytes([len(raw[i : i + 255])]) + raw[i : i + 255]
                                 for i in range(0, len(raw), 255))
                body += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 60, len(rdata)) + rdata
            header = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(answers or []), 0, 0)
            self.sock.sendto(header + msg[12:end + 4] + body, peer)

    def close(self) -> None:
        self.sock.close()
