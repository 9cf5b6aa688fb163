"""Untrusted bytes on the control socket and on the swarm port: each bad client gets an
error where the protocol allows, its connection closes, and the daemon serves everyone else.

Also the home mode: first start creates $P2PD_HOME, later starts reuse it, a second
daemon on the same home is refused.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_frame, encode_message
from p2pd.control.endpoint import Endpoint
from p2pd.proto import daemon_pb2 as pb
from p2pd.varint import encode_uvarint

CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
[limits]
control_idle_timeout = "1s"
max_control_frame = 65536
"""


class HomeDaemon:
    """A daemon in home mode: ``p2pd`` with only $P2PD_HOME set."""

    def __init__(self, home: Path, config: str | None = CONFIG) -> None:
        self.home = home
        if config is not None and not (home / "config.toml").exists():
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            (home / "config.toml").write_text(config)
        env = dict(os.environ, P2PD_HOME=str(home))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pd"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            self.lines = [self.proc.stdout.readline().rstrip("\n") for _ in range(4)]
            if not self.lines[0].startswith("Control socket: "):
                raise RuntimeError(f"{self.lines} {self.proc.stderr.read()}")
            self.peer_id = self.lines[1].removeprefix("Peer ID: ")
            self.sock = str(home / "p2pd.sock")
            self.swarm_port = int(self.lines[3].rsplit("/", 1)[1])
        except BaseException:
            self.proc.kill()  # never leave a daemon behind when the start check fails
            self.proc.wait(timeout=15)
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def short_home():
    """A short home path (AF_UNIX paths are limited to 107 bytes)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))
    yield d / "home"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(short_home):
    d = HomeDaemon(short_home)
    yield d
    d.stop()


def raw(d: HomeDaemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.sock)
    return s


def read_response_then_eof(s: socket.socket) -> pb.Response | None:
    """The one response the daemon sends (if any), asserting it then closes."""
    decoder = FrameDecoder()
    while True:
        data = s.recv(65536)
        decoder.receive_data(data)
        frame = decoder.next_frame()
        if frame is not None:
            assert s.recv(65536) == b"", "daemon must close after an error"
            return decode_response(frame)
        if not data:
            return None


def client(d: HomeDaemon) -> ControlClient:
    return ControlClient(Endpoint("unix", path=d.sock), timeout=10)


def test_first_start_creates_home_and_later_starts_reuse_the_identity(short_home):
    first = HomeDaemon(short_home, config=None)
    try:
        assert first.lines[0] == f"Control socket: /unix{short_home}/p2pd.sock"
        assert stat.S_IMODE(os.stat(short_home / "identity.key").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(short_home / "p2pd.sock").st_mode) == 0o600
        assert (short_home / "config.toml").read_text().startswith("# p2pd configuration")
        second = subprocess.run(
            [sys.executable, "-m", "p2pd"],
            env=dict(os.environ, P2PD_HOME=str(short_home)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr and str(short_home) in second.stderr
        assert client(first).identify()[0]  # the first one is unharmed
    finally:
        first.stop()
    # config.toml written by the first start listens on 4001/4002: use ephemeral ports now
    (short_home / "config.toml").write_text(CONFIG)
    again = HomeDaemon(short_home)
    try:
        assert again.peer_id == first.peer_id
    finally:
        again.stop()


def test_garbage_gets_an_error_response_and_the_connection_closes(daemon):
    s = raw(daemon)
    s.sendall(encode_frame(b"\xff\xff\xff\xff\xff"))
    r = read_response_then_eof(s)
    assert r.type == pb.Response.ERROR and "not a valid protobuf" in r.error.msg
    assert client(daemon).identify()


def test_oversized_length_prefix_is_refused_without_reading_the_body(daemon):
    s = raw(daemon)
    s.sendall(encode_uvarint(1 << 40))
    r = read_response_then_eof(s)
    assert r.type == pb.Response.ERROR and "exceeds the limit" in r.error.msg


def test_unknown_request_type_and_missing_bodies_get_errors(daemon):
    s = raw(daemon)
    s.sendall(encode_frame(b"\x08\x63"))  # type = 99
    r = read_response_then_eof(s)
    assert r.type == pb.Response.ERROR and "type" in r.error.msg
    for req in (
        pb.Request(type=pb.Request.CONNECT),
        pb.Request(type=pb.Request.STREAM_OPEN),
        pb.Request(type=pb.Request.CONNECT, connect=pb.ConnectRequest(peer=b"junk")),
        # type 9 with no payload is the hivemind fork's PERSISTENT_CONN_UPGRADE (an OK);
        # PEERSTORE with an empty PeerstoreRequest names no operation
        pb.Request(type=pb.Request.PEERSTORE, peerStore=pb.PeerstoreRequest()),
    ):
        s = raw(daemon)
        s.sendall(encode_message(req))
        r = read_response_then_eof(s) if req.type == pb.Request.STREAM_OPEN else None
        if r is None:
            decoder = FrameDecoder()
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(s.recv(65536))
            r = decode_response(frame)
        assert r.type == pb.Response.ERROR and r.error.msg, req


def test_truncated_frame_then_close_does_not_disturb_the_daemon(daemon):
    s = raw(daemon)
    s.sendall(encode_message(pb.Request(type=pb.Request.IDENTIFY))[:1] + b"")
    s.shutdown(socket.SHUT_WR)
    r = read_response_then_eof(s)
    assert r is None or r.type == pb.Response.ERROR
    assert client(daemon).identify()


def test_silent_client_is_disconnected_after_the_idle_timeout(daemon):
    s = raw(daemon)
    started = time.monotonic()
    r = read_response_then_eof(s)
    assert 0.5 < time.monotonic() - started < 8
    assert r.type == pb.Response.ERROR and "no request" in r.error.msg


def test_several_requests_on_one_connection_are_all_answered(daemon):
    s = raw(daemon)
    s.sendall(encode_message(pb.Request(type=pb.Request.IDENTIFY)) * 3)
    decoder = FrameDecoder()
    got = []
    while len(got) < 3:
        decoder.receive_data(s.recv(65536))
        while (frame := decoder.next_frame()) is not None:
            got.append(decode_response(frame))
    assert all(r.type == pb.Response.OK and r.identify.id for r in got)


def test_a_thousand_random_frames_then_a_normal_client_still_works(daemon):
    rng = random.Random(4)
    c = client(daemon)
    peer_id = c.identify()[0]
    for i in range(1000):
        s = raw(daemon)
        kind = i % 4
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 64))
        elif kind == 1:
            data = encode_frame(rng.randbytes(rng.randrange(0, 64)))
        elif kind == 2:
            body = rng.randbytes(rng.randrange(1, 64))
            data = encode_frame(body)[: rng.randrange(1, len(body) + 1)]
        else:
            t = rng.choice([0, 1, 3, 5, 6, 7, 9, 4, 8, 50])
            data = encode_frame(bytes([0x08, t]) + rng.randbytes(rng.randrange(0, 16)))
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()
    assert c.identify()[0] == peer_id


def test_plaintext_and_secio_are_refused_on_the_swarm_port(daemon):
    """multistream-select: we propose an insecure channel; the daemon must answer ``na``."""

    def lp(text: str) -> bytes:
        body = text.encode() + b"\n"
        return encode_uvarint(len(body)) + body

    for proto in ("/plaintext/2.0.0", "/secio/1.0.0", "/plaintext/1.0.0"):
        s = socket.create_connection(("127.0.0.1", daemon.swarm_port), timeout=10)
        s.sendall(lp("/multistream/1.0.0") + lp(proto))
        got = b""
        deadline = time.monotonic() + 10
        while b"na\n" not in got and proto.encode() not in got[20:] and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        assert b"/multistream/1.0.0\n" in got
        assert b"na\n" in got and proto.encode() not in got, got
        s.sendall(lp("/noise"))  # what it does accept
        deadline = time.monotonic() + 10
        while b"/noise\n" not in got and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        assert b"/noise\n" in got
        s.close()
    assert client(daemon).identify()


def _peer_info(d: HomeDaemon, peer: bytes) -> pb.PeerstoreResponse:
    req = pb.Request(type=pb.Request.PEERSTORE, peerStore=pb.PeerstoreRequest(
        type=pb.PeerstoreRequest.GET_PEER_INFO, id=peer))
    r = client(d).request(req)
    assert r.type == pb.Response.OK, r.error.msg
    return r.peerStore


def _protocols(d: HomeDaemon, peer: bytes) -> list[str]:
    req = pb.Request(type=pb.Request.PEERSTORE, peerStore=pb.PeerstoreRequest(
        type=pb.PeerstoreRequest.GET_PROTOCOLS, id=peer))
    r = client(d).request(req)
    assert r.type == pb.Response.OK, r.error.msg
    return list(r.peerStore.protos)


def _learn_a_peer(d: HomeDaemon, other) -> bytes:
    """Connect ``d`` to the harness daemon ``other``; wait until identify filled the peerstore."""
    from test_daemon_harness import Daemon  # noqa: F401 (type of ``other``)

    other_client = ControlClient.for_address(other.control, timeout=10)
    peer, addrs = other_client.identify()
    client(d).connect(peer, addrs)
    deadline = time.monotonic() + 20
    while "/ipfs/ping/1.0.0" not in _protocols(d, peer):
        assert time.monotonic() < deadline, "identify never filled the peerstore"
        time.sleep(0.1)
    return peer


def test_random_frames_lose_nothing_from_the_peerstore(daemon):
    from test_daemon_harness import Daemon

    with Daemon() as other:
        peer = _learn_a_peer(daemon, other)
        before = _peer_info(daemon, peer)
        rng = random.Random(5)
        for _ in range(300):
            s = raw(daemon)
            try:
                s.sendall(encode_frame(rng.randbytes(rng.randrange(0, 48))))
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        after = _peer_info(daemon, peer)
        assert after.peer.id == peer and set(after.peer.addrs) >= set(before.peer.addrs)
        assert "/ipfs/ping/1.0.0" in _protocols(daemon, peer)


def test_the_peerstore_survives_a_restart(short_home):
    from test_daemon_harness import Daemon

    with Daemon() as other:
        first = HomeDaemon(short_home)
        try:
            peer = _learn_a_peer(first, other)
            addrs = set(_peer_info(first, peer).peer.addrs)
            protocols = set(_protocols(first, peer))
        finally:
            first.stop()  # SIGTERM: the peerstore is written on the way out
        again = HomeDaemon(short_home)
        try:
            assert client(again).list_peers() == []  # not connected, only remembered
            info = _peer_info(again, peer)
            assert set(info.peer.addrs) == addrs
            assert set(_protocols(again, peer)) == protocols
            # What was remembered is usable: reconnect by peer id alone.
            client(again).connect(peer, [])
            assert [p.id for p in client(again).list_peers()] == [peer]
        finally:
            again.stop()
