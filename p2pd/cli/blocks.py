"""``p2pd add|cat|get|pin|repo|block``: block commands of a running daemon.

Long operations (add, get, cat) draw a progress bar (bytes, rate, ETA) on stderr when
stderr is a terminal, and stay quiet in pipes and files. Errors are one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..blocks.cid import CID
from ..errors import InvalidCID, P2PDError
from ..proto import daemon_pb2 as pb
from .client import ControlClient

B = pb.BlocksRequest
COMMANDS = ("cat", "get", "pin", "repo", "block")


def add_parsers(sub) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--api", metavar="MULTIADDR", default=None,
                       help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
        p.add_argument("--timeout", type=float, default=0,
                       help="give up after this many seconds (default: never)")
        p.add_argument("--offline", action="store_true", help="use only blocks stored here")
        return p

    p = common(sub.add_parser("cat", help="write a file's bytes to stdout"))
    p.add_argument("cid")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p = common(sub.add_parser("get", help="fetch a file or directory into PATH"))
    p.add_argument("cid")
    p.add_argument("-o", "--output", default=None, help="where to write it (default: the CID)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    pin = sub.add_parser("pin", help="pin add|rm|ls")
    pin_sub = pin.add_subparsers(dest="pin_command", required=True)
    p = common(pin_sub.add_parser("add", help="fetch (if needed) and pin a DAG"))
    p.add_argument("cid")
    p = common(pin_sub.add_parser("rm", help="unpin (repo gc then removes the blocks)"))
    p.add_argument("cid")
    p = common(pin_sub.add_parser("ls", help="list pins"))
    p.add_argument("--json", action="store_true")
    repo = sub.add_parser("repo", help="repo gc|stat")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True)
    common(repo_sub.add_parser("gc", help="remove every block no pin reaches"))
    p = common(repo_sub.add_parser("stat", help="blocks, pins, Bitswap counters"))
    p.add_argument("--json", action="store_true")
    p = common(repo_sub.add_parser("verify", help="re-hash every block, check every pin"))
    p.add_argument("--json", action="store_true")
    block = sub.add_parser("block", help="block get|put|stat")
    block_sub = block.add_subparsers(dest="block_command", required=True)
    p = common(block_sub.add_parser("get", help="write a raw block to stdout"))
    p.add_argument("cid")
    p = common(block_sub.add_parser("put", help="store a block read from FILE (or stdin)"))
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--format", choices=("raw", "dag-pb"), default="raw")
    p.add_argument("--cid-version", type=int, choices=(0, 1), default=1)
    p = common(block_sub.add_parser("stat", help="a block's size"))
    p.add_argument("cid")


def _cid_bytes(text: str) -> bytes:
    text = text.strip()
    if text.startswith("/ipfs/"):
        text = text[len("/ipfs/"):].split("/")[0]
    try:
        return CID.decode(text).to_bytes()
    except InvalidCID as exc:
        raise P2PDError(str(exc)) from None


def _client(args) -> ControlClient:
    # Fetches can take long: the socket waits as long as the request may.
    timeout = args.timeout if args.timeout else 24 * 3600.0
    return ControlClient.for_address(args.api, timeout + 30)


def _request(args, **fields) -> pb.Request:
    req = pb.BlocksRequest(**fields)
    if getattr(args, "timeout", 0):
        req.timeout = max(1, int(args.timeout))
    if getattr(args, "offline", False):
        req.offline = True
    return pb.Request(type=pb.Request.BLOCKS, blocks=req)


class ProgressBar:
    """``[#####     ] 45% 120.0 MiB 85.3 MiB/s ETA 2s`` on a terminal; nothing otherwise."""

    def __init__(self, label: str, enabled: bool | None = None, stream=sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.label = label
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, done: int, total: int = 0, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        text = f"{self.label} {_size(done)}"
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 20)
            eta = (total - done) / rate if rate > 0 else 0
            text = f"{self.label} [{bar:<20}] {frac:4.0%} {_size(done)}/{_size(total)}"
            text += f" {_size(rate)}/s ETA {eta:.0f}s"
        else:
            text += f" {_size(rate)}/s"
        self.stream.write("\r" + text[:120].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def add_via_daemon(client: ControlClient, path: str, *, chunk_size: int, cid_version: int,
                   raw_leaves: bool | None, pin: bool = True, progress: bool | None = None):
    """``p2pd add`` through a running daemon; returns the final BlocksResponse."""
    req = pb.BlocksRequest(type=B.ADD, path=os.path.abspath(path), chunkSize=chunk_size,
                           cidVersion=cid_version, pin=pin)
    if raw_leaves is not None:
        req.rawLeaves = raw_leaves
    bar = ProgressBar("adding", progress)
    req.progress = bar.enabled
    try:
        final = client.request_progress(pb.Request(type=pb.Request.BLOCKS, blocks=req),
                                        lambda r: bar.update(r.done, r.total))
    finally:
        bar.close()
    return final


def run(args: argparse.Namespace) -> int:
    client = _client(args)
    cmd = args.command
    if cmd == "cat":
        bar = ProgressBar("cat", args.progress)
        out = sys.stdout.buffer
        size = None
        done = 0
        try:
            for piece in client.request_bytes(_request(args, type=B.CAT, cid=_cid_bytes(args.cid))):
                if isinstance(piece, int):
                    size = piece
                    continue
                out.write(piece)
                done += len(piece)
                bar.update(done, size or 0)
            out.flush()
        finally:
            bar.close()
        if size is not None and done != size:
            raise P2PDError(f"cat stopped after {done} of {size} bytes")
        return 0
    if cmd == "get":
        cid = _cid_bytes(args.cid)
        dest = os.path.abspath(args.output or CID.from_bytes(cid).encode())
        bar = ProgressBar("fetching", args.progress)
        req = _request(args, type=B.GET, cid=cid, path=dest)
        req.blocks.progress = bar.enabled
        try:
            final = client.request_progress(req, lambda r: bar.update(r.done, r.total))
        finally:
            bar.close()
        print(f"saved {CID.from_bytes(cid)} to {dest} ({final.size} bytes)")
        return 0
    if cmd == "pin":
        sub = args.pin_command
        if sub == "ls":
            pins = client.request(_request(args, type=B.PIN_LS)).blocks.pins
            rows = [{"cid": str(CID.from_bytes(p.cid)), "name": p.name, "created": p.created}
                    for p in pins]
            if args.json:
                print(json.dumps(rows))
            else:
                for row in rows:
                    print(f"{row['cid']} recursive {row['name']}".rstrip())
            return 0
        kind = B.PIN_ADD if sub == "add" else B.PIN_RM
        r = client.request(_request(args, type=kind, cid=_cid_bytes(args.cid)))
        print(f"{'pinned' if sub == 'add' else 'unpinned'} {CID.from_bytes(r.blocks.cid)}")
        return 0
    if cmd == "repo":
        if args.repo_command == "gc":
            r = client.request(_request(args, type=B.GC)).blocks
            print(f"removed {r.blocks} blocks ({_size(r.size)})")
            return 0
        kind = B.VERIFY if args.repo_command == "verify" else B.STAT
        stats = json.loads(client.request(_request(args, type=kind)).blocks.stats)
        if args.json:
            print(json.dumps(stats))
        else:
            for key, value in stats.items():
                print(f"{key}: {value}")
        if args.repo_command == "verify" and (stats["blocks_bad"] or stats["pins_incomplete"]):
            return 1
        return 0
    if cmd == "block":
        sub = args.block_command
        if sub == "get":
            r = client.request(_request(args, type=B.BLOCK_GET, cid=_cid_bytes(args.cid)))
            sys.stdout.buffer.write(r.blocks.data)
            sys.stdout.buffer.flush()
            return 0
        if sub == "put":
            from ..blocks.multicodec import Codec

            data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
            codec = Codec.RAW if args.format == "raw" else Codec.DAG_PB
            r = client.request(_request(args, type=B.BLOCK_PUT, data=data, codec=codec,
                                        cidVersion=args.cid_version))
            print(CID.from_bytes(r.blocks.cid))
            return 0
        r = client.request(_request(args, type=B.BLOCK_STAT, cid=_cid_bytes(args.cid)))
        print(f"Key: {CID.from_bytes(r.blocks.cid)}\nSize: {r.blocks.size}")
        return 0
    return 2
