"""A 64 MiB file through our gateway (`GET /ipfs/CID` on the `-httpAddr` listener, the file
added with `p2pd add --cid-version=1`, served from the daemon's RocksDB) vs a Helia gateway
(tests/interop/helia_gateway.mjs: @helia/verified-fetch over Helia's in-memory blockstore,
the same file imported with the same layout, so the CID is the same).

One client for both (a plain socket: the request, then reads of 1 MiB until the body is
complete), alternating runs; the best of each counts. Time to first byte is from sending the
request to the first body byte (lower is better: its ratio is theirs / ours); MiB/s is the
body size over the whole response time.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench.blocknodes import cleanup, random_file
from bench.common import row
from bench.peers import INTEROP

PEER = "@helia/verified-fetch 8.0.4 on helia 7.1.15 (node http server)"


class OurGateway:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="p2pd-bg", dir="/tmp"))
        self.control = f"/unix{self.tmp}/c.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pd", "-listen", self.control, "-hostAddrs",
             "/ip4/127.0.0.1/tcp/0", "-httpAddr", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = 0
        for line in self.proc.stderr:
            if m := re.search(r"status page on http://127\.0\.0\.1:(\d+)/", line):
                self.port = int(m.group(1))
                break
        if not self.port:
            raise RuntimeError("our daemon did not start its HTTP listener")
        subprocess.run([sys.executable, "-m", "p2pd", "id", "--api", self.control],
                       check=True, capture_output=True, timeout=60)  # ready

    def add(self, path: Path) -> str:
        out = subprocess.run([sys.executable, "-m", "p2pd", "add", "-Q", "--cid-version=1",
                              str(path), "--api", self.control],
                             check=True, capture_output=True, text=True, timeout=600)
        return out.stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class HeliaGateway:
    def __init__(self, path: Path) -> None:
        node = shutil.which("node")
        if node is None or not (INTEROP / "node_modules" / "@helia" / "verified-fetch").is_dir():
            raise SystemExit("this benchmark needs node and `npm ci` in tests/interop")
        self.proc = subprocess.Popen([node, str(INTEROP / "helia_gateway.mjs"), str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        info = json.loads(self.proc.stdout.readline())
        self.cid, self.port = info["cid"], info["port"]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def fetch(port: int, cid: str, size: int) -> tuple[float, float]:
    """``(seconds to the first body byte, seconds to the last)`` of one GET."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        s.sendall(f"GET /ipfs/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed before the head")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"gateway answered {head[:80]!r}")
        chunked = b"transfer-encoding: chunked" in head.lower()
        while not body:
            body = s.recv(1 << 20)
        first = time.perf_counter() - t0
        got = len(body)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        total = time.perf_counter() - t0
    if not chunked and got != size:
        raise RuntimeError(f"body of {got} bytes, expected {size}")
    if chunked and got < size:
        raise RuntimeError(f"chunked body of {got} bytes, expected at least {size}")
    return first, total


def run(quick: bool = False) -> Iterable[dict]:
    size = (8 if quick else 64) << 20
    path = random_file(size)
    ours = OurGateway()
    theirs = None
    try:
        cid = ours.add(path)
        theirs = HeliaGateway(path)
        assert theirs.cid == cid, (theirs.cid, cid)
        best = {"ours": [float("inf"), float("inf")], "theirs": [float("inf"), float("inf")]}
        for _ in range(2 if quick else 5):
            for name, port in (("ours", ours.port), ("theirs", theirs.port)):
                first, total = fetch(port, cid, size)
                best[name][0] = min(best[name][0], first)
                best[name][1] = min(best[name][1], total)
        mib = size / (1 << 20)
        yield row("gateway", f"GET /ipfs/CID of {size >> 20} MiB: time to first byte",
                  best["ours"][0] * 1000, "ms", PEER, best["theirs"][0] * 1000,
                  higher_is_better=False)
        yield row("gateway", f"GET /ipfs/CID of {size >> 20} MiB: throughput",
                  mib / best["ours"][1], "MiB/s", PEER, mib / best["theirs"][1])
    finally:
        ours.stop()
        if theirs is not None:
            theirs.stop()
        cleanup(path)
