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
from ..errors import P2PDError
from ..proto import daemon_pb2 as pb
from .client import ControlClient, RequestFailed

B = pb.BlocksRequest
COMMANDS = ("cat", "get", "ls", "pin", "repo", "block")


def add_parsers(sub) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--api", metavar="MULTIADDR", default=None,
                       help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
        p.add_argument("--timeout", type=float, default=0,
                       help="give up after this many seconds (default: never)")
        p.add_argument("--offline", action="store_true", help="use only blocks stored here")
        return p

    def json_flag(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    p = common(sub.add_parser("cat", help="write a file's bytes to stdout"))
    p.add_argument("cid", help="CID, CID/path/in/dir or /ipfs/CID/path")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p = json_flag(common(sub.add_parser("get", help="fetch a file or directory into PATH")))
    p.add_argument("cid", help="CID, CID/path/in/dir or /ipfs/CID/path")
    p.add_argument("-o", "--output", default=None,
                   help="where to write it; - for stdout (a file only); default: its name")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p = json_flag(common(sub.add_parser("ls", help="list a directory: CID, size, name of "
                                                  "each entry (a file: its chunks)")))
    p.add_argument("cid", help="CID, CID/path/in/dir or /ipfs/CID/path")
    pin = sub.add_parser("pin", help="pin add|rm|ls")
    pin_sub = pin.add_subparsers(dest="pin_command", required=True)
    p = json_flag(common(pin_sub.add_parser("add", help="fetch (if needed) and pin a DAG")))
    p.add_argument("cid")
    p = json_flag(common(pin_sub.add_parser("rm", help="unpin (repo gc then removes the blocks)")))
    p.add_argument("cid")
    p = common(pin_sub.add_parser("ls", help="list pins"))
    p.add_argument("--json", action="store_true")
    repo = sub.add_parser("repo", help="repo gc|stat")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True)
    json_flag(common(repo_sub.add_parser("gc", help="remove every block no pin reaches")))
    p = common(repo_sub.add_parser("stat", help="blocks, pins, Bitswap counters"))
    p.add_argument("--json", action="store_true")
    p = common(repo_sub.add_parser("verify", help="re-hash every block, check every pin"))
    p.add_argument("--json", action="store_true")
    block = sub.add_parser("block", help="block get|put|stat")
    block_sub = block.add_subparsers(dest="block_command", required=True)
    p = json_flag(common(block_sub.add_parser("get", help="write a raw block to stdout")))
    p.add_argument("cid")
    p = json_flag(common(block_sub.add_parser("put",
                                              help="store a block read from FILE (or stdin)")))
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--format", choices=("raw", "dag-pb"), default="raw")
    p.add_argument("--cid-version", type=int, choices=(0, 1), default=1)
    p = json_flag(common(block_sub.add_parser("stat", help="a block's size")))
    p.add_argument("cid")


def _resolve(client: ControlClient, args, text: str) -> CID:
    """The CID ``text`` names: a CID, or a path through UnixFS directories
    (``CID/a/b``, ``/ipfs/CID/a/b``) walked with the daemon's blocks, each checked
    against its CID here too."""
    if "/" not in text:  # a bare CID: no need to import the path walker
        return _parse_cid(text)
    from ..blocks.paths import parse_path, step

    path = parse_path(text)
    cid = path.root
    for name in path.segments:
        r = client.request(_request(args, type=B.BLOCK_GET, cid=cid.to_bytes()))
        cid = step(cid, bytes(r.blocks.data), name)
    return cid


