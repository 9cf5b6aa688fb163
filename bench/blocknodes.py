"""Nodes the block benchmarks drive: our daemons (home mode, real RocksDB) through the
control socket, and Helia 7 nodes (tests/interop/helia_node.mjs) through JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import DAEMON_CONFIG, INTEROP
from p2pd.blocks.cid import CID
from p2pd.cli.client import ControlClient
from p2pd.proto import daemon_pb2 as pb

B = pb.BlocksRequest


class OurNode:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="p2pd-bb", dir="/tmp"))
        home = self.tmp / "home"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text(DAEMON_CONFIG.format(security="noise"))  # as Helia
        self.proc = subprocess.Popen([sys.executable, "-m", "p2pd"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, P2PD_HOME=str(home)))
        lines = [self.proc.stdout.readline().strip() for _ in range(4)]
        if not lines[1].startswith("Peer ID: "):
            self.stop()
            raise RuntimeError(f"daemon did not start: {lines}")
        self.peer_id = lines[1][len("Peer ID: "):]
        self.addr = f"{lines[3]}/p2p/{self.peer_id}"
        self.client = ControlClient.for_address(f"/unix{home}/p2pd.sock", 3600)

    def blocks(self, **fields) -> pb.BlocksResponse:
        return self.client.request(pb.Request(type=pb.Request.BLOCKS,
                                              blocks=pb.BlocksRequest(**fields))).blocks

    def add(self, path: Path) -> tuple[str, float]:
        t0 = time.perf_counter()
        r = self.blocks(type=B.ADD, path=str(path), cidVersion=1, rawLeaves=True)
        return str(CID.from_bytes(r.cid)), time.perf_counter() - t0

    def get(self, cid: str, dest: Path) -> float:
        t0 = time.perf_counter()
        self.blocks(type=B.GET, cid=CID.decode(cid).to_bytes(), path=str(dest))
        return time.perf_counter() - t0

    def gc_unpinned(self) -> None:
        self.blocks(type=B.GC)

    def connect(self, addr: str) -> None:
        import multiaddr

        from p2pd.blocks.multibase import b58decode

        ma = multiaddr.Multiaddr(addr)
        peer = b58decode(ma.value_for_protocol("p2p"))
        bare = ma.decapsulate_code(multiaddr.protocols.P_P2P)
        self.client.connect(peer, [bare.to_bytes()])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class HeliaNode:
    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (INTEROP / "node_modules").is_dir():
            raise SystemExit("this benchmark needs node and `npm ci` in tests/interop")
        self.proc = subprocess.Popen([node, str(INTEROP / "helia_node.mjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.peer_id, self.addr = info["peerId"], info["addrs"][0]

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def random_file(size: int) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="p2pd-bf", dir="/tmp"))
    path = tmp / "data.bin"
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n
    return path


def cleanup(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)
