"""A real js-libp2p 3.x node (tests/interop/js_node.mjs: TCP + WebSocket, Noise, Yamux or
mplex, identify, ping, an echo protocol), steered with JSON lines on its stdin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

INTEROP = Path(__file__).resolve().parents[1] / "interop"
ECHO = "/p2pd-test/echo/1.0.0"


class JsNode:
    def __init__(self, **env: str) -> None:
        self.proc = subprocess.Popen(
            ["node", "js_node.mjs"],
            cwd=INTEROP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, ECHO_PROTOCOL=ECHO, **env),
        )
        hello = json.loads(self.proc.stdout.readline())
        self.peer_id: str = hello["peerId"]
        self.addrs: list[str] = hello["addrs"]

    def addr(self, ws: bool) -> str:
        return next(a for a in self.addrs if ("/ws/" in a) == ws)

    def call(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert "error" not in reply, reply["error"]
        return reply

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
