"""Load on a daemon, shared by the load tests and ``python -m bench load``; works against our
daemon and the go daemon alike (the daemon protocol, libp2p connections).

* :func:`control_load`: ``clients`` control-socket clients at once, each sending its share
  of ``requests`` IDENTIFY requests, one connection per request as p2pclient does; every
  request's latency (connect to answer) is kept.
* ``python -m tests.harness.loadgen dial ADDR N RATE [START_AT]``: N peers (each its own Ed25519
  identity, Noise, Yamux: our swarm) dial ADDR at RATE a second; prints one JSON line once
  every dial ended (``held``, ``failed``, the first errors, ``seconds``), holds what it got
  until stdin closes, then prints how many the daemon had closed meanwhile. One process per
  source address (the lab runs one in each internet host's namespace).
* ``python -m tests.harness.loadgen streams ADDR N``: one connection to ADDR carrying N ping
  streams, each one round trip, then held until stdin closes.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import dataclass, field

import trio

from p2pd.framing import FrameDecoder, encode_frame
from p2pd.proto import daemon_pb2 as pb

IDENTIFY_FRAME = encode_frame(pb.Request(type=pb.Request.IDENTIFY).SerializeToString())


@dataclass(slots=True)
class ControlLoad:
    """What :func:`control_load` measured; latencies in seconds."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def quiet_config(listen: str, limits: str = "") -> str:
    """A home-mode config.toml for a daemon that only holds connections and answers the
    control socket (no QUIC, port mapping, connection manager, AutoNAT, AutoRelay, DHT,
    pubsub or Bitswap): what the load tests and ``bench load`` measure. ``limits``: lines
    of its ``[limits]`` table."""
    return (f'[swarm]\nlisten = ["{listen}"]\nquic = false\nport_map = false\n'
            "[connmgr]\nenabled = false\n[autonat]\nclient = false\n[relay]\nauto = false\n"
            "[dht]\nenabled = false\n[pubsub]\nenabled = false\n[bitswap]\nenabled = false\n"
            "[limits]\n" + limits)


async def _connect(control: str) -> trio.SocketStream:
    if control.startswith("/unix/"):
        return await trio.open_unix_socket(control[len("/unix"):])
    parts = control.split("/")
    return await trio.open_tcp_stream(parts[2], int(parts[4]))


async def _identify_once(control: str) -> None:
    stream = await _connect(control)
    try:
        await stream.send_all(IDENTIFY_FRAME)
        decoder = FrameDecoder(1 << 20)
        while (frame := decoder.next_frame()) is None:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("the daemon closed the control connection unanswered")
            decoder.receive_data(data)
        response = pb.Response()
        response.ParseFromString(frame)
        if response.type != pb.Response.OK:
            raise ConnectionError(f"IDENTIFY answered {response.error.msg!r}")
    finally:
        await stream.aclose()


