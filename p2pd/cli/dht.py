"""``p2pd dht findpeer|findprovs|get|put|provide``: the running daemon's DHT from the shell.

Keys for get/put are record keys as text (``/pk/...``, ``/ipns/...``); a peer-id part
may be written in base58 (``/ipns/12D3KooW...``) and is sent as its bytes. Values read
from a file (``-`` for stdin) and written to stdout as raw bytes (``--json``: hex).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..blocks.cid import CID
from ..errors import InvalidCID, P2PDError
from ..proto import daemon_pb2 as pb
from .client import ControlClient
from .node import _addr_text, _peer_bytes

COMMANDS = ("dht",)


def add_parsers(sub) -> None:
    dht = sub.add_parser("dht", help="query the running daemon's DHT")
    dsub = dht.add_subparsers(dest="dht_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--api", metavar="MULTIADDR", default=None,
                       help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
        return p

    common(dsub.add_parser("findpeer", help="addresses of a peer")).add_argument("peer")
    p = common(dsub.add_parser("findprovs", help="peers providing a CID"))
    p.add_argument("cid")
    p.add_argument("-n", "--num-providers", type=int, default=20)
    common(dsub.add_parser("get", help="the best record for a key")).add_argument("key")
    p = common(dsub.add_parser("put", help="store a record (validated) on the DHT"))
    p.add_argument("key")
    p.add_argument("value_file", help="file holding the record value, - for stdin")
    common(dsub.add_parser("provide", help="announce that this node provides a CID")).add_argument(
        "cid")


def _key(text: str) -> bytes:
    parts = text.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] in ("pk", "ipns") and parts[2]:
        try:
            rest = _peer_bytes(parts[2])
        except P2PDError:
            rest = parts[2].encode()
        return f"/{parts[1]}/".encode() + rest
    return text.encode()


def _cid(text: str) -> bytes:
    try:
        return bytes(CID.decode(text))
    except InvalidCID as exc:
        raise P2PDError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ..blocks.multibase import b58encode

    client = ControlClient.for_address(args.api, args.timeout)
    timeout = max(1, int(args.timeout))
    cmd = args.dht_command

    def request(**fields) -> pb.Request:
        return pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(timeout=timeout, **fields))

    if cmd == "findpeer":
        r = client.request(request(type=pb.DHTRequest.FIND_PEER, peer=_peer_bytes(args.peer)))
        addrs = [_addr_text(a) for a in r.dht.peer.addrs]
        print(json.dumps({"ID": args.peer, "Addrs": addrs}) if args.json else "\n".join(addrs))
    elif cmd == "findprovs":
        rs = client.request_stream(request(type=pb.DHTRequest.FIND_PROVIDERS,
                                           cid=_cid(args.cid), count=args.num_providers))
        ids = [b58encode(r.peer.id) for r in rs]
        print(json.dumps({"Providers": ids}) if args.json else "\n".join(ids))
    elif cmd == "get":
        r = client.request(request(type=pb.DHTRequest.GET_VALUE, key=_key(args.key)))
        if args.json:
            print(json.dumps({"Key": args.key, "Value": r.dht.value.hex()}))
        else:
            sys.stdout.buffer.write(r.dht.value)
    elif cmd == "put":
        if args.value_file == "-":
            value = sys.stdin.buffer.read()
        else:
            try:
                with open(args.value_file, "rb") as fh:
                    value = fh.read()
            except OSError as exc:
                raise P2PDError(f"{args.value_file}: {exc.strerror or exc}") from None
        client.request(request(type=pb.DHTRequest.PUT_VALUE, key=_key(args.key), value=value))
        print(json.dumps({"Key": args.key, "Stored": True}) if args.json else "stored")
    elif cmd == "provide":
        client.request(request(type=pb.DHTRequest.PROVIDE, cid=_cid(args.cid)))
        print(json.dumps({"CID": args.cid, "Provided": True}) if args.json else "provided")
    return 0