def _default_name(text: str, cid: CID) -> str:
    if "/" not in text:
        return str(cid)
    from ..blocks.paths import parse_path

    segments = parse_path(text).segments
    return segments[-1] if segments else str(cid)


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
        self.pending: tuple[int, int] | None = None  # an update not drawn yet

    def update(self, done: int, total: int = 0, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            self.pending = (done, total)
            return
        self.pending = None
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
        if self.pending is not None:  # the last state is what the user should see
            self.update(*self.pending, force=True)
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


def _emit(args, data: dict, text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text, flush=True)


def _cat(client: ControlClient, args, cid: CID, bar: ProgressBar) -> int:
    """Stream the file ``cid`` to stdout; the number of bytes written."""
    out = sys.stdout.buffer
    size = None
    done = 0
    try:
        for piece in client.request_bytes(_request(args, type=B.CAT, cid=cid.to_bytes())):
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
    return done


def _ls(client: ControlClient, args) -> int:
    """``p2pd ls``: kubo's ``ipfs ls`` (``CID SIZE NAME`` per link; a directory's entries,
    a file's chunks), from the node's block, checked against its CID here."""
    from ..blocks.paths import list_links

    cid = _resolve(client, args, args.cid)
    block = bytes(client.request(_request(args, type=B.BLOCK_GET, cid=cid.to_bytes()))
                  .blocks.data)
    links = list_links(cid, block)
    if args.json:
        print(json.dumps({"Hash": str(cid), "Links": [
            {"Name": name, "Hash": str(c), "Size": size} for name, c, size in links]}))
    else:
        print("\n".join(f"{c} {size} {name}".rstrip() for name, c, size in links), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    client = _client(args)
    cmd = args.command
    if cmd == "cat":
        _cat(client, args, _resolve(client, args, args.cid), ProgressBar("cat", args.progress))
        return 0
    if cmd == "get":
        return _get(client, args)
    if cmd == "ls":
        return _ls(client, args)
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
        cid = _resolve(client, args, args.cid) if sub == "add" else _parse_cid(args.cid)
        r = client.request(_request(args, type=kind, cid=cid.to_bytes()))
        done = CID.from_bytes(r.blocks.cid)
        _emit(args, {"Pins": [str(done)]}, f"{'pinned' if sub == 'add' else 'unpinned'} {done}")
        return 0
    if cmd == "repo":
        if args.repo_command == "gc":
            r = client.request(_request(args, type=B.GC)).blocks
            _emit(args, {"Removed": r.blocks, "Freed": r.size},
                  f"removed {r.blocks} blocks ({_size(r.size)})")
            return 0
        kind = B.VERIFY if args.repo_command == "verify" else B.STAT
        stats = json.loads(client.request(_request(args, type=kind)).blocks.stats)
        if args.json:
            print(json.dumps(stats))
        else:
            for key, value in stats.items():
                sized = key in ("blocks_bytes", "repo_size", "storage_max") and value
                print(f"{key}: {value} ({_size(value)})" if sized else f"{key}: {value}")
        if args.repo_command == "verify" and (stats["blocks_bad"] or stats["pins_incomplete"]):
            return 1
        return 0
    if cmd == "block":
        sub = args.block_command
        if sub == "get":
            cid = _resolve(client, args, args.cid)
            r = client.request(_request(args, type=B.BLOCK_GET, cid=cid.to_bytes()))
            if args.json:
                import base64

                _emit(args, {"Key": str(cid), "Size": len(r.blocks.data),
                             "Data": base64.b64encode(r.blocks.data).decode()}, "")
                return 0
            sys.stdout.buffer.write(r.blocks.data)
            sys.stdout.buffer.flush()
            return 0
        if sub == "put":
            from ..blocks.multicodec import Codec

            data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
            codec = Codec.RAW if args.format == "raw" else Codec.DAG_PB
            r = client.request(_request(args, type=B.BLOCK_PUT, data=data, codec=codec,
                                        cidVersion=args.cid_version))
            cid = CID.from_bytes(r.blocks.cid)
            _emit(args, {"Key": str(cid), "Size": len(data)}, str(cid))
            return 0
        cid = _resolve(client, args, args.cid)
        r = client.request(_request(args, type=B.BLOCK_STAT, cid=cid.to_bytes()))
        key = CID.from_bytes(r.blocks.cid)
        _emit(args, {"Key": str(key), "Size": r.blocks.size}, f"Key: {key}\nSize: {r.blocks.size}")
        return 0
    return 2


def _parse_cid(text: str) -> CID:
    if "/" not in text:  # the same errors as parse_path's, without importing it
        return CID.decode(text.strip())
    from ..blocks.paths import PathError, parse_path

    path = parse_path(text)
    if path.segments:
        raise PathError(f"{text!r}: give the pinned CID itself, not a path under it")
    return path.root


def _get(client: ControlClient, args) -> int:
    cid = _resolve(client, args, args.cid)
    if args.output == "-":
        if args.json:
            raise P2PDError("--json and -o - both want stdout; give -o PATH for --json")
        try:
            _cat(client, args, cid, ProgressBar("fetching", args.progress))
        except RequestFailed as exc:
            if "is a directory" in str(exc):
                raise P2PDError(f"{cid} is a directory: -o - writes only a file to stdout; "
                                "give -o PATH") from None
            raise
        return 0
    dest = os.path.abspath(args.output or _default_name(args.cid, cid))
    bar = ProgressBar("fetching", args.progress)
    req = _request(args, type=B.GET, cid=cid.to_bytes(), path=dest)
    req.blocks.progress = bar.enabled
    try:
        final = client.request_progress(req, lambda r: bar.update(r.done, r.total))
    finally:
        bar.close()
    _emit(args, {"Cid": str(cid), "Path": dest, "Size": final.size, "Blocks": final.blocks,
                 "Peers": final.peers},
          f"saved {cid} to {dest} ({final.size} bytes)")
    return 0
