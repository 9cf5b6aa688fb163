"""``p2pd id|peers|connect|disconnect|ping|status`` against real daemons, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_daemon_harness import Daemon


def p2pd(*args: str, home=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if home is not None:
        env["P2PD_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-m", "p2pd", *args], capture_output=True, text=True, env=env, timeout=60
    )
    # Under P2PD_NATIVE=0 the fallback announces itself in one log line; not the CLI's output.
    out.stderr = "".join(
        line for line in out.stderr.splitlines(keepends=True)
        if not line.startswith("WARNING p2pd.native: native core unavailable")
    )
    return out


def test_client_commands_drive_a_daemon_end_to_end():
    with Daemon() as a, Daemon() as b:
        api = ["--api", a.control]
        out = p2pd("id", "--json", *api)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"ID": a.peer_id, "Addresses": a.addrs,
                                          "Reachability": "unknown", "External": [],
                                          "Reservations": [], "MappedPorts": {}}
        assert "Reachability: unknown" in p2pd("id", *api).stdout
        out = p2pd("connect", f"{b.addrs[0]}/p2p/{b.peer_id}", *api)
        assert out.returncode == 0 and "success" in out.stdout, out.stderr
        peers = json.loads(p2pd("peers", "--json", *api).stdout)["Peers"]
        assert [p["ID"] for p in peers] == [b.peer_id]
        out = p2pd("ping", "-n", "2", "--json", b.peer_id, *api)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["RTTsMillis"]) == 2
        status = json.loads(p2pd("status", "--json", *api).stdout)
        assert status["Running"] and status["Peers"] == 1 and status["ID"] == a.peer_id
        assert p2pd("disconnect", b.peer_id, *api).returncode == 0
        assert p2pd("peers", *api).stdout.strip() == "no peers connected"


def test_without_a_daemon_every_command_says_so_in_one_line(tmp_path):
    for cmd in (
        ["id"],
        ["peers"],
        ["status"],
        ["ping", "12D3KooWLw5yvB7d8UR1PVxGqYhQSmpHbjJ7YxpZDhJHhSEdDRLv"],
    ):
        out = p2pd(*cmd, home=tmp_path / "home")
        assert out.returncode == 1
        assert out.stderr.startswith("p2pd: no daemon is running"), out.stderr
        assert not (tmp_path / "home").exists()


def test_bad_peer_ids_and_addresses_are_refused_before_any_request(tmp_path):
    assert "not a peer id" in p2pd("disconnect", "hello", home=tmp_path).stderr
    assert "/p2p/" in p2pd("connect", "/ip4/127.0.0.1/tcp/1", home=tmp_path).stderr


def test_two_daemons_connect_over_quic_and_peers_and_status_show_the_transport():
    both = "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"
    with Daemon(host_addrs=both) as a, Daemon(host_addrs=both) as b:
        api = ["--api", a.control]
        quic = next(x for x in b.addrs if x.endswith("/quic-v1"))
        out = p2pd("connect", f"{quic}/p2p/{b.peer_id}", *api)
        assert out.returncode == 0 and "success" in out.stdout, out.stderr
        [peer] = json.loads(p2pd("peers", "--json", *api).stdout)["Peers"]
        assert peer["ID"] == b.peer_id and peer["Addrs"] == [quic]
        [conn] = peer["Connections"]
        assert (conn["Transport"], conn["Security"], conn["Direction"]) == ("quic", "tls",
                                                                             "outbound")
        assert "(quic, tls, outbound)" in p2pd("peers", *api).stdout
        out = p2pd("ping", "-n", "2", "--json", b.peer_id, *api)
        assert out.returncode == 0 and len(json.loads(out.stdout)["RTTsMillis"]) == 2
        # the other side sees it inbound; a TCP address works too when asked for
        status = json.loads(p2pd("status", "--json", "--api", b.control).stdout)
        assert [c["Transport"] for c in status["Connections"]] == ["quic"]
