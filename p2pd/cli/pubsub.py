"""``p2pd pubsub sub|pub|peers|topics``: pubsub through a running daemon (-pubsub).

``sub`` prints one line per message (``<from peer id> <data as text>``; ``--json`` for
scripts: from, seqno and data in hex, topic) until interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..blocks.multibase import b58encode
from ..control.codec import FrameDecoder, encode_message
from ..errors import P2PDError
from ..proto import daemon_pb2 as pb
from .client import ControlClient

COMMANDS = ("pubsub",)


def add_parsers(sub) -> None:
    ps = sub.add_parser("pubsub", help="pubsub sub|pub|peers|topics")
    ps_sub = ps.add_subparsers(dest="pubsub_command", required=True)

    def common(p):
        p.add_argument("--api", metavar="MULTIADDR", default=None,
                       help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    p = common(ps_sub.add_parser("sub", help="print messages of a topic as they arrive"))
    p.add_argument("topic")
    p = common(ps_sub.add_parser("pub", help="publish a message (DATA, or stdin with -)"))
    p.add_argument("topic")
    p.add_argument("data")
    p = common(ps_sub.add_parser("peers", help="pubsub peers (of a topic, if given)"))
    p.add_argument("topic", nargs="?", default="")
    common(ps_sub.add_parser("topics", help="topics the daemon is subscribed to"))


def _req(kind, **fields) -> pb.Request:
    return pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(type=kind, **fields))


def run(args: argparse.Namespace) -> int:
    client = ControlClient.for_address(args.api, 30.0)
    cmd = args.pubsub_command
    if cmd == "topics":
        topics = list(client.request(_req(pb.PSRequest.GET_TOPICS)).pubsub.topics)
        print(json.dumps(topics) if args.json else "\n".join(topics))
        return 0
    if cmd == "peers":
        peers = [b58encode(p) for p in
                 client.request(_req(pb.PSRequest.LIST_PEERS, topic=args.topic)).pubsub.peerIDs]
        print(json.dumps(peers) if args.json else "\n".join(peers))
        return 0
    if cmd == "pub":
        data = sys.stdin.buffer.read() if args.data == "-" else args.data.encode()
        client.request(_req(pb.PSRequest.PUBLISH, topic=args.topic, data=data))
        return 0
    return _subscribe(client, args)


def _subscribe(client: ControlClient, args) -> int:
    sock = client._connect()
    sock.settimeout(None)
    try:
        _first, rest = client._exchange(sock, _req(pb.PSRequest.SUBSCRIBE, topic=args.topic))
        decoder = FrameDecoder()
        decoder.receive_data(rest)
        while True:
            frame = decoder.next_frame()
            if frame is None:
                data = sock.recv(65536)
                if not data:
                    raise P2PDError("the daemon closed the subscription")
                decoder.receive_data(data)
                continue
            m = pb.PSMessage.FromString(frame)
            sender = b58encode(getattr(m, "from"))
            if args.json:
                print(json.dumps({"from": sender, "seqno": m.seqno.hex(), "data": m.data.hex(),
                                  "topics": list(m.topicIDs)}), flush=True)
            else:
                print(f"{sender} {m.data.decode('utf-8', 'replace')}", flush=True)
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close()


__all__ = ["COMMANDS", "add_parsers", "run", "encode_message"]
