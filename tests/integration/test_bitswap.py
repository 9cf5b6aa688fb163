"""Bitswap and the block commands between real daemons over loopback: add/cat/get of files
and directories, pins and gc, single blocks, `p2pd add` beside a running home daemon, a
lying peer, and kill -9 during add and during get (consistent store, resumed fetch)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_daemon_bad_input import HomeDaemon, short_home  # noqa: F401 (fixture)
from test_daemon_harness import Daemon

from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.exchange.wire import BitswapMessage, WantEntry
from p2pd.exchange.wire import encode_message as bs_encode
from p2pd.proto import daemon_pb2 as pb

P2PD = [sys.executable, "-m", "p2pd"]
HOME_CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
"""


def p2pd(*args: str, timeout: float = 120, env=None, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([*P2PD, *args], capture_output=True, timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, f"p2pd {' '.join(args)}: {r.stderr.decode()[-2000:]}"
    return r


def out(*args: str, **kw) -> str:
    return p2pd(*args, **kw).stdout.decode()


def stat(api: str) -> dict:
    return json.loads(out("repo", "stat", "--json", "--api", api))


def connect(d, other) -> None:
    out("connect", "--api", d.control, f"{other.addrs[0]}/p2p/{other.peer_id}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_directories_blocks_pins_and_gc(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(os.urandom(700_000))
    (tree / "sub" / "b.txt").write_bytes(b"hello bitswap\n")
    (tree / "empty").write_bytes(b"")
    with Daemon() as a, Daemon() as b:
        line = out("add", "-r", "--api", a.control, str(tree)).splitlines()[-1].split()
        assert line[0] == "added" and line[2] == "tree"
        root = line[1]
        # the CID is the one `ipfs add -r` gives (the importer is proven against the reference)
        assert root == out("add", "-r", "-n", "-Q", str(tree)).strip()
        assert out("pin", "ls", "--api", a.control).split()[0] == root
        connect(b, a)
        out("get", "--api", b.control, root, "-o", str(tmp_path / "copy"))
        cmp = filecmp.dircmp(tree, tmp_path / "copy")
        assert not (cmp.diff_files or cmp.left_only or cmp.right_only)
        assert (tmp_path / "copy" / "sub" / "b.txt").read_bytes() == b"hello bitswap\n"
        # cat of a directory is refused with a reason; of a file it streams the bytes
        r = p2pd("cat", "--api", b.control, root, check=False)
        assert r.returncode == 1 and b"directory" in r.stderr
        # single blocks
        cid = out("block", "put", "--api", a.control, str(tree / "sub" / "b.txt")).strip()
        assert CID.decode(cid) == CID.for_block(b"hello bitswap\n", Codec.RAW)
        assert p2pd("block", "get", "--api", b.control, cid).stdout == b"hello bitswap\n"
        assert "Size: 14" in out("block", "stat", "--api", b.control, cid)
        # gc on b: nothing pinned there, everything goes; a keeps its pinned tree
        assert stat(b.control)["blocks"] > 0
        assert out("repo", "gc", "--api", b.control).startswith("removed ")
        assert stat(b.control)["blocks"] == 0
        before = stat(a.control)["blocks"]
        out("repo", "gc", "--api", a.control)
        assert stat(a.control)["blocks"] == before - 1  # only the unpinned single block
        # pin add on b fetches the DAG, then gc keeps it
        out("pin", "add", "--api", b.control, root)
        out("repo", "gc", "--api", b.control)
        verify = json.loads(out("repo", "verify", "--json", "--api", b.control))
        assert verify["blocks_bad"] == 0 and verify["pins_incomplete"] == [] and verify["pins"] == 1
        out("pin", "rm", "--api", b.control, root)
        out("repo", "gc", "--api", b.control)
        # errors are one clear line
        r = p2pd("get", "--api", b.control, "--offline", root, "-o", str(tmp_path / "x"),
                 check=False)
        assert r.returncode == 1 and b"offline" in r.stderr
        r = p2pd("cat", "--api", b.control, "not-a-cid", check=False)
        assert r.returncode == 1 and b"Traceback" not in r.stderr


def test_add_goes_through_a_running_home_daemon(short_home, tmp_path):  # noqa: F811
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(300_000))
    env = dict(os.environ, P2PD_HOME=str(short_home))
    d = HomeDaemon(short_home, HOME_CONFIG)
    try:
        cid = out("add", "-q", str(f), env=env).strip()  # the daemon holds the repo lock
        assert out("pin", "ls", env=env).split()[0] == cid
        r = p2pd("cat", cid, env=env)
        assert r.stdout == f.read_bytes()
    finally:
        d.stop()
    # no daemon: straight into the repo, pinned, and the next daemon serves it
    g = tmp_path / "g.bin"
    g.write_bytes(os.urandom(1000))
    cid2 = out("add", "-q", str(g), env=env).strip()
    d = HomeDaemon(short_home, HOME_CONFIG)
    try:
        pins = out("pin", "ls", env=env).split()
        assert cid in pins and cid2 in pins
        assert p2pd("cat", cid2, "--offline", env=env).stdout == g.read_bytes()
    finally:
        d.stop()


def _open_bitswap_stream(d: Daemon, peer_id: str) -> socket.socket:
    """A raw /ipfs/bitswap/1.2.0 stream from ``d`` to ``peer_id``, through d's control socket."""
    from p2pd.blocks.multibase import b58decode

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(d.sock))
    req = pb.StreamOpenRequest(peer=b58decode(peer_id), proto=["/ipfs/bitswap/1.2.0"])
    s.sendall(encode_message(pb.Request(type=pb.Request.STREAM_OPEN, streamOpen=req)))
    dec = FrameDecoder()
    while (frame := dec.next_frame()) is None:
        dec.receive_data(s.recv(4096))
    assert decode_response(frame).type == pb.Response.OK
    return s


def test_a_lying_peer_is_ignored_and_the_download_completes(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(6 << 20))
    with Daemon() as honest, Daemon() as liar, Daemon() as fetcher, Daemon() as other:
        cid = out("add", "-q", "--cid-version", "1", "--api", honest.control, str(src)).strip()
        connect(fetcher, honest)
        connect(liar, fetcher)
        s = _open_bitswap_stream(liar, fetcher.peer_id)
        # unrequested blocks, and blocks that claim the root's prefix but carry other bytes
        junk = [(CID.for_block(os.urandom(64), Codec.RAW), os.urandom(100_000)) for _ in range(40)]
        s.sendall(bs_encode(BitswapMessage(blocks=junk)))
        # a huge wantlist: bounded, not fatal
        many = [WantEntry(CID.for_block(os.urandom(8), Codec.RAW)) for _ in range(5000)]
        s.sendall(bs_encode(BitswapMessage(wants=many)))
        time.sleep(0.5)
        # then garbage: that stream is reset
        # (wire type 7 is no protobuf field: random bytes could parse as a valid message)
        s.sendall(b"\x05" + b"\x0f" * 5)
        # Wait for the fetcher's reset to come back through the liar's daemon before closing:
        # closing first can reset the stream before the fetcher has read the garbage (a RST
        # discards unread data), and then the penalty that completes the ban is never charged.
        while s.recv(65536):
            pass
        s.close()
        out("get", "--api", fetcher.control, "--timeout", "60", cid, "-o", str(tmp_path / "got"))
        assert sha(tmp_path / "got") == sha(src)
        st = stat(fetcher.control)
        assert st["unwanted_blocks"] >= 40 and st["banned"] >= 1
        assert st["blocks"] == 25  # nothing of the junk was stored
        # the fetcher still serves honest peers
        connect(other, fetcher)
        out("repo", "gc", "--api", honest.control)  # unrelated; honest keeps its pin
        r = p2pd("cat", "--api", other.control, cid)
        assert hashlib.sha256(r.stdout).hexdigest() == sha(src)


def _kill9_home(home: Path) -> HomeDaemon:
    return HomeDaemon(home, HOME_CONFIG)


def test_kill9_during_add_leaves_a_consistent_store(short_home, tmp_path):  # noqa: F811
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(192 << 20))
    env = dict(os.environ, P2PD_HOME=str(short_home))
    d = _kill9_home(short_home)
    try:
        adder = subprocess.Popen([*P2PD, "add", "-q", str(src)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.6)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=15)
        adder.wait(timeout=30)
    finally:
        d.stop()
    d = _kill9_home(short_home)
    try:
        report = json.loads(out("repo", "verify", "--json", env=env))
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == []
        # the add can simply be repeated
        cid = out("add", "-q", str(src), env=env).strip()
        report = json.loads(out("repo", "verify", "--json", env=env))
        assert report["pins"] == 1 and report["pins_incomplete"] == [] and report["blocks_bad"] == 0
        assert cid == out("add", "-n", "-q", str(src)).strip()
    finally:
        d.stop()


