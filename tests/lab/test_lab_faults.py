"""Network faults a home node lives through, each with what must survive it checked.

- a home link losing 5 or 20 % of its frames with 300 ms of jitter: a fetch finishes
  (slower), bytes checked;
- a provider killed -9 in the middle of a fetch: the fetch goes on from the other provider;
- a partition of a home that heals, with its connections living through it or cut (a
  router reboot): gossip published meanwhile reaches the subscriber behind it after
  healing, a DHT record put meanwhile is found from there, and both meshes carry new
  traffic again.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nacl.signing
import pytest

from lab import Link, Nat
from lab.peers import LabDaemon
from p2pd.cli.client import ControlClient
from p2pd.proto import daemon_pb2 as pb


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stat(d: LabDaemon) -> dict:
    return json.loads(d.cli("repo", "stat", "--json"))


@pytest.mark.parametrize("loss_pct", [5, 20])
def test_a_fetch_over_a_home_link_with_loss_and_300_ms_jitter_finishes_with_its_bytes(
        netlab, tmp_path, loss_pct):
    srv = LabDaemon(netlab, netlab.add_host("srv"))
    home = netlab.add_home("h1", Nat.PORT_RESTRICTED,
                           link=Link(rtt_ms=40, jitter_ms=300, loss_pct=loss_pct))
    d = LabDaemon(netlab, home.hosts[0])
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(400_000 if loss_pct < 10 else 200_000))
    cid = srv.cli("add", "-q", "--cid-version", "1", str(src)).strip()
    for attempt in range(3):  # a SYN or handshake flight lost at 20 % may outlast one dial
        try:
            d.cli("connect", srv.addr, timeout=60)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    got = tmp_path / "got.bin"
    d.cli("get", cid, "-o", str(got), "--timeout", "45", timeout=60)
    assert _digest(got) == _digest(src)
    assert srv.peer_id in d.peers()  # the one connection lived through it


def test_a_provider_killed_mid_fetch_leaves_the_fetch_to_the_other_provider(netlab, tmp_path):
    providers = [LabDaemon(netlab, netlab.add_host(f"p{i}")) for i in (1, 2)]
    home = netlab.add_home("h1", Nat.PORT_RESTRICTED,
                           link=Link(rtt_ms=20, up_mbit=8, down_mbit=16))
    d = LabDaemon(netlab, home.hosts[0])
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(6_000_000))  # ~3 s through 16 Mbit/s
    cids = {p.cli("add", "-q", "--cid-version", "1", str(src)).strip() for p in providers}
    assert len(cids) == 1
    cid = cids.pop()
    victim, survivor = providers
    d.cli("connect", victim.addr, timeout=30)  # at first only the victim serves
    got = tmp_path / "got.bin"
    fetch = subprocess.Popen(
        [sys.executable, "-m", "p2pd", "get", "--api", d.control, cid, "-o", str(got),
         "--timeout", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while _stat(d)["bytes_received"] < 1_000_000:
            assert time.monotonic() < deadline, "the fetch never got going"
            time.sleep(0.1)
        d.cli("connect", survivor.addr, timeout=30)
        os.killpg(victim.proc.popen.pid, signal.SIGKILL)
        victim.proc.popen.wait(10)
        _out, err = fetch.communicate(timeout=60)
        assert fetch.returncode == 0, err
    finally:
        if fetch.poll() is None:
            fetch.kill()
    assert _digest(got) == _digest(src)
    stats = _stat(d)
    assert 0 < _stat(survivor)["blocks_sent"] < 24, stats  # the rest (of 24) came from it
    assert stats["banned"] == 0, stats


def _subscriber(d: LabDaemon, topic: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pd", "pubsub", "sub", "--api", d.control, topic],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            got.put(line.split(" ", 1)[1].strip())

    threading.Thread(target=pump, daemon=True).start()
    return proc, got


def _expect(got: queue.Queue, want: set[str], timeout: float, who: str) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while not want <= seen:
        left = deadline - time.monotonic()
        try:
            seen.add(got.get(timeout=max(left, 0.01)))
        except queue.Empty:
            raise AssertionError(f"{who} got {sorted(seen)}, wants {sorted(want)}") from None


def _pk_record() -> tuple[str, bytes]:
    """A /pk/ record (valid by construction: the key hashes to the peer id in the key)."""
    from p2pd.blocks.multibase import b58encode

    proto = b"\x08\x01\x12\x20" + bytes(nacl.signing.SigningKey(os.urandom(32)).verify_key)
    return f"/pk/{b58encode(bytes([0x00, len(proto)]) + proto)}", proto


@pytest.mark.parametrize("cut", ["frames", "connections"])
def test_a_partitioned_home_gets_what_was_published_and_put_meanwhile_once_it_heals(
        netlab, tmp_path, cut):
    """``frames``: the link drops everything, connections live through it; ``connections``:
    the home's TCP sockets are destroyed as well (a router reboot losing the NAT state), so
    the home must dial again and gossip must reach it through a new mesh (IHAVE/IWANT)."""
    flags = ("-dhtServer", "-pubsub")
    publics = [LabDaemon(netlab, netlab.add_host(f"p{i}"), *flags) for i in (1, 2, 3)]
    link = Link(rtt_ms=20)
    home = netlab.add_home("h1", Nat.FULL_CONE, link=link)
    pub, near = publics[0], publics[1]
    behind = LabDaemon(netlab, home.hosts[0], "-dht", "-pubsub", "-b", "-bootstrapPeers",
                       f"{pub.addr},{publics[2].addr}")
    for d in publics[1:]:
        d.cli("connect", pub.addr, timeout=30)
    subs = [_subscriber(d, "faults") for d in (near, behind)]
    try:
        deadline = time.monotonic() + 30  # the mesh forms: a message reaches both
        n = 0
        while True:
            n += 1
            pub.cli("pubsub", "pub", "faults", f"warm-{n}")
            try:
                for (_p, got), who in zip(subs, ("near", "behind"), strict=True):
                    _expect(got, {f"warm-{n}"}, 1.0, who)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "no gossip mesh formed"

        netlab.shape(home, Link(rtt_ms=20, loss_pct=100))  # the partition
        if cut == "connections":
            netlab.exec(home.hosts[0], "ss", "-K", "state", "established")
        key, value = _pk_record()
        (tmp_path / "v").write_bytes(value)
        pub.cli("dht", "put", key, str(tmp_path / "v"), "--timeout", "20", timeout=30)
        during = {f"during-{i}" for i in range(5)}
        client = ControlClient.for_address(pub.control)
        for m in sorted(during):
            client.request(pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
                type=pb.PSRequest.PUBLISH, topic="faults", data=m.encode())))
        _expect(subs[0][1], during, 10, "the subscriber on the publisher's side")
        time.sleep(0.5)
        assert subs[1][1].empty(), "the partition let a message through"

        netlab.shape(home, link)  # healed
        # gossip keeps a message 5 heartbeats (5 s): what was published must arrive by then
        _expect(subs[1][1], during, 6, "the subscriber behind the healed partition")
        got = behind.cli("dht", "get", key, "--json", "--timeout", "30", timeout=40)
        assert value.hex() in got
        pub.cli("pubsub", "pub", "faults", "after")  # the mesh carries new messages
        for (_p, got_q), who in zip(subs, ("near", "behind"), strict=True):
            _expect(got_q, {"after"}, 10, who)
        assert pub.peer_id in behind.peers()
    finally:
        for proc, _got in subs:
            proc.kill()
            proc.wait(5)
