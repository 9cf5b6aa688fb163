"""Bootstrap as a user sees it: a /dnsaddr that resolves to nothing, or bootstrap peers
that all fail, are said in one warning line each; a node that could not join at start
joins by itself once a bootstrap peer is reachable (re-bootstrap with backoff)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from dnsserver import TxtServer
from test_daemon_harness import Daemon

from p2pd.identity import encode_private_key, new_ed25519

P2PD = [sys.executable, "-m", "p2pd"]


class Stderr:
    """Collects a running daemon's stderr lines (a thread: the pipe must not fill up)."""

    def __init__(self, d: Daemon) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(d.proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def matching(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.matching(text):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} on stderr within {timeout:g} s: {self.lines}")
            time.sleep(0.1)
        return self.matching(text)[0]


def env_without_bootstrap_override(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "P2PD_BOOTSTRAP_PEERS"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peers_of(d: Daemon) -> str:
    r = subprocess.run([*P2PD, "peers", "--api", d.control], capture_output=True, text=True,
                       timeout=30)
    return r.stdout


def test_a_dnsaddr_that_resolves_to_nothing_is_one_clear_warning():
    dns = TxtServer({"_dnsaddr.bootstrap.example": []})
    env = env_without_bootstrap_override(P2PD_DNS_RESOLVER=dns.address)
    with Daemon("-dht", "-bootstrap", "-bootstrapPeers", "/dnsaddr/bootstrap.example",
                env=env) as d:
        err = Stderr(d)
        line = err.wait_for("resolved to no addresses")
        assert "/dnsaddr/bootstrap.example" in line and dns.address in line
        assert line.startswith("WARNING")
        assert len(err.matching("resolved to no addresses")) == 1
        assert not err.matching("Traceback")


def test_unreachable_bootstrap_peers_are_one_warning_and_the_node_joins_when_they_come(
        tmp_path):
    key = tmp_path / "b.key"
    key.write_bytes(encode_private_key(new_ed25519()))
    port = free_port()
    addr = f"/ip4/127.0.0.1/tcp/{port}"
    with Daemon("-id", str(key), host_addrs=addr) as first:
        b_id = first.peer_id
    env = env_without_bootstrap_override()
    with Daemon("-dht", "-bootstrap", "-bootstrapPeers", f"{addr}/p2p/{b_id}", env=env) as a:
        err = Stderr(a)
        line = err.wait_for("none of the 1 bootstrap peers could be reached")
        assert line.startswith("WARNING")
        assert b_id not in peers_of(a)
        # the bootstrap peer comes online later: the node joins through it by itself
        with Daemon("-id", str(key), "-dht", host_addrs=addr, env=env):
            deadline = time.monotonic() + 45
            while b_id not in peers_of(a):
                assert time.monotonic() < deadline, f"never re-bootstrapped: {err.lines}"
                time.sleep(0.5)
        assert len(err.matching("none of the 1 bootstrap peers")) == 1
        assert not err.matching("Traceback")
