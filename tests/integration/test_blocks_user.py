"""The block commands as a new user meets them, against real daemons: an abandoned or
timed-out fetch never wedges the daemon, errors reach the user with their real text
(progress bar or not), and the space gc frees comes back to the disk at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_daemon_bad_input import HomeDaemon, short_home  # noqa: F401 (fixture)
from test_daemon_harness import Daemon

from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec

P2PD = [sys.executable, "-m", "p2pd"]


def p2pd(*args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([*P2PD, *args], capture_output=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"p2pd {' '.join(args)}: {r.stderr.decode()[-2000:]}"
    return r


def out(*args: str, **kw) -> str:
    return p2pd(*args, **kw).stdout.decode()


def stat(d: Daemon) -> dict:
    return json.loads(out("repo", "stat", "--json", "--api", d.control))


def wait_until(check, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.1)


def nobody_has() -> str:
    """A CID no daemon anywhere stores."""
    return str(CID.for_block(os.urandom(64), Codec.RAW, 1))


def start_cat(d: Daemon, cid: str) -> subprocess.Popen:
    return subprocess.Popen([*P2PD, "cat", "--api", d.control, cid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_an_abandoned_fetch_is_cancelled_and_gc_and_block_commands_keep_working(tmp_path):
    data = os.urandom(700_000)
    (tmp_path / "f.bin").write_bytes(data)
    with Daemon() as d:
        root = out("add", "-q", "--api", d.control, str(tmp_path / "f.bin")).strip()
        cat = start_cat(d, nobody_has())
        time.sleep(1.5)  # the request is in (nothing to await from outside the daemon)
        cat.send_signal(signal.SIGINT)  # `timeout -s INT 3 p2pd cat CID`
        cat.wait(timeout=15)
        # gc, then every block command, answers promptly (it used to hang until restart)
        p2pd("repo", "gc", "--api", d.control, timeout=20)
        assert p2pd("cat", "--api", d.control, root, timeout=20).stdout == data
        (tmp_path / "g.bin").write_bytes(b"after the abandoned fetch\n")
        other = out("add", "-q", "--api", d.control, str(tmp_path / "g.bin"), timeout=20).strip()
        out("pin", "add", "--api", d.control, other, timeout=20)
        # and the fetch itself is gone from the daemon, not just from the client
        wait_until(lambda: stat(d)["fetches_in_flight"] == 0, what="fetch cancelled")


def test_gc_does_not_wait_for_a_fetch_still_running_and_keeps_what_it_uses(tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "f.bin").write_bytes(data)
    with Daemon() as d:
        root = out("add", "-q", "--api", d.control, str(tmp_path / "f.bin")).strip()
        cat = start_cat(d, nobody_has())
        try:
            wait_until(lambda: stat(d)["fetches_in_flight"] == 1, what="fetch started")
            p2pd("repo", "gc", "--api", d.control, timeout=20)
            assert p2pd("cat", "--api", d.control, root, timeout=20).stdout == data
            assert cat.poll() is None  # the attached client's fetch goes on
        finally:
            cat.kill()
            cat.wait(timeout=15)
        wait_until(lambda: stat(d)["fetches_in_flight"] == 0, what="fetch cancelled")


def test_a_fetch_stops_at_its_deadline_with_the_reason():
    with Daemon() as d:
        started = time.monotonic()
        r = p2pd("cat", "--timeout", "2", "--api", d.control, nobody_has(), check=False)
        assert r.returncode == 1
        assert time.monotonic() - started < 15
        assert b"timed out after 2 s" in r.stderr, r.stderr
        assert stat(d)["fetches_in_flight"] == 0


def test_a_failed_get_with_a_progress_bar_reports_the_real_error(tmp_path):
    with Daemon() as d:
        r = p2pd("get", "--progress", "--timeout", "2", "--api", d.control, nobody_has(),
                 "-o", str(tmp_path / "x"), check=False)
        err = r.stderr.decode()
        assert r.returncode == 1
        assert "timed out after 2 s with 1 blocks still missing" in err, err
        assert "closed the connection" not in err
        # the daemon logged no unhandled error on the way
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=15)
        log = d.proc.stderr.read()
        assert "ExceptionGroup" not in log and "Traceback" not in log, log[-3000:]


def test_a_failed_add_with_a_progress_bar_reports_the_real_error(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"a\n")
    os.symlink("/etc/hostname", tree / "link")
    with Daemon() as d:
        r = p2pd("add", "-r", "--progress", "--api", d.control, str(tree), check=False)
        err = r.stderr.decode()
        assert r.returncode == 1
        assert "symlink" in err and "closed the connection" not in err, err


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.iterdir() if f.is_file())


def test_gc_gives_the_freed_space_back_to_the_disk_without_a_restart(short_home, tmp_path):  # noqa: F811
    (tmp_path / "big.bin").write_bytes(os.urandom(24 << 20))
    home = HomeDaemon(short_home, "[swarm]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n")
    api = f"/unix{home.sock}"
    try:
        root = out("add", "-q", "--api", api, str(tmp_path / "big.bin")).strip()
        datastore = short_home / "datastore"
        before = disk_usage(datastore)
        assert before > 24 << 20
        out("pin", "rm", "--api", api, root)
        assert "removed" in out("repo", "gc", "--api", api)
        after = disk_usage(datastore)
        assert after < before - (20 << 20), (before, after)
    finally:
        home.stop()


def connect(d: Daemon, other: Daemon) -> None:
    out("connect", "--api", d.control, f"{other.addrs[0]}/p2p/{other.peer_id}")


def test_add_lists_every_entry_and_paths_resolve_through_directories(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    data = os.urandom(700_000)
    (tree / "a.bin").write_bytes(data)
    (tree / "sub" / "b.txt").write_bytes(b"hello path\n")
    with Daemon() as a, Daemon() as b:
        lines = out("add", "--api", a.control, str(tree)).splitlines()  # no -r needed
        assert lines == out("add", "-n", str(tree)).splitlines()
        assert [line.split()[2] for line in lines] == ["tree/a.bin", "tree/sub/b.txt",
                                                      "tree/sub", "tree"]
        root = lines[-1].split()[1]
        assert p2pd("cat", "--api", a.control, f"{root}/sub/b.txt").stdout == b"hello path\n"
        assert p2pd("cat", "--api", a.control, f"/ipfs/{root}/a.bin").stdout == data
        r = p2pd("cat", "--api", a.control, f"{root}/nope", check=False)
        assert r.returncode == 1 and b"no entry 'nope' in directory" in r.stderr, r.stderr
        # through another daemon: the path's directories are fetched on the way
        connect(b, a)
        r = p2pd("get", "-o", "-", "--api", b.control, f"/ipfs/{root}/sub/b.txt", cwd=tmp_path)
        assert r.stdout == b"hello path\n" and not (tmp_path / "-").exists()
        r = p2pd("get", "-o", "-", "--api", b.control, root, check=False, cwd=tmp_path)
        assert r.returncode == 1 and b"is a directory" in r.stderr and not r.stdout
        got = json.loads(out("get", "--json", "--api", b.control, f"{root}/sub",
                             "-o", str(tmp_path / "copy")))
        assert got["Path"] == str(tmp_path / "copy") and got["Size"] == 11
        assert (tmp_path / "copy" / "b.txt").read_bytes() == b"hello path\n"
        # a path's last name is get's default output name
        out("get", "--api", b.control, f"{root}/a.bin", cwd=tmp_path)
        assert (tmp_path / "a.bin").read_bytes() == data


def test_json_output_of_pin_gc_get_and_block(tmp_path):
    (tmp_path / "f").write_bytes(b"json all the way\n")
    with Daemon() as d:
        api = ("--api", d.control)
        root = json.loads(out("add", "--json", *api, str(tmp_path / "f")))["Hash"]
        assert json.loads(out("pin", "add", "--json", *api, root)) == {"Pins": [root]}
        assert json.loads(out("pin", "rm", "--json", *api, root)) == {"Pins": [root]}
        gc = json.loads(out("repo", "gc", "--json", *api))
        assert gc["Removed"] == 1 and gc["Freed"] > 0
        put = json.loads(p2pd("block", "put", "--json", *api, input=b"raw block").stdout)
        assert put["Size"] == 9 and put["Key"].startswith("bafkrei")
        assert json.loads(out("block", "stat", "--json", *api, put["Key"])) == put
        got = json.loads(out("block", "get", "--json", *api, put["Key"]))
        assert got["Key"] == put["Key"] and got["Data"] == "cmF3IGJsb2Nr"  # base64("raw block")


def test_get_progress_bar_has_a_total_and_an_eta(tmp_path):
    (tmp_path / "big").write_bytes(os.urandom(3 << 20))
    with Daemon() as a, Daemon() as b:
        root = out("add", "-q", "--cid-version", "1", "--api", a.control, str(tmp_path / "big"))
        connect(b, a)
        r = p2pd("get", "--progress", "--api", b.control, root.strip(),
                 "-o", str(tmp_path / "copy"))
        bars = r.stderr.decode().replace("\r", "\n").splitlines()
        assert any("ETA" in line and "/3.0 MiB" in line for line in bars), bars[-5:]


def test_a_cidv0_typo_is_named_as_such():
    with Daemon() as d:
        r = p2pd("cat", "--api", d.control, "QmBadCid", check=False)
        assert r.returncode == 1
        assert b"invalid CID 'QmBadCid': not a valid base58btc CIDv0" in r.stderr, r.stderr


STORAGE_CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
[datastore]
storage_max = "4MiB"
gc_watermark = 50
"""


