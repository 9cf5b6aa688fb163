"""The disk under $P2PD_HOME fills up: a small tmpfs (root only) holds the home.

An add that does not fit fails with a clear "no space left on device" to the client;
nothing stored before is damaged, reads go on, and writes work again once space is freed.
Also the backstop below the free-space check: RocksDB itself meeting ENOSPC (its WAL writer
then refuses every write) is reported the same way, and the first write after space is back
reopens the database without losing an acknowledged write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_daemon_bad_input import CONFIG, HomeDaemon

from p2pd.errors import StoreFull
from p2pd.store import Datastore

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to mount a small tmpfs for $P2PD_HOME")

P2PD = [sys.executable, "-m", "p2pd"]


@pytest.fixture
def small_disk():
    """A 24 MiB tmpfs at a short path (the control socket lives in the home)."""
    d = Path(tempfile.mkdtemp(prefix="p2pd-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(d)],
                   check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all but ``leave`` bytes of ``disk``."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


def p2pd(d: HomeDaemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*P2PD, *args, "--api", f"/unix{d.sock}"],
                          capture_output=True, timeout=60)


def test_an_add_on_a_full_disk_fails_clearly_and_the_node_keeps_serving(small_disk, tmp_path):
    kept, big = os.urandom(1_000_000), os.urandom(8_000_000)
    (tmp_path / "kept.bin").write_bytes(kept)
    (tmp_path / "big.bin").write_bytes(big)
    d = HomeDaemon(small_disk / "home", CONFIG)
    try:
        add = p2pd(d, "add", "-q", str(tmp_path / "kept.bin"))
        assert add.returncode == 0, add.stderr
        kept_cid = add.stdout.decode().strip()
        (tmp_path / "spare.bin").write_bytes(os.urandom(2_000_000))
        spare = p2pd(d, "add", "-q", str(tmp_path / "spare.bin")).stdout.decode().strip()
        filler = fill(small_disk, leave=1 << 20)  # below the 2 MiB reserve

        add = p2pd(d, "add", "-q", str(tmp_path / "big.bin"))
        assert add.returncode == 1
        err = add.stderr.decode()
        assert "no space left on device" in err and "nothing was stored" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err, err

        assert d.proc.poll() is None, "the daemon died"
        assert p2pd(d, "cat", kept_cid).stdout == kept  # reads go on
        verify = p2pd(d, "repo", "verify", "--json")
        assert verify.returncode == 0, verify.stderr
        report = json.loads(verify.stdout)
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == [], report
        pins = p2pd(d, "pin", "ls").stdout.decode()
        assert kept_cid in pins and spare in pins and len(pins.split()) <= 6, pins
        # the way out the error names works on the full disk: unpin, gc
        assert p2pd(d, "pin", "rm", spare).returncode == 0
        gc = p2pd(d, "repo", "gc", "--json")
        assert gc.returncode == 0 and json.loads(gc.stdout)["Removed"] > 0, gc.stderr

        filler.unlink()  # space is back: the same add works
        add = p2pd(d, "add", "-q", str(tmp_path / "big.bin"))
        assert add.returncode == 0, add.stderr
        assert p2pd(d, "cat", add.stdout.decode().strip()).stdout == big
    finally:
        d.stop()


def test_enospc_inside_rocksdb_is_reported_and_the_next_write_after_space_is_freed_reopens(
        small_disk):
    ds = Datastore.open(small_disk / "ds")
    try:
        ds.reserve = -(1 << 40)  # the free-space check off: RocksDB itself meets ENOSPC
        filler = fill(small_disk, leave=3 << 20)
        acked = []
        with pytest.raises(StoreFull, match="no space left on device") as full:
            for i in range(1000):
                key, value = b"k%d" % i, os.urandom(100_000)
                ds.blocks.put(key, value)
                acked.append((key, value))
        assert "filled up during a write" in str(full.value)
        assert len(acked) > 5
        assert ds.blocks.get(acked[0][0]) == acked[0][1]  # reads go on while wedged
        with pytest.raises(StoreFull):  # still no room: refused before RocksDB
            ds.blocks.put(b"x", b"y" * 4096)

        filler.unlink()
        ds.reserve = Datastore.reserve
        ds.blocks.put(b"after", b"the disk had room again")
        assert ds.reopens == 1
        assert ds.blocks.get(b"after") == b"the disk had room again"
        for key, value in acked:
            assert ds.blocks.get(key) == value
    finally:
        ds.close()
    with Datastore.open(small_disk / "ds") as again:  # and after a restart
        assert all(again.blocks.get(k) == v for k, v in acked)
        assert again.blocks.get(b"after") == b"the disk had room again"
