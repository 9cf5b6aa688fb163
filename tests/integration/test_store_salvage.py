"""A damaged RocksDB table file under a real daemon, mended online (issue 16 item 3).

A byte of a block flipped in a ``.sst`` file: once a compaction meets it RocksDB refuses
every write until the database is reopened. The daemon salvages instead of waiting for a
restart: every readable key copied to a fresh database (blocks hashed against their CIDs on
the way), swapped in by renaming, the damaged directory kept aside. Good blocks keep being
served, the damaged one reads as missing (and is fetched again from a peer), the add that
met the damage succeeds, a restart afterwards is clean and nothing acknowledged and
undamaged is lost."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from test_daemon_bad_input import CONFIG, HomeDaemon, short_home  # noqa: F401 (fixture)
from test_daemon_harness import Daemon
from test_store_damage import add, api, p2pd, stat, stop

from p2pd.blocks import dagpb
from p2pd.blocks.cid import CID
from p2pd.cli.client import ControlClient, RequestFailed
from p2pd.proto import daemon_pb2 as pb
from p2pd.store import Datastore

B = pb.BlocksRequest


def block_get(api_: str, cid: CID) -> bytes | None:
    try:
        r = ControlClient.for_address(api_).request(pb.Request(type=pb.Request.BLOCKS, blocks=B(
            type=B.BLOCK_GET, cid=cid.to_bytes(), offline=True)))
    except RequestFailed:
        return None
    return r.blocks.data


def flip_in_table_file(datastore: Path, needle: bytes) -> str:
    for sst in glob.glob(str(datastore / "*.sst")):
        raw = bytearray(Path(sst).read_bytes())
        at = raw.find(needle)
        if at >= 0:
            raw[at] ^= 0x01
            Path(sst).write_bytes(raw)
            return sst
    raise AssertionError("the block is in no table file")


def test_a_damaged_table_file_is_salvaged_online_and_writes_work_without_a_restart(
        short_home, tmp_path):  # noqa: F811 (the fixture imported above)
    home = short_home
    files = {name: os.urandom(size) for name, size in
             (("f", 2_600_000), ("g", 300_000), ("h", 600_000), ("junk", 700_000))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    a = HomeDaemon(home, CONFIG)
    cids = {name: add(api(a), tmp_path / name) for name in ("f", "g", "h")}
    junk = p2pd(api(a), "add", "-q", "--cid-version", "1", "--no-pin",
                str(tmp_path / "junk")).stdout.decode().strip()
    stop(a)

    with Datastore.open(home / "datastore") as ds:
        f_leaves = [link.cid for link in dagpb.decode_node(
            ds.blocks.get(CID.decode(cids["f"]).multihash)).links]
        # A leaf whose key follows another big block's: its data block holds it alone.
        keys = list(ds.blocks.keys())
        big = {k for k in keys if len(ds.blocks.get(k)) > 4096}
        damaged = next(c for c in f_leaves[2:]
                       if keys.index(c.multihash) and keys[keys.index(c.multihash) - 1] in big)
        good_blocks = {k: ds.blocks.get(k) for k in keys if k != damaged.multihash}
        needle = ds.blocks.get(damaged.multihash)[5000:5064]
    flip_in_table_file(home / "datastore", needle)

    a = HomeDaemon(home, CONFIG)
    fetcher = good = None
    try:
        # gc removes the unpinned file and compacts: the compaction meets the damage, and
        # from then on RocksDB refuses writes (before: until the daemon restarted)
        gc = p2pd(api(a), "repo", "gc", "--json", check=False)
        assert gc.returncode == 0, gc.stderr.decode()[-2000:]
        (tmp_path / "new").write_bytes(b"written after the damage\n")
        cid_new = add(api(a), tmp_path / "new")
        assert p2pd(api(a), "cat", cid_new).stdout == b"written after the damage\n"

        s = stat(api(a))
        assert len(s["salvages"]) == 1, s
        salvage = s["salvages"][0]
        assert salvage["dropped"]["blocks"] == 1, salvage
        assert s["salvage_dropped_blocks"] == [str(CID(1, 0x55, damaged.multihash))], s
        aside = Path(salvage["kept_aside"])
        assert aside.parent == home and aside.name.startswith("datastore.damaged-"), aside
        assert glob.glob(str(aside / "*.sst")), "the damaged database is kept for the user"
        status = ControlClient.for_address(api(a)).status()["Datastore"]  # `p2pd status`
        assert status["DroppedBlocks"] == s["salvage_dropped_blocks"], status
        assert [x["KeptAside"] for x in status["Salvages"]] == [str(aside)], status

        # every good block is served, bytes equal; the damaged one reads as missing
        assert block_get(api(a), damaged) is None
        for name in ("g", "h"):
            assert p2pd(api(a), "cat", cids[name]).stdout == files[name]
        for leaf in f_leaves:
            if leaf != damaged:
                assert block_get(api(a), leaf) == good_blocks[leaf.multihash]
        report = json.loads(p2pd(api(a), "repo", "verify", "--json", check=False).stdout)
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == [cids["f"]], report

        # a peer asking for f gets none of the damaged block; a good copy mends it
        fetcher, good = Daemon(), Daemon()
        aid, aaddr = ControlClient.for_address(api(a)).identify()
        ControlClient.for_address(fetcher.control).connect(aid, aaddr)
        failed = p2pd(fetcher.control, "get", cids["f"], "-o", str(tmp_path / "f1"),
                      "--timeout", "4", check=False)
        assert failed.returncode == 1
        add(good.control, tmp_path / "f")
        gid, gaddr = ControlClient.for_address(good.control).identify()
        ControlClient.for_address(api(a)).connect(gid, gaddr)
        p2pd(api(a), "get", cids["f"], "-o", str(tmp_path / "f2"), "--timeout", "20")
        assert (tmp_path / "f2").read_bytes() == files["f"]
    finally:
        for d in (fetcher, good):
            if d is not None:
                d.stop()
        log = stop(a)
    assert "a table file is damaged" in log and "salvaged in" in log, log[-3000:]
    assert f"block {CID(1, 0x55, damaged.multihash)} was damaged on disk" in log, log[-3000:]

    # a restart afterwards is clean, and everything acknowledged is there
    a = HomeDaemon(home, CONFIG)
    try:
        report = json.loads(p2pd(api(a), "repo", "verify", "--json").stdout)
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == [], report
        for name in ("f", "g", "h"):
            assert p2pd(api(a), "cat", cids[name]).stdout == files[name]
        assert p2pd(api(a), "cat", cid_new).stdout == b"written after the damage\n"
        assert stat(api(a))["salvages"] == []
        assert block_get(api(a), CID.decode(junk)) is None  # collected before the damage
    finally:
        log = stop(a)
    assert "damaged" not in log and "Traceback" not in log, log[-3000:]
