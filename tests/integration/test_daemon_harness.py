"""Daemons launched as go-daemon test harnesses launch them: flags only, side by side.

This module also holds :class:`Daemon`, the launcher the other ``test_daemon_*`` files
import: a real ``python -m p2pd`` subprocess whose ready lines are parsed from stdout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0


class Daemon:
    """One ``p2pd`` subprocess in harness mode (``-listen /unix/...``) on 127.0.0.1."""

    def __init__(self, *extra: str, host_addrs: str = "/ip4/127.0.0.1/tcp/0", env=None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))  # short: sun_path limit
        self.sock = self.dir / "p2pd.sock"
        self.control = f"/unix{self.sock}"
        args = [sys.executable, "-m", "p2pd", "-listen", self.control, "-hostAddrs", host_addrs]
        environment = dict(os.environ if env is None else env)
        environment.setdefault("P2PD_HOME", str(self.dir / "home"))
        self.proc = subprocess.Popen(
            [*args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.n_addrs = len(host_addrs.split(","))
        self.peer_id = ""
        self.addrs: list[str] = []
        self.ready_lines: list[str] = []
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        lines = self.ready_lines
        while len(lines) < 3 + self.n_addrs:
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"daemon not ready; got {lines!r}")
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError(f"daemon exited {self.proc.wait()}: {lines!r} {err}")
            lines.append(line.rstrip("\n"))
        assert lines[0] == f"Control socket: {self.control}"
        assert lines[1].startswith("Peer ID: ")
        assert lines[2] == "Peer Addrs:"
        self.peer_id = lines[1][len("Peer ID: ") :]
        self.addrs = lines[3:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def test_three_daemons_started_at_once_run_side_by_side_with_distinct_identities():
    daemons = []
    try:
        procs_started = time.monotonic()
        daemons = [Daemon() for _ in range(3)]
        assert time.monotonic() - procs_started < 3 * READY_TIMEOUT
        assert len({d.peer_id for d in daemons}) == 3
        for d in daemons:
            assert d.sock.exists()
            assert oct(d.sock.stat().st_mode & 0o777) == oct(0o600)
            assert d.addrs and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in d.addrs)
            assert not (d.dir / "home").exists(), "harness mode must not touch $P2PD_HOME"
    finally:
        for d in daemons:
            d.stop()


def test_sigterm_and_sigint_shut_down_cleanly_and_remove_the_socket():
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon()
        sock = d.sock
        proc = d.proc
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert not sock.exists()
        d.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_pubsub_daemon_with_subscribers_and_a_peer(sig):
    """Issue 15's bug: a -pubsub daemon with `pubsub sub` clients once closed its control
    socket on SIGTERM and then ignored SIGTERM and SIGINT for over a minute."""
    a, b = Daemon("-pubsub"), Daemon("-pubsub")
    subs = []
    try:
        subprocess.run([sys.executable, "-m", "p2pd", "connect", "--api", b.control,
                        f"{a.addrs[0]}/p2p/{a.peer_id}"], check=True, capture_output=True,
                       timeout=30)
        subs = [subprocess.Popen([sys.executable, "-m", "p2pd", "pubsub", "sub", "news",
                                  "--api", d.control], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for d in (a, b, b)]
        import select

        deadline = time.monotonic() + 20
        waiting = {subs[1].stdout, subs[2].stdout}
        while waiting:  # until a's messages reach both of b's subscribers
            assert time.monotonic() < deadline, "no message reached b's subscribers"
            subprocess.run([sys.executable, "-m", "p2pd", "pubsub", "pub", "news", "hello",
                            "--api", a.control], check=True, capture_output=True, timeout=30)
            for out in select.select(list(waiting), [], [], 0.5)[0]:
                assert out.readline().endswith(" hello\n")
                waiting.discard(out)
        started = time.monotonic()
        b.proc.send_signal(sig)
        assert b.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert not b.sock.exists()
        for sub in subs[1:]:  # its subscribers are told, and end
            assert sub.wait(timeout=10) == 1
            assert "the daemon closed the subscription" in sub.stderr.read()
        assert subs[0].poll() is None  # a's subscriber goes on
    finally:
        for sub in subs:
            sub.kill()
            sub.wait()
        a.stop()
        b.stop()


def test_id_flag_gives_the_same_peer_id_every_start(tmp_path):
    from p2pd.identity import encode_private_key, new_ed25519

    key = tmp_path / "id.key"
    key.write_bytes(encode_private_key(new_ed25519()))
    with Daemon("-id", str(key)) as a:
        first = a.peer_id
    with Daemon("-id", str(key)) as b:
        assert b.peer_id == first


def test_tcp_control_endpoint_is_reported_with_its_real_port():
    d = Daemon.__new__(Daemon)
    d.dir = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pd",
            "-listen",
            "/ip4/127.0.0.1/tcp/0",
            "-hostAddrs",
            "/ip4/127.0.0.1/tcp/0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Control socket: /ip4/127.0.0.1/tcp/")
        assert not line.rstrip().endswith("/tcp/0")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    "flags,words",
    [
        (["-hostAddrs=/ip4/127.0.0.1/tcp/notaport"], "swarm"),
        (["-connLo=9", "-connHi=5"], "connLo"),
        (["-id=/nonexistent"], "does not exist"),
        (["-listen=/dns/x/tcp/1"], "control address"),
    ],
)
def test_bad_flags_fail_with_one_clear_line(flags, words):
    args = [sys.executable, "-m", "p2pd", "-listen", "/unix/tmp/p2pd-never.sock", *flags]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert out.stderr.startswith("p2pd: ") and "Traceback" not in out.stderr, out.stderr
    assert words in out.stderr
