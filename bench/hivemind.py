"""hivemind on our daemon vs on hivemind's own go daemon, in one run.

The same unmodified hivemind 1.1.12 (its own venv, tests/harness/hivemind_env.py) runs
bench/hivemind_load.py twice, alternating: with its package's go daemon, and through
the overlay whose ``hivemind_cli/p2pd`` starts ours. Measured: unary protobuf calls/s
between two ``P2P`` instances (16 in flight), MiB/s of a streaming handler sending 4 MiB
tensor-sized messages, ``hivemind.DHT`` store+get round trips/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable

from .common import row
from .peers import ROOT

BENCH = "hivemind"
PEER = "hivemind 1.1.12 on its go-libp2p-daemon (v0.5.0.hivemind1)"


def _measure(python, overlay, seconds: float) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if overlay is not None:
        env["PYTHONPATH"] = str(overlay)
    # Fed on stdin: run as a file from bench/, `import hivemind` would find this module.
    script = (ROOT / "bench" / "hivemind_load.py").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [str(python), "-", str(seconds)],
            input=script,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=900,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"hivemind load failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def run(quick: bool) -> Iterable[dict]:
    from tests.harness.hivemind_env import hivemind_python, overlay_for

    python = hivemind_python()
    overlay = overlay_for(python)
    seconds = 1.0 if quick else 3.0
    rounds = 1 if quick else 2
    best: dict[str, dict[str, float]] = {"ours": {}, "go": {}}
    for _ in range(rounds):
        for kind in ("ours", "go"):
            got = _measure(python, overlay if kind == "ours" else None, seconds)
            for key, value in got.items():
                best[kind][key] = max(best[kind].get(key, 0.0), value)
    o, g = best["ours"], best["go"]
    yield row(
        BENCH,
        "P2P unary protobuf calls, 16 in flight",
        o["unary_per_s"],
        "calls/s",
        PEER,
        g["unary_per_s"],
    )
    yield row(
        BENCH,
        "P2P streaming handler, 4 MiB messages",
        o["stream_mib_per_s"],
        "MiB/s",
        PEER,
        g["stream_mib_per_s"],
    )
    yield row(
        BENCH,
        "DHT store+get round trips",
        o["dht_store_get_per_s"],
        "round trips/s",
        PEER,
        g["dht_store_get_per_s"],
    )
