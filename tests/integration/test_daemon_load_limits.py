"""The resource manager's limits hold under load, against a real daemon on 127.0.0.1.

A flood of connections from one IP (the per-IP limit and the rate cap hold, the control
socket answers at once, a peer from another IP connects); a stream flood from one peer
(its streams past the limit are reset, another peer's streams work); many streams with
unread data (the muxer memory budget holds the daemon's RSS); many Bitswap streams each
holding part of a large message (the framed readers count in the peer's memory share).
Loopback is exempt from the per-IP limits by default, so these daemons turn that off; the
flood comes from 127.0.0.2 and 127.0.0.3, the honest peers from 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import psutil
import trio
from harness.loadgen import quiet_config

from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.endpoint import parse_endpoint
from p2pd.net.swarm import Identity, StreamError, StreamReset, Swarm, SwarmOptions, tcp_multiaddr
from p2pd.peerkeys import peer_id_from_public_key
from p2pd.varint import encode_uvarint

ECHO = "/echo/1.0.0"

CONFIG = quiet_config("/ip4/127.0.0.1/tcp/0")


class LimitedDaemon:
    """``p2pd`` in home mode with ``[limits]`` from the test (and flags such as -echo)."""

    def __init__(self, limits: str = "", *flags: str, exempt_loopback: bool = False,
                 config: str = CONFIG) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-l-", dir="/tmp"))
        home = self.dir / "home"
        home.mkdir(mode=0o700)
        exempt = f"exempt_loopback = {str(exempt_loopback).lower()}\n"
        (home / "config.toml").write_text(config + exempt + limits)
        self.proc = subprocess.Popen([sys.executable, "-m", "p2pd", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, P2PD_HOME=str(home)))
        lines = [self.proc.stdout.readline().rstrip("\n") for _ in range(4)]
        if not lines[0].startswith("Control socket: "):
            self.stop()
            raise RuntimeError(f"{lines} {self.proc.stderr.read()}")
        self.control = lines[0].removeprefix("Control socket: ")
        self.peer_id = b58decode(lines[1].removeprefix("Peer ID: "))
        self.port = int(lines[3].rsplit("/", 1)[1])
        self.client = ControlClient(parse_endpoint(self.control), timeout=30)

    def limits(self) -> dict:
        return self.client.status()["Limits"]

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def identity() -> Identity:
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return Identity(pub, peer_id_from_public_key(pub), lambda d: sk.sign(d).signature)


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """True once the daemon closed ``s`` (EOF or reset); False while it holds it."""
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_connection_flood_from_one_ip_is_held_to_its_limits_and_others_are_served():
    d = LimitedDaemon("max_conns_per_ip = 8\ninbound_rate = 5.0\ninbound_burst = 10\n")
    from test_daemon_harness import Daemon

    other = Daemon()
    flood: list[socket.socket] = []
    try:
        # 300 connections from 127.0.0.2 at once, none of which ever speaks
        for _ in range(300):
            flood.append(connect_from("127.0.0.2", d.port))
        started = time.monotonic()
        d.client.identify()  # the control socket answers during the flood
        answer = time.monotonic() - started
        assert answer < 1.0, f"control answer took {answer:.3f} s during the flood"
        # a peer from another IP (127.0.0.1) still connects and is served
        peer, addrs = ControlClient(parse_endpoint(other.control), timeout=30).identify()
        d.client.connect(peer, addrs)
        assert peer in {p.id for p in d.client.list_peers()}
        deadline = time.monotonic() + 5
        while True:
            held = [s for s in flood if not closed_by_peer(s)]
            if len(held) <= 8 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(held) <= 8, f"{len(held)} connections from one IP held (limit 8)"
        limits = d.limits()
        assert limits["Use"]["max_conns_one_ip"] <= 8
        refused_ip = limits["Refused"].get("max_conns_per_ip", 0)
        assert refused_ip >= 300 - 8 - 10, limits["Refused"]  # the burst: closed ones
        # the rate cap: 50 connections from 127.0.0.3, each closed by us at once
        started = time.monotonic()
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", d.port), source_address=("127.0.0.3", 0))
            s.close()
        spent = time.monotonic() - started
        time.sleep(0.3)
        refused_rate = d.limits()["Refused"].get("inbound_rate", 0)
        admitted = 50 - refused_rate - (d.limits()["Refused"]["max_conns_per_ip"] - refused_ip)
        assert admitted <= 10 + 5 * (spent + 0.3) + 1, (admitted, spent)
        assert refused_rate >= 50 - 10 - 5 * (spent + 0.3) - 8 - 1, (refused_rate, spent)
        # still serving: the control socket and the honest peer's connection
        assert d.client.ping(peer, 1)
    finally:
        for s in flood:
            s.close()
        other.stop()
        d.stop()


async def _connect(swarm: Swarm, d: LimitedDaemon):
    return await swarm.dial(d.peer_id, [tcp_multiaddr("127.0.0.1", d.port)], timeout=10)


async def _echo(stream, payload: bytes) -> bytes:
    """Write ``payload`` while reading the echo: written first and read after, a payload
    past the two windows deadlocks (the echo's writes wait for our reads)."""
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.write, payload)
        with trio.fail_after(30):
            while len(got) < len(payload):
                data = await stream.read()
                if not data:
                    break
                got += data
    return bytes(got)


