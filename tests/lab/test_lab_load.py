"""1,000 inbound connections at 200/s from ten of the lab's internet hosts (real Noise
handshakes, each peer its own identity; tests/harness/loadgen.py in each host's namespace)
to a daemon on another: the per-IP limit holds (50 from each host), the rest is refused
and counted, the control socket answers within its deadline throughout, and the daemon's RSS
stays under its muxer memory budget.

The hosts share 203.0.113.0/24, so the per-subnet limit is off here (it would refuse
all but 64); the rate cap is raised to 50/s per IP (each host dials 20/s)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import trio
from harness.loadgen import control_load, quiet_config

from lab.peers import SWARM_PORT, daemon_env

ROOT = Path(__file__).resolve().parents[2]
HOSTS, PER_HOST, RATE = 10, 100, 20.0
PER_IP = 50
CONTROL_DEADLINE = 2.0

CONFIG = quiet_config(f"/ip4/0.0.0.0/tcp/{SWARM_PORT}",
                      f"max_conns_per_ip = {PER_IP}\nmax_conns_per_subnet = 0\n"
                      "inbound_rate = 50.0\ninbound_burst = 50\n")


def test_a_thousand_connections_from_internet_hosts_at_200_a_second_hold_to_the_limits(
        netlab, tmp_path):
    srv = netlab.add_host("srv")
    clients = [netlab.add_host(f"c{i}") for i in range(HOSTS)]
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(CONFIG)
    daemon = netlab.run(srv, [sys.executable, "-m", "p2pd"], name="p2pd-srv",
                        env=daemon_env(home))
    m = daemon.wait_for(r"^Control socket: (\S+)\nPeer ID: (\S+)\n", timeout=60)
    control, peer_id = m.group(1), m.group(2)
    proc = psutil.Process(daemon.pid)
    base_rss = proc.memory_info().rss
    addr = f"/ip4/{srv.addr}/tcp/{SWARM_PORT}/p2p/{peer_id}"
    start_at = time.time() + 3.0  # every dialer process has imported by then
    dialers = [netlab.run(c, [sys.executable, "-m", "tests.harness.loadgen", "dial", addr,
                              str(PER_HOST), str(RATE), str(start_at)],
                          name=f"dial-{c.name}", pipe=True, cwd=ROOT) for c in clients]
    answers: list[float] = []
    errors: list[str] = []
    peak_rss = [base_rss]
    done = threading.Event()

    def probe() -> None:  # the control socket, every 100 ms during the flood
        while not done.is_set():
            load = trio.run(control_load, control, 1, 1, CONTROL_DEADLINE)
            answers.extend(load.latencies)
            errors.extend(load.errors)
            peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)
            time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        reports = [json.loads(d.popen.stdout.readline() or "{}") for d in dialers]
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "p2pd", "status", "--api", control, "--json"],
            capture_output=True, text=True, timeout=60, check=True).stdout)
    finally:
        done.set()
        prober.join()
    held = sum(r.get("held", 0) for r in reports)
    limits = status["Limits"]
    refused = limits["Refused"]
    print(f"lab load: {HOSTS * PER_HOST} dials from {HOSTS} hosts at {HOSTS * RATE:.0f}/s: "
          f"{held} held, refused {refused}; control answers n={len(answers)} max "
          f"{max(answers) * 1000:.0f} ms; daemon RSS {base_rss >> 20} -> peak "
          f"{peak_rss[0] >> 20} MiB")
    assert all("held" in r for r in reports), reports
    assert limits["Use"]["max_conns_one_ip"] <= PER_IP
    assert all(r["held"] == PER_IP for r in reports), reports  # each host, its 50
    assert limits["Use"]["conns_inbound"] == held == HOSTS * PER_IP
    assert refused == {"max_conns_per_ip": HOSTS * (PER_HOST - PER_IP)}, refused
    assert errors == [] and max(answers) < CONTROL_DEADLINE
    assert peak_rss[0] < limits["Limits"]["memory"]
    for d in dialers:  # what was held stays held: nothing is dropped once admitted
        d.popen.stdin.close()
    closed = [json.loads(d.popen.stdout.readline() or "{}") for d in dialers]
    assert all(c.get("closed_meanwhile") == 0 for c in closed), closed
