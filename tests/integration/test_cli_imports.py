"""Each ``p2pd`` client command imports only what it uses: a person's every command pays
for its imports at start (bench/cli.py: id, add, cat within 3x a bare interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from test_daemon_harness import Daemon

#: What a client command of a running daemon never needs: py-multiaddr (netaddr) for
#: printing addresses, dataclasses (inspect), PyNaCl, the importer and its thread pool,
#: the path walker for a bare CID, logging, every other command group.
NEVER = ("multiaddr", "netaddr", "dataclasses", "nacl", "concurrent.futures", "logging",
         "p2pd.blocks.importer", "p2pd.blocks.paths", "p2pd.cli.dht", "p2pd.cli.pubsub",
         "p2pd.cli.node", "shutil", "trio")


def _imported(*args: str) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "P2PD_DEBUG_LOG"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "p2pd", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", out.stderr, re.M))
    assert "p2pd.cli" in names
    return out.stdout, names


def test_id_add_and_cat_import_nothing_they_do_not_use(tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"a small file\n")
    with Daemon() as d:
        api = ("--api", f"/unix{d.sock}")
        out, names = _imported("id", *api)
        assert d.peer_id in out and "/tcp/" in out
        assert not names & set(NEVER) - {"p2pd.cli.node"}, names & set(NEVER)
        cid, names = _imported("add", "-Q", *api, str(small))
        assert not names & set(NEVER), names & set(NEVER)
        out, names = _imported("cat", *api, cid.strip())
        assert out == "a small file\n"
        assert not names & set(NEVER), names & set(NEVER)
