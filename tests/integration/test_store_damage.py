"""A damaged datastore under a real daemon: detected, reported, never served.

- A block value whose bytes no longer match its CID and a block in a table file RocksDB can
  no longer read back (a flipped byte fails its checksum): a peer asking for them gets
  none of their bytes, the owner's log says so, the salvage the unreadable one sets off
  drops a third bad block, the other files still serve, and the blocks are fetched again
  from a peer with a good copy.
- A write-ahead log cut short after ``kill -9``: the daemon starts, says what RocksDB dropped,
  everything before the cut is there and verifies, and writes work.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_daemon_bad_input import CONFIG, HomeDaemon, short_home  # noqa: F401 (fixture)
from test_daemon_harness import Daemon

from p2pd.blocks import dagpb
from p2pd.blocks.cid import CID
from p2pd.cli.client import ControlClient, RequestFailed
from p2pd.proto import daemon_pb2 as pb
from p2pd.store import Datastore

P2PD = [sys.executable, "-m", "p2pd"]
B = pb.BlocksRequest


def p2pd(api: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([*P2PD, *args, "--api", api], capture_output=True, timeout=60)
    if check:
        assert r.returncode == 0, f"p2pd {' '.join(args)}: {r.stderr.decode()[-2000:]}"
    return r


def stat(api: str) -> dict:
    return json.loads(p2pd(api, "repo", "stat", "--json").stdout)


def api(d: HomeDaemon) -> str:
    return f"/unix{d.sock}"


def add(api_: str, path: Path) -> str:
    return p2pd(api_, "add", "-q", "--cid-version", "1", str(path)).stdout.decode().strip()


@pytest.fixture
def home(short_home):  # noqa: F811 (the fixture imported above)
    return short_home


def stop(d: HomeDaemon) -> str:
    """SIGTERM, then the daemon's whole stderr."""
    d.stop()
    return d.proc.stderr.read()


