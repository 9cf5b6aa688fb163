"""Our daemon and a Helia node as lab processes (used by tests/lab and bench/)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .procs import Proc
from .topology import Lab, Node

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
SWARM_PORT = 4001


def daemon_env(home: Path) -> dict[str, str]:
    """A lab daemon's environment: its own home, and /dnsaddr through its resolv.conf (the
    lab's DNS) instead of the test suite's P2PD_DNS_RESOLVER / P2PD_BOOTSTRAP_PEERS."""
    drop = ("P2PD_DNS_RESOLVER", "P2PD_BOOTSTRAP_PEERS", "P2PD_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["P2PD_HOME"] = str(home)
    return env


class LabDaemon:
    """``python -m p2pd`` in harness mode inside a lab node, listening on SWARM_PORT."""

    #: the daemon's command; LabGoDaemon runs the go daemon instead
    program: tuple[str, ...] = (sys.executable, "-m", "p2pd")
    #: its working directory (None: ours)
    cwd: str | None = None

    def __init__(self, lab: Lab, node: Node, *flags: str, name: str | None = None) -> None:
        self.node = node
        self.dir = Path(tempfile.mkdtemp(prefix="p2pl-", dir="/tmp"))  # short: sun_path
        lab.on_close(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.sock = self.dir / "p2pd.sock"
        self.control = f"/unix{self.sock}"
        argv = [
            *self.program,
            "-listen",
            self.control,
            "-hostAddrs",
            f"/ip4/0.0.0.0/tcp/{SWARM_PORT}",
            *flags,
        ]
        self.proc: Proc = lab.run(
            node, argv, name=name or f"p2pd-{node.name}", env=daemon_env(self.dir / "home"),
            cwd=self.cwd,
        )
        m = self.proc.wait_for(r"^Peer ID: (\S+)\nPeer Addrs:\n", timeout=60)
        self.peer_id = m.group(1)
        self.addr = f"/ip4/{node.addr}/tcp/{SWARM_PORT}/p2p/{self.peer_id}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        """A ``p2pd`` client command against this daemon (its socket is a file: no netns)."""
        done = subprocess.run(
            [sys.executable, "-m", "p2pd", *args, "--api", self.control],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(
                f"p2pd {' '.join(args)} on {self.node.name}: {done.stderr}"
                f"\n--- daemon log ---\n{self.proc.errors()[-3000:]}"
            )
        return done.stdout

    def peers(self) -> list[str]:
        return re.findall(r"12D3\w+|Qm\w+", self.cli("peers"))

    def wait_peers(self, want: set[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not want <= set(self.peers()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.node.name} has peers {self.peers()}, wants {want}"
                    f"\n--- daemon log ---\n{self.proc.errors()[-3000:]}"
                )
            time.sleep(0.3)

    def close(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LabGoDaemon(LabDaemon):
    """The go-libp2p daemon (hivemind's fork, from the PyPI wheel) inside a lab node; the
    ``p2pd`` client commands drive it through the same daemon protocol. It runs in ``/``:
    it reads a stream handler's ``/unix`` address without the leading slash."""

    cwd = "/"

    def __init__(self, lab: Lab, node: Node, *flags: str, name: str | None = None) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "godaemon", HERE.parent / "harness" / "godaemon.py")
        godaemon = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(godaemon)
        self.program = (str(godaemon.go_daemon_path()),)
        super().__init__(lab, node, *flags, name=name or f"go-{node.name}")


class LabHelia:
    """tests/lab/helia_home.mjs (Helia 7 + kad-dht client + bootstrap) inside a lab node."""

    script = "helia_home.mjs"
    kind = "helia"

    def __init__(self, lab: Lab, node: Node, bootstrap: list[str], name: str | None = None,
                 env: dict[str, str] | None = None):
        node_bin = shutil.which("node")
        if node_bin is None or not (INTEROP / "node_modules").is_dir():
            raise RuntimeError("needs node and `npm ci` in tests/interop")
        self.node = node
        # ESM resolves packages next to the script: run a copy beside a node_modules link
        work = lab.logdir / f"js-{node.name}"
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / self.script, work / self.script)
        shutil.copy(INTEROP / "polyfill.mjs", work / "polyfill.mjs")
        link = work / "node_modules"
        if not link.exists():
            link.symlink_to(INTEROP / "node_modules")
        self.proc = lab.run(
            node,
            [node_bin, str(work / self.script), json.dumps(bootstrap)],
            name=name or f"{self.kind}-{node.name}",
            pipe=True,
            env={**os.environ, **(env or {})},
        )
        line = self.proc.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} node exited: {self.proc.errors()[-3000:]}")
        info = json.loads(line)
        self.peer_id = info["peerId"]
        self.addr = f"/ip4/{node.addr}/tcp/{SWARM_PORT}/p2p/{self.peer_id}"

    def call(self, *, limit: float | None = None, **cmd) -> dict:
        """Send ``cmd``, return its reply. ``limit``: seconds to wait for the reply at most,
        whatever the node does with its own ``timeout`` (a fetch stalled inside Helia
        does not always see its abort signal); past it the node is stopped and
        :class:`Stalled` raised."""
        self.proc.popen.stdin.write(json.dumps(cmd) + "\n")
        self.proc.popen.stdin.flush()
        if limit is None and not hasattr(self, "_lines"):
            line = self.proc.popen.stdout.readline()
        else:
            line = self._line_within(limit)
            if line is None:
                self.proc.stop()
                raise Stalled(f"{self.kind} {cmd.get('cmd')}: no reply within {limit:g} s")
        if not line:
            raise RuntimeError(f"{self.kind} node exited: {self.proc.errors()[-3000:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.kind} {cmd.get('cmd')}: {reply['error']}")
        return reply

    def _line_within(self, seconds: float | None) -> str | None:
        if not hasattr(self, "_lines"):  # one reader thread per node, from the first limit on
            self._lines: queue.Queue[str] = queue.Queue()
            out = self.proc.popen.stdout

            def pump() -> None:
                for line in iter(out.readline, ""):
                    self._lines.put(line)
                self._lines.put("")

            threading.Thread(target=pump, daemon=True, name=f"{self.kind}-stdout").start()
        try:
            return self._lines.get(timeout=seconds)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.proc.stop()


class Stalled(RuntimeError):
    """A lab node gave no reply within the limit set for it."""


class LabJsNat(LabHelia):
    """tests/lab/js_nat_node.mjs (js-libp2p with AutoNAT, circuit relay v2, DCUtR) in a lab
    node; ``relay_server`` serves relay v2, ``reserve`` holds a reservation at a relay it
    dialed; ``announce`` replaces what it announces."""

    script = "js_nat_node.mjs"
    kind = "js"

    def __init__(self, lab: Lab, node: Node, dial: list[str], *, relay_server: bool = False,
                 reserve: bool = False, announce: list[str] | None = None,
                 name: str | None = None):
        env = {"RELAY_SERVER": "1" if relay_server else "", "RESERVE": "1" if reserve else ""}
        if announce:
            env["ANNOUNCE"] = ",".join(announce)
        super().__init__(lab, node, dial, name=name, env=env)
