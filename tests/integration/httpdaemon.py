"""A p2pd subprocess with its HTTP listeners on ephemeral ports, for the HTTP tests.

Harness mode (``-listen``) with ``-httpAddr 127.0.0.1:0`` and ``-metricsAddr :0``, or home
mode with a ``config.toml`` the test writes; either way the bound URLs are read from the
daemon's stderr lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_TIMEOUT = 30.0

HOME_CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
port_map = false
[autonat]
client = false
[bootstrap]
enabled = false
[dht]
enabled = false
[pubsub]
enabled = false
[http]
listen = "127.0.0.1:0"
block_timeout = "{block_timeout}"
[metrics]
listen = "127.0.0.1:0"
"""


class HTTPDaemon:
    def __init__(self, *extra: str, home: bool = False, block_timeout: str = "2s",
                 directory: Path | None = None) -> None:
        """``directory``: start again on the home a stopped daemon left there."""
        self.dir = directory or Path(tempfile.mkdtemp(prefix="p2pd-h-", dir="/tmp"))
        env = dict(os.environ)
        env["P2PD_HOME"] = str(self.dir / "home")
        if home:
            (self.dir / "home").mkdir(exist_ok=True)
            (self.dir / "home" / "config.toml").write_text(
                HOME_CONFIG.format(block_timeout=block_timeout))
            self.control = f"/unix{self.dir / 'home' / 'p2pd.sock'}"
            args = list(extra)
        else:
            self.control = f"/unix{self.dir / 'p2pd.sock'}"
            args = ["-listen", self.control, "-hostAddrs", "/ip4/127.0.0.1/tcp/0",
                    "-httpAddr", "127.0.0.1:0", "-metricsAddr", ":0", *extra]
        self.proc = subprocess.Popen([sys.executable, "-m", "p2pd", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.stderr_lines: list[str] = []
        self.http = self.metrics = ""
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self.http and self.metrics):
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"no HTTP lines: {self.stderr_lines}")
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"daemon exited {self.proc.wait()}: {self.stderr_lines}")
            self.stderr_lines.append(line.rstrip("\n"))
            if m := re.search(r"metrics on (http://\S+)", line):
                self.metrics = m.group(1)
            if m := re.search(r"status page on (http://\S+/)", line):
                self.http = m.group(1)
        self.ready = [self.proc.stdout.readline().rstrip("\n") for _ in range(4)]
        self.peer_id = self.ready[1].removeprefix("Peer ID: ")
        self.addr = self.ready[3]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A client command against this daemon (bytes out: ``cat`` output is binary)."""
        out = subprocess.run([sys.executable, "-m", "p2pd", *args, "--api", self.control],
                             capture_output=True, timeout=60)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def add(self, path: Path) -> str:
        return self.cli("add", "-Q", str(path)).stdout.decode().strip()

    def add_bytes(self, path: Path, data: bytes) -> str:
        path.write_bytes(data)
        return self.add(path)

    def stop(self, remove: bool = True) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HTTPDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