def test_past_the_watermark_gc_runs_by_itself_and_keeps_pins(short_home, tmp_path):  # noqa: F811
    (tmp_path / "kept").write_bytes(os.urandom(1 << 20))
    (tmp_path / "loose").write_bytes(os.urandom(6 << 20))
    (tmp_path / "huge").write_bytes(os.urandom(6 << 20))
    home = HomeDaemon(short_home, STORAGE_CONFIG)
    api = ("--api", f"/unix{home.sock}")
    try:
        st = json.loads(out("repo", "stat", "--json", *api))
        assert st["storage_max"] == 4 << 20 and st["gc_watermark"] == 50
        assert st["path"] == str(short_home / "datastore") and st["blocks"] == 0
        kept = out("add", "-Q", *api, str(tmp_path / "kept")).strip()
        out("add", "--no-pin", *api, str(tmp_path / "loose"))
        # past 2 MiB (50 % of 4 MiB): the unpinned file goes, the pinned one stays
        deadline = time.monotonic() + 20
        while (st := json.loads(out("repo", "stat", "--json", *api)))["auto_gc_runs"] < 1:
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st["blocks_bytes"] < 2 << 20 and st["repo_size"] < 3 << 20, st
        assert p2pd("cat", *api, kept).stdout == (tmp_path / "kept").read_bytes()
        # pinned data past storage_max cannot be collected: said once, in one line
        out("add", "-Q", *api, str(tmp_path / "huge"))
        deadline = time.monotonic() + 20
        while json.loads(out("repo", "stat", "--json", *api))["auto_gc_runs"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        home.stop()
    err = home.proc.stderr.read()
    assert err.count("above [datastore] storage_max") == 1, err
    assert "Traceback" not in err


def test_an_abandoned_add_stops_and_pins_nothing(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as fh:  # sparse: 4 GiB to import, nothing much to write to disk
        fh.truncate(4 << 30)
    with Daemon() as d:
        add = subprocess.Popen([*P2PD, "add", "--api", d.control, str(big)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)  # the import is under way (it takes many seconds to finish)
        add.send_signal(signal.SIGINT)
        add.wait(timeout=15)
        started = time.monotonic()
        p2pd("repo", "gc", "--api", d.control, timeout=30)
        assert time.monotonic() - started < 10
        assert out("pin", "ls", "--api", d.control) == ""  # the import stopped short
        assert stat(d)["blocks"] == 0