async def control_load(control: str, clients: int, requests: int,
                       deadline: float = 30.0) -> ControlLoad:
    """``requests`` IDENTIFYs from ``clients`` clients at once; a request not answered
    within ``deadline`` seconds counts as an error."""
    result = ControlLoad()
    share = [requests // clients + (i < requests % clients) for i in range(clients)]

    async def client(n: int) -> None:
        for _ in range(n):
            started = trio.current_time()
            try:
                with trio.fail_after(deadline):
                    await _identify_once(control)
            except (OSError, ConnectionError, trio.TooSlowError) as exc:
                result.errors.append(repr(exc))
                continue
            result.latencies.append(trio.current_time() - started)

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in share:
            nursery.start_soon(client, n)
    result.seconds = trio.current_time() - started
    return result


# -- many peers dialing -----------------------------------------------------------------


def _identity():
    import nacl.signing

    from p2pd.net.swarm import Identity
    from p2pd.peerkeys import peer_id_from_public_key

    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


def _target(addr: str) -> tuple[bytes, list[bytes]]:
    """A ``/ip4/A/tcp/P/p2p/ID`` text as (peer id bytes, [binary multiaddr])."""
    from p2pd.blocks.multibase import b58decode
    from p2pd.net.swarm import tcp_multiaddr

    parts = addr.split("/")
    return b58decode(parts[6]), [tcp_multiaddr(parts[2], int(parts[4]))]


async def dial_many(addr: str, n: int, rate: float, start_at: float = 0.0) -> None:
    """The ``dial`` mode; ``start_at`` (a time.time() value): when the first dial goes,
    so that processes started one after another dial together."""
    from p2pd.net.swarm import NOISE, DialError, Swarm, SwarmOptions

    peer, addrs = _target(addr)
    held, failed = [], []
    await trio.sleep(max(0.0, start_at - time.time()))
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        async def one() -> None:
            swarm = Swarm(_identity(), SwarmOptions(security=(NOISE,), handshake_timeout=20,
                                                    dial_timeout=20))
            await nursery.start(swarm.run, [])
            try:
                conn = await swarm.dial(peer, addrs, timeout=20)
            except (DialError, OSError, trio.TooSlowError) as exc:
                failed.append(str(exc))
                return
            held.append(conn)

        async with trio.open_nursery() as dials:
            for _ in range(n):
                dials.start_soon(one)
                await trio.sleep(1 / rate)
        await trio.sleep(1.0)  # connections refused after their handshake are closed by now
        live = [c for c in held if not c.closed]
        print(json.dumps({"held": len(live), "failed": len(failed) + len(held) - len(live),
                          "errors": failed[:3],
                          "seconds": round(trio.current_time() - started, 2)}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        print(json.dumps({"closed_meanwhile": sum(c.closed for c in live)}), flush=True)
        nursery.cancel_scope.cancel()


async def hold_streams(addr: str, n: int) -> None:
    """The ``streams`` mode: one connection, ``n`` ping streams (/ipfs/ping/1.0.0, which
    every daemon serves) each doing one round trip, held open until stdin closes. At most
    64 are being opened at once: a burst beyond the muxer's accept backlog (256 in
    go-yamux and ours) is reset by either daemon, which is not what this measures."""
    import os

    from p2pd.net.swarm import PING, StreamError, StreamReset, Swarm, SwarmOptions

    peer, addrs = _target(addr)
    held, failed = [], []
    async with trio.open_nursery() as nursery:
        swarm = Swarm(_identity(), SwarmOptions())
        await nursery.start(swarm.run, [])
        conn = await swarm.dial(peer, addrs, timeout=20)
        started = trio.current_time()
        opening = trio.CapacityLimiter(64)

        async def one() -> None:
            try:
                async with opening:
                    stream = await conn.open_stream([PING], 20)
                    payload = os.urandom(32)
                    await stream.write(payload)
                    got = b""
                    while len(got) < 32:
                        data = await stream.read()
                        if not data:
                            raise StreamError("ping stream closed")
                        got += data
                if got != payload:
                    raise StreamError("ping came back different")
            except (StreamError, StreamReset, trio.TooSlowError) as exc:
                failed.append(str(exc))
                return
            held.append(stream)

        async with trio.open_nursery() as opens:
            for _ in range(n):
                opens.start_soon(one)
        print(json.dumps({"held": len(held), "failed": len(failed), "errors": failed[:3],
                          "seconds": round(trio.current_time() - started, 2)}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


def wait_listening(control: str, timeout: float = 30.0) -> None:
    """Block until the control socket accepts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if control.startswith("/unix/"):
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(control[len("/unix"):])
            else:
                parts = control.split("/")
                socket.create_connection((parts[2], int(parts[4])), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "dial":
        addr, n, rate, *start = args
        trio.run(dial_many, addr, int(n), float(rate), float(start[0]) if start else 0.0)
    elif mode == "streams":
        addr, n = args
        trio.run(hold_streams, addr, int(n))
    else:
        raise SystemExit("modes: dial ADDR N RATE [START_AT] | streams ADDR N")


if __name__ == "__main__":
    main()
