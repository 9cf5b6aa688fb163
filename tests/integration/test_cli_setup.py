"""Setting a node up as a person does: p2pd init, config get|set|show, the daemon from
that home, p2pd ls, p2pd shutdown (and a start right after it), p2pd version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

from test_daemon_bad_input import HomeDaemon, short_home  # noqa: F401 (fixture)

from p2pd import __version__


def p2pd(home, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "p2pd", *args], capture_output=True,
                         text=True, env=dict(os.environ, P2PD_HOME=str(home)), timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_init_config_daemon_ls_and_shutdown(short_home, tmp_path):  # noqa: F811
    home = short_home
    first = p2pd(home, "init").stdout
    peer = first.splitlines()[-2].removeprefix("Peer ID: ")
    assert first.startswith(f"initialized p2pd home {home}\n") and peer.startswith("12D3KooW")
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert oct((home / "identity.key").stat().st_mode & 0o777) == "0o600"
    again = json.loads(p2pd(home, "init", "--json").stdout)
    assert again == {"Home": str(home), "Config": str(home / "config.toml"),
                     "ConfigWritten": False, "KeyCreated": False, "PeerID": peer}

    for key, value in (("swarm.listen", '["/ip4/127.0.0.1/tcp/0"]'), ("http.listen", ""),
                       ("swarm.quic", "false"), ("swarm.port_map", "false"),
                       ("dht.enabled", "false"), ("datastore.storage_max", "2GB")):
        p2pd(home, "config", "set", key, value)
    assert p2pd(home, "config", "get", "datastore.storage_max").stdout == "2GB\n"
    assert p2pd(home, "config", "get", "swarm.listen").stdout == '["/ip4/127.0.0.1/tcp/0"]\n'
    assert p2pd(home, "config", "get", "log.level", "--json").stdout == '"warning"\n'
    text = (home / "config.toml").read_text()
    assert "# Most the repo may take on disk" in text  # the comments are kept
    assert p2pd(home, "config", "show").stdout == text
    shown = json.loads(p2pd(home, "config", "show", "--json").stdout)
    assert shown["datastore"]["storage_max"] == "2GB" and shown["pubsub"]["enabled"] is True
    assert tomllib.loads(text)["swarm"]["quic"] is False

    bad = p2pd(home, "config", "set", "datastore.gc_watermark", "150", check=False)
    line = text.splitlines().index("gc_watermark = 90") + 1
    assert bad.returncode == 1 and bad.stderr == (
        f"p2pd: {home}/config.toml:{line}: datastore.gc_watermark is a percent: 1 to 100 "
        "(got 150)\n")
    typo = p2pd(home, "config", "set", "datastore.gc_watermak", "50", check=False)
    assert typo.returncode == 1 and "did you mean datastore.gc_watermark?" in typo.stderr
    assert (home / "config.toml").read_text() == text  # neither was written

    tree = tmp_path / "site"
    (tree / "sub").mkdir(parents=True)
    (tree / "index.html").write_bytes(b"<h1>hi</h1>\n")
    (tree / "sub" / "a.txt").write_bytes(b"a" * 1000)
    daemon = HomeDaemon(home, config=None)
    try:
        assert daemon.peer_id == peer  # the key init made
        root = p2pd(home, "add", "-Q", str(tree)).stdout.strip()
        listing = p2pd(home, "ls", root).stdout.splitlines()
        assert [row.split(" ", 2)[2] for row in listing] == ["index.html", "sub"]
        sub = json.loads(p2pd(home, "ls", f"/ipfs/{root}/sub", "--json").stdout)
        # Size is the link's Tsize: the 1000 bytes in a dag-pb leaf (CIDv0 as ipfs add)
        assert [(link["Name"], link["Size"]) for link in sub["Links"]] == [("a.txt", 1011)]
        assert p2pd(home, "cat", sub["Links"][0]["Hash"]).stdout == "a" * 1000
        assert p2pd(home, "shutdown").returncode == 0
        assert daemon.proc.wait(timeout=5) == 0
        assert not (home / "p2pd.sock").exists()
    finally:
        daemon.stop()
    restarted = HomeDaemon(home, config=None)  # at once: the home lock is free
    try:
        assert p2pd(home, "ls", root).stdout.splitlines() == listing
    finally:
        restarted.stop()


def test_init_over_a_broken_config_keeps_it_and_says_what_is_wrong(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[swarm]\nquick = true\n")
    out = p2pd(home, "init")
    assert "config.toml: kept as it was" in out.stdout
    assert out.stderr == ("p2pd: the daemon will not start until this is fixed:\n"
                          f"{home}/config.toml:2: unknown key swarm.quick (did you mean "
                          "quic?)\n")
    assert (home / "config.toml").read_text() == "[swarm]\nquick = true\n"


def test_shutdown_and_ls_without_a_daemon_say_so(tmp_path):
    for args in (("shutdown",), ("ls", "bafkqaaa")):
        out = p2pd(tmp_path / "home", *args, check=False)
        assert out.returncode == 1 and out.stderr.startswith("p2pd: no daemon is running")


def test_version_and_config_before_init(tmp_path):
    assert p2pd(tmp_path, "version").stdout == f"p2pd {__version__}\n"
    assert json.loads(p2pd(tmp_path, "version", "--json").stdout)["Version"] == __version__
    home = tmp_path / "none"
    shown = p2pd(home, "config", "show")
    assert "does not exist (yet)" in shown.stderr and "[datastore]" in shown.stdout
    assert p2pd(home, "config", "get", "datastore.gc_watermark").stdout == "90\n"
    out = p2pd(home, "config", "set", "log.level", "info", check=False)
    assert out.returncode == 1 and "run `p2pd init` first" in out.stderr
    assert not home.exists()  # looking at the config creates nothing
