"""Our side of the daemon benchmarks, as a separate process: a p2pd node (the daemon's
own stack, p2pd.node.Node) acting as perf client, connection maker or connection holder.

    python -m bench.ourpeer client ADDR UP DOWN   -> {"upload_s","download_s"}
    python -m bench.ourpeer connect ADDR N        -> {"connections","seconds"}
    python -m bench.ourpeer hold ADDR N           -> {"connected"}; holds until stdin closes

Mirrors tests/interop/perf.mjs, so both sides are driven the same way; ``SECURITY=noise``
(default) or ``tls`` in the environment picks the channel security, as for perf.mjs.
"""

import json
import os
import sys

import trio

from p2pd.config import resolve
from p2pd.identity import new_ed25519
from p2pd.net import perf
from p2pd.node import Node


def _node() -> Node:
    config = resolve({"hostAddrs": "/ip4/127.0.0.1/tcp/0"}, None)
    config.perf = False
    config.security = [os.environ.get("SECURITY", "noise")]
    return Node(config, new_ed25519())


def _target(addr: str) -> tuple[bytes, list[bytes]]:
    import multiaddr

    ma = multiaddr.Multiaddr(addr)
    peer_b58 = ma.value_for_protocol("p2p")
    from libp2p.peer.id import ID

    bare = ma.decapsulate_code(multiaddr.protocols.P_P2P)
    return ID.from_base58(peer_b58).to_bytes(), [bare.to_bytes()]


async def client(addr: str, up: int, down: int) -> dict:
    node = _node()
    peer, addrs = _target(addr)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.connect(peer, addrs, 30)
        stream, _proto, _addr = await node.open_stream(peer, [perf.PERF_PROTOCOL], 30)
        upload_s, download_s = await perf.run(stream, up, down)
        nursery.cancel_scope.cancel()
    return {"upload_s": upload_s, "download_s": download_s}


async def connect(addr: str, n: int) -> dict:
    node = _node()
    peer, addrs = _target(addr)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        seconds = 0.0
        for _ in range(n):
            start = trio.current_time()
            await node.connect(peer, addrs, 30)
            seconds += trio.current_time() - start  # establishing, not closing
            await node.disconnect(peer)
        nursery.cancel_scope.cancel()
    return {"connections": n, "seconds": seconds}


async def hold(addr: str, n: int) -> None:
    peer, addrs = _target(addr)
    nodes = [_node() for _ in range(n)]
    connected = 0
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
            try:
                await node.connect(peer, addrs, 30)
                connected += 1
            except Exception:
                pass
        print(json.dumps({"connected": connected}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


def main() -> None:
    mode, addr, *rest = sys.argv[1:]
    if mode == "client":
        print(json.dumps(trio.run(client, addr, int(rest[0]), int(rest[1]))), flush=True)
    elif mode == "connect":
        print(json.dumps(trio.run(connect, addr, int(rest[0]))), flush=True)
    elif mode == "hold":
        trio.run(hold, addr, int(rest[0]))
    else:
        raise SystemExit("modes: client ADDR UP DOWN | connect ADDR N | hold ADDR N")


if __name__ == "__main__":
    main()
