"""A misbehaving or greedy libp2p peer for the daemon's bad-input tests (run as a subprocess).

Built from py-libp2p's Noise transport, so it completes a real Noise handshake with the
daemon before it misbehaves. Modes (argv: MODE HOST PORT PEER_ID [N]):

- ``garbage``: handshake, then encrypted garbage where multistream-select is expected;
- ``badframe``: handshake, then a maximal Noise frame that fails authentication;
- ``badyamux``: handshake, Yamux negotiated, then a frame of an unknown Yamux version;
- ``manyconns``: N full py-libp2p hosts with one shared identity dial the daemon
  (N connections from one peer id); stays connected for a few seconds.

Prints one JSON line: what happened.
"""

import json
import os
import sys

import trio


def _lp(text: str) -> bytes:
    body = text.encode() + b"\n"
    out = bytearray()
    n = len(body)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


async def _read_lp(stream: trio.SocketStream, buf: bytearray) -> str:
    while True:
        n = shift = used = 0
        for i, byte in enumerate(buf):
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                used = i + 1
                break
        if used and len(buf) >= used + n:
            text = bytes(buf[used : used + n]).decode()
            del buf[: used + n]
            return text.rstrip("\n")
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise EOFError("closed during multistream-select")
        buf += chunk


async def _noise(host: str, port: int, peer: str):
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.io.trio import TrioTCPStream
    from libp2p.network.connection.raw_connection import RawConnection
    from libp2p.peer.id import ID
    from libp2p.security.noise.transport import Transport as Noise

    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(_lp("/multistream/1.0.0") + _lp("/noise"))
    buf = bytearray()
    answers = [await _read_lp(stream, buf), await _read_lp(stream, buf)]
    if answers != ["/multistream/1.0.0", "/noise"]:
        raise RuntimeError(f"unexpected multistream answers {answers}")
    raw = RawConnection(TrioTCPStream(stream), True)
    noise = Noise(create_new_key_pair(), noise_privkey=new_x25519().private_key)
    secure = await noise.secure_outbound(raw, ID.from_base58(peer))
    return stream, secure


async def _closed_by_peer(stream: trio.SocketStream, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return True
    return False


async def garbage(host: str, port: int, peer: str) -> dict:
    stream, secure = await _noise(host, port, peer)
    for _ in range(5):
        try:
            await secure.write(os.urandom(200))
        except Exception:
            break
    return {"handshake": True, "closed": await _closed_by_peer(stream, 20)}


async def badframe(host: str, port: int, peer: str) -> dict:
    stream, _secure = await _noise(host, port, peer)
    try:
        await stream.send_all(b"\xff\xff" + os.urandom(65535))
    except trio.BrokenResourceError:
        pass
    return {"handshake": True, "closed": await _closed_by_peer(stream, 20)}


async def badyamux(host: str, port: int, peer: str) -> dict:
    """Handshake, negotiate Yamux, then a frame with an unknown version: the daemon must
    answer GO_AWAY (protocol error) and close this connection."""
    import struct

    stream, secure = await _noise(host, port, peer)
    await secure.write(_lp("/multistream/1.0.0") + _lp("/yamux/1.0.0"))
    plain = bytearray()
    with trio.fail_after(10):
        while b"/yamux/1.0.0\n" not in plain:
            plain += await secure.read()
    plain = plain[plain.index(b"/yamux/1.0.0\n") + len(b"/yamux/1.0.0\n"):]
    await secure.write(struct.pack("!BBHII", 7, 0, 0, 0, 0))
    with trio.move_on_after(10):
        try:
            while True:
                data = await secure.read()
                if not data:
                    break
                plain += data
        except Exception:
            pass
    go_away, pos = [], 0
    while pos + 12 <= len(plain):
        _version, typ, _flags, _sid, length = struct.unpack_from("!BBHII", plain, pos)
        pos += 12 + (length if typ == 0 else 0)  # only DATA frames carry a body
        if typ == 3:
            go_away.append(length)
    return {"handshake": True, "go_away": go_away[:1],
            "closed": await _closed_by_peer(stream, 20)}


async def manyconns(host: str, port: int, peer: str, n: int) -> dict:
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    key = create_new_key_pair()
    target = PeerInfo(ID.from_base58(peer), [multiaddr.Multiaddr(f"/ip4/{host}/tcp/{port}")])
    hosts = [new_host(key_pair=key) for _ in range(n)]
    connected = 0
    async with trio.open_nursery() as nursery:
        for h in hosts:
            await nursery.start(_run_and_connect, h, target)
        for h in hosts:
            connected += bool(h.get_network().get_connections(target.peer_id))
        print(json.dumps({"peer": str(key.public_key and ID.from_pubkey(key.public_key)),
                          "dialed": n, "connected_hosts": connected}), flush=True)
        await trio.sleep(float(os.environ.get("HOLD_SECONDS", "6")))
        nursery.cancel_scope.cancel()
    return {}


async def _run_and_connect(h, target, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    import multiaddr

    async with h.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            with trio.fail_after(20):
                await h.connect(target)
        except Exception:
            pass
        task_status.started()
        await trio.sleep_forever()


def main() -> None:
    mode, host, port, peer = sys.argv[1:5]
    if mode == "manyconns":
        trio.run(manyconns, host, int(port), peer, int(sys.argv[5]))
        return
    modes = {"garbage": garbage, "badframe": badframe, "badyamux": badyamux}
    result = trio.run(modes[mode], host, int(port), peer)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