def test_damaged_blocks_are_never_served_reported_and_fetched_again(home, tmp_path):
    files = {name: os.urandom(size) for name, size in
             (("f", 2_600_000), ("g", 300_000), ("h", 600_000))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    a = HomeDaemon(home, CONFIG)
    cids = {name: add(api(a), tmp_path / name) for name in files}
    stop(a)

    with Datastore.open(home / "datastore") as ds:
        def leaves(name: str) -> list[CID]:
            root = CID.decode(cids[name])
            return [link.cid for link in dagpb.decode_node(ds.blocks.get(root.multihash)).links]

        f_leaves, h_leaves = leaves("f"), leaves("h")
        for cid in (f_leaves[1], h_leaves[0]):  # values that no longer match their CIDs
            bad = bytearray(ds.blocks.get(cid.multihash))
            bad[100] ^= 0x01
            ds.blocks.put(cid.multihash, bytes(bad))
        # A leaf whose key follows another big block's: RocksDB ends a data block after a
        # big value, so this leaf's data block holds it alone and the flip hits only it.
        keys = list(ds.blocks.keys())
        big = {k for k in keys if len(ds.blocks.get(k)) > 4096}
        unreadable = next(c for c in f_leaves[2:]
                          if keys.index(c.multihash) and keys[keys.index(c.multihash) - 1] in big)
        needle = ds.blocks.get(unreadable.multihash)[5000:5064]
    for sst in glob.glob(str(home / "datastore" / "*.sst")):  # a byte of a table file
        raw = bytearray(Path(sst).read_bytes())
        at = raw.find(needle)
        if at >= 0:
            raw[at] ^= 0x01
            Path(sst).write_bytes(raw)
            break
    else:
        pytest.fail("the block is in no table file")

    a = HomeDaemon(home, CONFIG)
    fetcher, good = Daemon(), Daemon()
    try:
        aid, aaddr = ControlClient.for_address(api(a)).identify()
        ControlClient.for_address(fetcher.control).connect(aid, aaddr)
        failed = p2pd(fetcher.control, "get", cids["f"], "-o", str(tmp_path / "f1"),
                      "--timeout", "4", check=False)
        assert failed.returncode == 1
        # Only the good blocks left: the root and the leaves but the two damaged ones.
        assert stat(api(a))["blocks_sent"] == 1 + len(f_leaves) - 2
        assert stat(fetcher.control)["banned"] == 0
        assert p2pd(api(a), "cat", cids["g"]).stdout == files["g"]  # the rest still works

        verify = p2pd(api(a), "repo", "verify", "--json", check=False)
        report = json.loads(verify.stdout)
        # The unreadable block set off a salvage of the datastore (test_store_salvage.py),
        # which hashed every block on the way: h's leaf is dropped too, and said.
        assert verify.returncode == 1 and report["blocks_bad"] == 0, report
        assert sorted(report["pins_incomplete"]) == sorted([cids["f"], cids["h"]]), report
        dropped = stat(api(a))["salvage_dropped_blocks"]
        assert str(CID(1, 0x55, h_leaves[0].multihash)) in dropped, dropped

        add(good.control, tmp_path / "f")  # a peer with a good copy
        gid, gaddr = ControlClient.for_address(good.control).identify()
        for d in (fetcher.control, api(a)):
            ControlClient.for_address(d).connect(gid, gaddr)
        p2pd(fetcher.control, "get", cids["f"], "-o", str(tmp_path / "f2"), "--timeout", "20")
        assert (tmp_path / "f2").read_bytes() == files["f"]
        p2pd(api(a), "get", cids["f"], "-o", str(tmp_path / "f3"), "--timeout", "20")
        assert (tmp_path / "f3").read_bytes() == files["f"]
        report = json.loads(p2pd(api(a), "repo", "verify", "--json", check=False).stdout)
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == [cids["h"]], report
    finally:
        fetcher.stop()
        good.stop()
        log = stop(a)
    # f's changed leaf: quarantined when read, or dropped by the salvage if that came first
    assert (f"block {f_leaves[1]} is corrupt on disk" in log
            or f"block {f_leaves[1]} was damaged on disk and is dropped" in log), log[-3000:]
    assert f"block {unreadable} is unreadable on disk" in log and "checksum" in log, log[-3000:]


def test_a_cut_write_ahead_log_is_reported_and_what_came_before_it_verifies(
        home, tmp_path):
    a = HomeDaemon(home, CONFIG)
    client = ControlClient.for_address(api(a))
    acked = []
    for i in range(40):
        data = os.urandom(1500) + b"%d" % i
        r = client.request(pb.Request(type=pb.Request.BLOCKS, blocks=B(
            type=B.BLOCK_PUT, data=data, codec=0x55, cidVersion=1)))
        acked.append((CID.from_bytes(r.blocks.cid), data))
    (tmp_path / "after.bin").write_bytes(b"written after the restart\n")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    wal = max(glob.glob(str(home / "datastore" / "*.log")), key=os.path.getsize)
    os.truncate(wal, os.path.getsize(wal) - 2500)  # through the last record or two

    a = HomeDaemon(home, CONFIG)
    try:
        dropped = stat(api(a))["wal_dropped"]
        assert dropped and "bytes" in dropped[0], dropped
        client = ControlClient.for_address(api(a))
        present = []
        for cid, data in acked:
            try:
                r = client.request(pb.Request(type=pb.Request.BLOCKS, blocks=B(
                    type=B.BLOCK_GET, cid=cid.to_bytes(), offline=True)))
            except RequestFailed:
                present.append(False)
                continue
            assert r.blocks.data == data
            present.append(True)
        # Only a tail is gone (the cut records); everything before it is here and intact.
        assert present[:35] == [True] * 35 and not all(present), present
        assert present == sorted(present, reverse=True), present
        report = json.loads(p2pd(api(a), "repo", "verify", "--json").stdout)
        assert report["blocks_bad"] == 0, report
        cid = add(api(a), tmp_path / "after.bin")
        assert p2pd(api(a), "cat", cid).stdout == b"written after the restart\n"
    finally:
        log = stop(a)
    assert "write-ahead log was cut or damaged" in log, log[-3000:]
