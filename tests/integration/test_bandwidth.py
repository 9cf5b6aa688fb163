"""Bandwidth on real daemons: `p2pd stats bw` counts bytes per protocol and per peer and
their rates, and the [limits] upload/download caps hold a transfer to their rate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_daemon_bad_input import HomeDaemon
from test_daemon_harness import Daemon

MIB = 1 << 20
SIZE = 3 * MIB
BITSWAP = "/ipfs/bitswap/1.2.0"


def _config(limits: str) -> str:
    return ('[swarm]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\nquic = false\nport_map = false\n'
            f'[http]\nlisten = ""\n[dht]\nenabled = false\n[limits]\n{limits}\n')


@pytest.fixture
def home():
    d = Path(tempfile.mkdtemp(prefix="p2pd-bw-", dir="/tmp"))
    yield d / "home"
    shutil.rmtree(d, ignore_errors=True)


def cli(api: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "p2pd", *args, "--api", api],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _fetch_seconds(provider_api: str, provider_addr: str, fetcher_api: str,
                   tmp: Path) -> tuple[str, float]:
    data = os.urandom(SIZE)
    (tmp / "f.bin").write_bytes(data)
    cid = cli(provider_api, "add", "-Q", "--cid-version", "1", str(tmp / "f.bin")).strip()
    cli(fetcher_api, "connect", provider_addr)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "p2pd", "cat", cid, "--api", fetcher_api],
                         capture_output=True, timeout=120)
    seconds = time.monotonic() - started
    assert out.returncode == 0 and out.stdout == data, out.stderr
    return cid, seconds


def test_an_upload_cap_holds_a_fetch_to_its_rate_and_stats_bw_counts_it(home, tmp_path):
    provider = HomeDaemon(home, _config('max_upload_rate = "1MiB"'))
    try:
        with Daemon() as fetcher:
            api = f"/unix{provider.sock}"
            addr = f"/ip4/127.0.0.1/tcp/{provider.swarm_port}/p2p/{provider.peer_id}"
            _cid, seconds = _fetch_seconds(api, addr, fetcher.control, tmp_path)
            assert seconds >= 2.0, f"3 MiB at a 1 MiB/s cap took {seconds:.2f} s"
            report = json.loads(cli(api, "stats", "bw", "--json"))
            assert report["Caps"] == {"Upload": MIB, "Download": 0}
            assert report["Protocols"][BITSWAP]["TotalOut"] >= SIZE
            assert report["Peers"][fetcher.peer_id]["TotalOut"] >= SIZE
            assert report["TotalOut"] >= report["Protocols"][BITSWAP]["TotalOut"]
            assert 0 < report["RateOut"] <= 1.2 * MIB  # smoothed, never above the cap
            one = json.loads(cli(api, "stats", "bw", "--json", "--proto", BITSWAP))
            assert set(one) == {"TotalIn", "TotalOut", "RateIn", "RateOut"}
            assert one["TotalOut"] >= SIZE
            seen = json.loads(cli(fetcher.control, "stats", "bw", "--json", "--peer",
                                  provider.peer_id))
            assert seen["TotalIn"] >= SIZE and seen["TotalOut"] < SIZE // 10
            text = cli(api, "stats", "bw")
            assert text.startswith("Bandwidth (all traffic)\nTotalIn:") and "up 1.0 MiB/s" in text
    finally:
        provider.stop()


def test_a_download_cap_slows_the_sender_through_flow_control(home, tmp_path):
    fetcher = HomeDaemon(home, _config('max_download_rate = "1MiB"'))
    try:
        with Daemon() as provider:
            addr = f"{provider.addrs[0]}/p2p/{provider.peer_id}"
            _cid, seconds = _fetch_seconds(provider.control, addr, f"/unix{fetcher.sock}",
                                           tmp_path)
            assert seconds >= 2.0, f"3 MiB at a 1 MiB/s cap took {seconds:.2f} s"
            report = json.loads(cli(f"/unix{fetcher.sock}", "stats", "bw", "--json"))
            assert report["Caps"] == {"Upload": 0, "Download": MIB}
            assert report["Peers"][provider.peer_id]["TotalIn"] >= SIZE
    finally:
        fetcher.stop()


def test_a_bad_cap_is_named_with_its_line(home):
    home.mkdir(parents=True, mode=0o700)
    text = _config('max_upload_rate = "fast"')
    (home / "config.toml").write_text(text)
    out = subprocess.run([sys.executable, "-m", "p2pd"], capture_output=True, text=True,
                         env=dict(os.environ, P2PD_HOME=str(home)), timeout=60)
    line = text.splitlines().index('max_upload_rate = "fast"') + 1
    assert out.returncode == 1
    assert out.stderr.startswith(f"p2pd: {home}/config.toml:{line}: limits.max_upload_rate: "
                                 "invalid size 'fast'")