async def _flooder_and_honest(nursery, d: LimitedDaemon):
    """Two swarms of their own identity: the flooder's identified connection to ``d``,
    and the honest swarm (not yet connected)."""
    flooder = Swarm(identity(), SwarmOptions())
    honest = Swarm(identity(), SwarmOptions())
    await nursery.start(flooder.run, [])
    await nursery.start(honest.run, [])
    conn = await _connect(flooder, d)
    await conn.identified.wait()
    return conn, honest


async def test_a_stream_flood_from_one_peer_is_reset_past_its_limit_and_others_go_on():
    d = await trio.to_thread.run_sync(
        lambda: LimitedDaemon("max_streams_inbound_per_peer = 64\n", "-echo"))
    try:
        async with trio.open_nursery() as nursery:
            conn, honest = await _flooder_and_honest(nursery, d)
            opened, refused = [], 0
            started = trio.current_time()
            for _ in range(300):
                try:
                    opened.append(await conn.open_stream([ECHO], 10))
                except (StreamError, StreamReset):
                    refused += 1
            flood_time = trio.current_time() - started
            assert 56 <= len(opened) <= 64, (len(opened), refused)
            assert refused == 300 - len(opened)
            # the honest peer's streams are untouched, and so are the flooder's open ones
            other = await _connect(honest, d)
            for i in range(20):
                s = await other.open_stream([ECHO], 10)
                assert await _echo(s, b"hello %d" % i) == b"hello %d" % i
                await s.close()
            for i, s in enumerate(opened[:10]):
                assert await _echo(s, b"still %d" % i) == b"still %d" % i
            limits = await trio.to_thread.run_sync(d.limits)
            assert limits["Refused"]["max_streams_inbound_per_peer"] >= refused
            assert limits["Use"]["streams_inbound"] <= 64 + 1
            print(f"stream flood: {len(opened)} held, {refused} reset in {flood_time:.2f} s")
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(d.stop)


async def _flood_unread(d: LimitedDaemon, streams: int, each: int) -> tuple[int, int, dict]:
    """``streams`` echo streams, ``each`` bytes written on each and never read back: how
    many the daemon took, its RSS growth and its Limits once the writes stalled."""
    async with trio.open_nursery() as nursery:
        swarm = Swarm(identity(), SwarmOptions())
        await nursery.start(swarm.run, [])
        conn = await _connect(swarm, d)
        await conn.identified.wait()
        before = d.rss()
        taken = 0
        payload = os.urandom(each)

        async def push(stream) -> None:
            try:
                await stream.write(payload)  # stalls once the echo's answers fill up
            except (StreamError, StreamReset):
                pass

        for _ in range(streams):
            try:
                s = await conn.open_stream([ECHO], 10)
            except (StreamError, StreamReset):
                continue
            taken += 1
            nursery.start_soon(push, s)
        await trio.sleep(1.5)  # every write that can land has landed
        grown = d.rss() - before
        limits = await trio.to_thread.run_sync(d.limits)
        nursery.cancel_scope.cancel()
    return taken, grown, limits


async def test_streams_with_unread_data_stay_within_the_memory_budget():
    budget = 16 << 20
    d = await trio.to_thread.run_sync(
        lambda: LimitedDaemon(f"memory = {budget}\n", "-echo"))
    try:
        taken, grown, limits = await _flood_unread(d, 300, 1 << 20)
    finally:
        await trio.to_thread.run_sync(d.stop)
    use = limits["Use"]
    print(f"memory: {taken} of 300 streams taken, RSS +{grown >> 20} MiB, "
          f"peak reserved {use['memory_peak'] >> 20} MiB")
    assert use["memory_peak"] <= budget
    assert limits["Refused"].get("memory", 0) > 0  # streams past the budget were reset
    assert taken <= budget // (256 << 10)  # each holds a 256 KiB window
    # what peers pushed at us without our reading is bounded by the budget (the echo's
    # pending answers and Python's allocator add about as much again)
    assert grown < 3 * budget, f"RSS grew {grown >> 20} MiB with a {budget >> 20} MiB budget"


