"""A QUIC connection the peer forgot: the peer's daemon is killed (kill -9, no
CONNECTION_CLOSE) and comes back on the same UDP port with the same key. The side that kept
the connection must notice at once through the restarted peer's stateless reset (both derive
the reset key from the host key, as go-libp2p does), not after the 30 s idle timeout, and
redial: an echo stream works again within a few seconds. Ours keeps, ours restarts; ours
keeps, the go daemon restarts; the go daemon keeps, ours restarts."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import trio
from harness.gocontrol import DaemonPeer
from harness.godaemon import go_daemon_path

from p2pd.identity import encode_private_key, new_ed25519

ECHO = "/p2pd-test/echo/1.0.0"
OURS = [sys.executable, "-m", "p2pd"]
#: well under the idle timeout (30 s on both sides): only a recognised reset gets there
NOTICE_WITHIN = 8.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_works(keeper: DaemonPeer, peer: bytes) -> bool:
    """One echo of a small blob through a new stream, bounded to 2 s."""
    try:
        sock = keeper.open_stream(peer, ECHO)
    except (RuntimeError, OSError):
        return False
    sock.settimeout(2)
    blob = os.urandom(4096)  # fits the socket buffers: no sending thread needed
    got = b""
    try:
        sock.sendall(blob)
        while len(got) < len(blob) and (data := sock.recv(65536)):
            got += data
    except OSError:
        return False
    finally:
        sock.close()
    return got == blob


def restart_case(keeper_cmd: list[str], restarter_cmd: list[str], tmp_path: Path) -> float:
    """Seconds from the restarted peer's first identify to a working echo from the keeper."""
    key = tmp_path / "restarter.key"
    key.write_bytes(encode_private_key(new_ed25519()))
    key.chmod(0o600)
    addr = f"/ip4/127.0.0.1/udp/{free_udp_port()}/quic-v1"
    keeper = DaemonPeer(keeper_cmd)
    peers = [keeper]
    try:
        restarter = DaemonPeer(restarter_cmd, addr, "-id", str(key))
        peers.append(restarter)
        restarter.handle(ECHO, "echo")
        keeper.connect(restarter.peer, restarter.addrs)
        assert echo_works(keeper, restarter.peer)
        restarter.proc.kill()  # no CONNECTION_CLOSE: the keeper's connection is orphaned
        restarter.proc.wait()
        restarter.stop()
        peers.remove(restarter)
        again = DaemonPeer(restarter_cmd, addr, "-id", str(key))
        peers.append(again)
        assert again.peer == restarter.peer
        again.handle(ECHO, "echo")
        start = time.monotonic()
        while not echo_works(keeper, again.peer):
            assert time.monotonic() - start < NOTICE_WITHIN, \
                "the keeper did not notice the forgotten connection"
        return time.monotonic() - start
    finally:
        for peer in peers:
            peer.stop()


@pytest.mark.parametrize("keeper, restarter", [("ours", "ours"), ("ours", "go"),
                                               ("go", "ours")])
async def test_a_connection_the_restarted_peer_forgot_is_noticed_and_redialed(
        keeper, restarter, tmp_path):
    commands = {"ours": OURS}
    if "go" in (keeper, restarter):
        commands["go"] = [str(go_daemon_path())]
    with trio.fail_after(60):
        await trio.to_thread.run_sync(restart_case, commands[keeper], commands[restarter],
                                      tmp_path)
