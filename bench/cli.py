"""Wall time of ``p2pd id``, ``p2pd add`` (a small file) and ``p2pd cat`` (the same file)
through a running daemon, each a fresh process as a person or a script starts it, vs a
bare ``python -c pass`` on the same interpreter in the same run.

The ratio is ours / the bare interpreter (lower is better, target <= 3): what the CLI
costs beyond starting Python at all is its imports and one control-socket round trip.
Runs alternate between the four commands (the machine's other load falls on all alike);
the fastest of each counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.common import best_of_alternating, row
from bench.peers import our_daemon

PEER = "python -c pass (same interpreter)"


def _runner(args: list[str], env: dict[str, str], expect: bytes | None = None):
    def once() -> None:
        out = subprocess.run(args, env=env, capture_output=True, timeout=60)
        if out.returncode != 0 or (expect is not None and out.stdout != expect):
            raise RuntimeError(f"{' '.join(args[2:])} failed: {out.stderr.decode()[-500:]}")
    return once


def run(quick: bool) -> Iterable[dict]:
    repeat = 5 if quick else 21
    with our_daemon() as daemon:
        env = dict(os.environ, P2PD_HOME=str(daemon.tmp / "home"))
        # as installed for a person: modules compiled once (pip writes the .pyc files),
        # not recompiled at every start
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        data = os.urandom(4096)
        path = Path(tempfile.mkdtemp(prefix="p2pd-cli-", dir="/tmp")) / "small.bin"
        path.write_bytes(data)
        p2pd = [sys.executable, "-m", "p2pd"]
        cid = subprocess.run([*p2pd, "add", "-Q", str(path)], env=env, capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip()
        bare, ident, add, cat = best_of_alternating([
            _runner([sys.executable, "-c", "pass"], env),
            _runner([*p2pd, "id"], env),
            _runner([*p2pd, "add", "-Q", str(path)], env, f"{cid}\n".encode()),
            _runner([*p2pd, "cat", cid], env, data),
        ], repeat)
        path.unlink()
        path.parent.rmdir()
    for name, seconds in (("id", ident), ("add_4KiB", add), ("cat_4KiB", cat)):
        yield row("cli", f"{name}_wall_ms_lower_is_better", seconds * 1000, "ms", PEER,
                  bare * 1000)