async def test_streams_holding_partial_large_messages_are_reset_past_the_peers_share():
    """One peer opens 40 Bitswap streams and sends 1 MiB of a 4 MiB message on each, never
    the rest: the daemon's readers count what they hold in that peer's 8 MiB memory share,
    so the streams past it are reset (Refused memory_buffers) while the ones held keep
    their partial message, and another peer's echo goes on."""
    share = 8 << 20
    bitswap_on = CONFIG.replace("[bitswap]\nenabled = false", "[bitswap]\nenabled = true")
    d = await trio.to_thread.run_sync(lambda: LimitedDaemon(
        f"memory_per_peer = {share}\n", "-echo", config=bitswap_on))
    try:
        async with trio.open_nursery() as nursery:
            conn, honest = await _flooder_and_honest(nursery, d)
            partial = encode_uvarint(4 << 20) + bytes(1 << 20)
            reset = []

            async def push(stream) -> None:
                try:
                    await stream.write(partial)
                    await stream.read()  # the rest never comes: held, or reset
                except (StreamError, StreamReset):
                    reset.append(stream)

            async with trio.open_nursery() as pushers:
                for _ in range(40):
                    try:
                        stream = await conn.open_stream(["/ipfs/bitswap/1.2.0"], 10)
                    except (StreamError, StreamReset):
                        reset.append(None)
                        continue
                    pushers.start_soon(push, stream)
                with trio.move_on_after(20):
                    while len(reset) < 32:
                        await trio.sleep(0.05)
                await trio.sleep(0.5)  # what is held stays held
                limits = await trio.to_thread.run_sync(d.limits)
                other = await _connect(honest, d)
                s = await other.open_stream([ECHO], 10)
                blob = os.urandom(1 << 20)
                assert await _echo(s, blob) == blob
                pushers.cancel_scope.cancel()
            use, refused = limits["Use"], limits["Refused"]
            print(f"partial messages: {40 - len(reset)} of 40 streams held, "
                  f"{use['memory_buffers'] >> 10} KiB buffered, peer holds "
                  f"{use['memory_one_peer'] >> 10} KiB of {share >> 10}")
            assert 1 <= 40 - len(reset) <= 8  # each held stream keeps more than 1 MiB
            assert refused["memory_buffers"] >= len([r for r in reset if r is not None])
            assert (1 << 20) <= use["memory_buffers"] <= use["memory_one_peer"] <= share
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(d.stop)


async def test_a_thousand_inbound_connections_at_200_a_second_are_held_to_the_inbound_limit():
    """1,000 peers (each its own identity) connect at 200/s; the daemon holds
    ``max_conns_inbound`` of them, closes the rest, and its control socket keeps answering."""
    from p2pd.net.swarm import NOISE, DialError

    d = await trio.to_thread.run_sync(lambda: LimitedDaemon(
        "max_conns_inbound = 600\n", exempt_loopback=True))
    base_rss = d.rss()
    addr = tcp_multiaddr("127.0.0.1", d.port)
    held, failed, answers = [], [], []
    try:
        async with trio.open_nursery() as nursery:
            async def one() -> None:
                swarm = Swarm(identity(), SwarmOptions(security=(NOISE,), handshake_timeout=20,
                                                       dial_timeout=20))
                await nursery.start(swarm.run, [])
                try:
                    held.append(await swarm.dial(d.peer_id, [addr], timeout=20))
                except DialError as exc:
                    failed.append(str(exc))

            def probe() -> None:
                while len(held) + len(failed) < 1000:
                    started = time.monotonic()
                    d.client.identify()
                    answers.append(time.monotonic() - started)
                    time.sleep(0.2)

            nursery.start_soon(trio.to_thread.run_sync, probe)
            started = trio.current_time()
            async with trio.open_nursery() as dials:
                for _ in range(1000):
                    dials.start_soon(one)
                    await trio.sleep(1 / 200)
                offered = trio.current_time() - started
                with trio.fail_after(60):
                    while len(held) + len(failed) < 1000:
                        await trio.sleep(0.1)
            await trio.sleep(1.0)  # refused ones are closed by now
            live = [c for c in held if not c.closed]
            limits = await trio.to_thread.run_sync(d.limits)
            rss = d.rss()
            print(f"1000 dials in {offered:.1f} s: {len(live)} held, {len(failed)} failed at "
                  f"dial, {limits['Refused']}; control answers max {max(answers) * 1000:.0f} ms "
                  f"(n={len(answers)}); daemon RSS {base_rss >> 20} -> {rss >> 20} MiB")
            assert limits["Use"]["conns_inbound"] <= 600
            assert 550 <= len(live) <= 600, (len(live), failed[:3])
            assert limits["Refused"].get("max_conns_inbound", 0) >= 1000 - 600
            assert max(answers) < 2.0
            assert d.client.list_peers()
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(d.stop)
