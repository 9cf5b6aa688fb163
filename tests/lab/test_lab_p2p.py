"""Homes behind NAT routers join through a public bootstrap node of ours found by /dnsaddr in
the lab's DNS, and exchange a file over the public, relay-free path: the public node fetches it
from the home that added it (over that home's outbound connection) and serves it to the other.
No relay and no hole punching: one home cannot dial into the other."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from lab import Link, Nat
from lab.peers import INTEROP, LabDaemon, LabHelia

HOME_LINK = Link(rtt_ms=20, up_mbit=50, down_mbit=100)
BOOT = "/dnsaddr/boot.lab"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _public_boot(netlab) -> LabDaemon:
    dns = netlab.add_dns()
    boot = LabDaemon(netlab, netlab.add_host("boot"), "-dhtServer")
    dns.set_txt("_dnsaddr.boot.lab", [f"dnsaddr={boot.addr}"])
    return boot


def _home_daemon(netlab, name: str, nat: Nat) -> LabDaemon:
    home = netlab.add_home(name, nat, link=HOME_LINK)
    return LabDaemon(netlab, home.hosts[0], "-dht", "-b", "-bootstrapPeers", BOOT)


def test_two_homes_behind_nat_exchange_a_file_through_a_public_provider(netlab, tmp_path):
    boot = _public_boot(netlab)
    a = _home_daemon(netlab, "h1", Nat.PORT_RESTRICTED)
    b = _home_daemon(netlab, "h2", Nat.SYMMETRIC)
    boot.wait_peers({a.peer_id, b.peer_id})  # both found it through the lab's DNS
    queries = netlab.dns.proc.output()
    for home in ("h1", "h2"):
        assert f"query {netlab.homes[home].public_addr} _dnsaddr.boot.lab" in queries
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(3_000_017))
    cid = a.cli("add", "-q", "--cid-version", "1", str(src)).strip()
    boot.cli("get", cid, "-o", str(tmp_path / "boot.bin"), "--timeout", "60")
    got = tmp_path / "b.bin"
    b.cli("get", cid, "-o", str(got), "--timeout", "60")
    assert _digest(got) == _digest(src)
    assert a.peer_id not in b.peers()  # it came from the public node


@pytest.mark.skipif(
    shutil.which("node") is None or not (INTEROP / "node_modules").is_dir(),
    reason="needs node and `npm ci` in tests/interop",
)
def test_helia_at_home_joins_by_dnsaddr_and_exchanges_files_with_our_home_daemon(netlab, tmp_path):
    boot = _public_boot(netlab)
    ours = _home_daemon(netlab, "h1", Nat.SYMMETRIC)
    js_home = netlab.add_home("h2", Nat.PORT_RESTRICTED, link=HOME_LINK)
    helia = LabHelia(netlab, js_home.hosts[0], [f"{BOOT}/p2p/{boot.peer_id}"])
    helia.call(cmd="waitPeer", peer=boot.peer_id, timeout=30000)
    boot.wait_peers({ours.peer_id, helia.peer_id})
    assert f"query {js_home.public_addr} _dnsaddr.boot.lab" in netlab.dns.proc.output()
    # ours at home -> public node -> Helia at home
    src = tmp_path / "ours.bin"
    src.write_bytes(os.urandom(2_000_003))
    cid = ours.cli("add", "-q", "--cid-version", "1", str(src)).strip()
    boot.cli("get", cid, "-o", str(tmp_path / "boot1.bin"), "--timeout", "60")
    out = tmp_path / "helia.bin"
    assert helia.call(cmd="cat", cid=cid, out=str(out), timeout=60000)["bytes"] == 2_000_003
    assert _digest(out) == _digest(src)
    # Helia at home -> public node -> ours at home
    src2 = tmp_path / "js.bin"
    src2.write_bytes(os.urandom(1_500_001))
    cid2 = helia.call(cmd="add", path=str(src2))["cid"]
    boot.cli("get", cid2, "-o", str(tmp_path / "boot2.bin"), "--timeout", "60")
    got = tmp_path / "ours-from-js.bin"
    ours.cli("get", cid2, "-o", str(got), "--timeout", "60")
    assert _digest(got) == _digest(src2)
    assert helia.peer_id not in ours.peers()


@pytest.mark.skipif(
    shutil.which("node") is None or not (INTEROP / "node_modules").is_dir(),
    reason="needs node and `npm ci` in tests/interop",
)
def test_a_helia_call_with_no_reply_within_its_limit_is_stalled_and_the_node_stopped(netlab,
                                                                                   tmp_path):
    """What the lab-bitswap bench relies on for a fetch that hangs: the bench's own limit,
    whatever Helia does with its abort signal. A cat of a block nobody has (Helia's own
    timeout far away) gets no reply within 3 s: Stalled, the node stopped."""
    from lab.peers import Stalled

    helia = LabHelia(netlab, netlab.add_host("js"), [])
    assert helia.call(cmd="peers", limit=30) == {"peers": []}  # a reply within the limit
    nobody = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # sha-256 of "a"
    with pytest.raises(Stalled, match="no reply within 3 s"):
        helia.call(cmd="cat", cid=nobody, out=str(tmp_path / "x"), timeout=600_000, limit=3)
    assert helia.proc.popen.poll() is not None