def test_kill9_during_get_then_restart_resumes(short_home, tmp_path):  # noqa: F811
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(96 << 20))
    total_blocks = 96 * 4 + 3 + 1  # 384 raw leaves of 256 KiB, 3 parents of <= 174, a root
    env = dict(os.environ, P2PD_HOME=str(short_home))
    with Daemon() as provider:
        cid = out("add", "-q", "--cid-version", "1", "--api", provider.control, str(src)).strip()
        d = _kill9_home(short_home)
        try:
            out("connect", f"{provider.addrs[0]}/p2p/{provider.peer_id}", env=env)
            getter = subprocess.Popen([*P2PD, "get", cid, "-o", str(tmp_path / "out1")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            client = ControlClient.for_address(f"/unix{short_home}/p2pd.sock", 10)
            deadline = time.monotonic() + 60
            got = 0
            while time.monotonic() < deadline:
                r = client.request(pb.Request(type=pb.Request.BLOCKS, blocks=pb.BlocksRequest(
                    type=pb.BlocksRequest.STAT)))
                got = json.loads(r.blocks.stats)["blocks_received"]
                if got >= 40:
                    break
                time.sleep(0.01)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=15)
            getter.wait(timeout=30)
            assert got >= 40
        finally:
            d.stop()
        d = _kill9_home(short_home)
        try:
            report = json.loads(out("repo", "verify", "--json", env=env))
            assert report["blocks_bad"] == 0
            kept = report["blocks_ok"]
            assert kept >= 1
            out("connect", f"{provider.addrs[0]}/p2p/{provider.peer_id}", env=env)
            out("get", cid, "-o", str(tmp_path / "out2"), env=env)
            assert sha(tmp_path / "out2") == sha(src)
            fetched = stat(f"/unix{short_home}/p2pd.sock")["blocks_received"]
            assert fetched == total_blocks - kept, (fetched, kept)  # nothing fetched twice
        finally:
            d.stop()


def test_added_roots_are_provided_and_fetchers_find_them_through_the_dht(tmp_path):
    """The fetcher is not connected to the provider: the DHT names it, Bitswap fetches."""
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    with Daemon("-dht") as hub, Daemon("-dht") as provider, Daemon("-dht") as fetcher:
        connect(provider, hub)
        connect(fetcher, hub)
        time.sleep(6)  # a maintenance round: hub, provider and fetcher know each other
        cid = out("add", "-q", "--cid-version", "1", "--api", provider.control, str(src)).strip()
        deadline = time.monotonic() + 30
        found = ""
        while time.monotonic() < deadline and provider.peer_id not in found:
            found = out("dht", "findprovs", "--api", hub.control, cid, check=False)
            time.sleep(0.3)
        assert provider.peer_id in found  # `p2pd add` provided the root
        out("disconnect", "--api", fetcher.control, provider.peer_id, check=False)
        out("get", "--api", fetcher.control, "--timeout", "60", cid, "-o", str(tmp_path / "got"))
        assert sha(tmp_path / "got") == sha(src)
