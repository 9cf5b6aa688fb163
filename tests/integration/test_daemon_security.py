"""Security at start, against real daemons: the home is 0700 and the key file and control
socket 0600 (fixed and said when ours, refused when another user's), a TCP control
listener beyond loopback needs -allowRemoteControl and says so loudly, and no key
material reaches a debug log or STATUS."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_daemon_bad_input import CONFIG, HomeDaemon
from test_daemon_harness import Daemon

from p2pd.blocks.multibase import b58encode
from p2pd.cli.client import ControlClient
from p2pd.control.endpoint import parse_endpoint
from p2pd.identity import encode_private_key, new_ed25519, write_identity


@pytest.fixture
def base():
    d = Path(tempfile.mkdtemp(prefix="p2pd-s-", dir="/tmp"))  # short: sun_path limit
    yield d
    shutil.rmtree(d, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_home_and_key_file_open_to_others_are_closed_at_start_and_said(base: Path):
    home = base / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    write_identity(home / "identity.key", new_ed25519())
    os.chmod(home, 0o755)
    os.chmod(home / "identity.key", 0o644)
    d = HomeDaemon(home, config=None)
    try:
        assert mode(home) == 0o700
        assert mode(home / "identity.key") == 0o600
        assert mode(home / "p2pd.sock") == 0o600
        assert stat.S_ISSOCK((home / "p2pd.sock").stat().st_mode)
    finally:
        d.stop()
    err = d.proc.stderr.read()
    assert f"$P2PD_HOME {home} was mode 0755, made 0700" in err
    assert f"identity key file {home / 'identity.key'} was mode 0644, made 0600" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_key_file_of_another_user_is_refused_with_a_clear_message(base: Path):
    home = base / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(CONFIG)
    write_identity(home / "identity.key", new_ed25519())
    os.chown(home / "identity.key", 65534, 65534)
    out = subprocess.run([sys.executable, "-m", "p2pd"], capture_output=True, text=True,
                         env=dict(os.environ, P2PD_HOME=str(home)), timeout=60)
    assert out.returncode != 0
    assert "is owned by uid 65534, not by this user" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (home / "p2pd.sock").exists()


def test_a_control_listener_beyond_loopback_needs_the_flag_and_is_said_loudly(base: Path):
    args = [sys.executable, "-m", "p2pd", "-listen", "/ip4/0.0.0.0/tcp/0",
            "-hostAddrs", "/ip4/127.0.0.1/tcp/0", "-q"]
    env = dict(os.environ, P2PD_HOME=str(base / "home"))
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "-allowRemoteControl" in out.stderr and "not a loopback address" in out.stderr
    assert "Traceback" not in out.stderr
    proc = subprocess.Popen([*args, "-allowRemoteControl"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()  # said first, before it serves, even with -q
        assert line.startswith("p2pd: WARNING: the control socket listens on /ip4/0.0.0.0/tcp/0")
        assert "anyone who can reach it controls this node" in line
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    # loopback TCP needs nothing
    with Daemon() as d:  # (a /unix socket)
        assert d.peer_id


def _forms(secret: bytes) -> list[str]:
    """The ways a key could show up in text: hex (both cases), base64 (std, url-safe,
    unpadded), base58."""
    b64 = base64.b64encode(secret).decode()
    return [secret.hex(), secret.hex().upper(), b64, b64.rstrip("="),
            base64.urlsafe_b64encode(secret).decode().rstrip("="), b58encode(secret)]


def test_no_key_material_in_a_debug_log_or_status(base: Path):
    record = new_ed25519()
    key_file = base / "id.key"
    write_identity(key_file, record)
    blob = encode_private_key(record)
    seed = record.data[:32]
    key2 = base / "id2.key"
    write_identity(key2, new_ed25519())
    with Daemon("-id", str(key_file), "-vv", "-pubsub") as d, \
            Daemon("-id", str(key2), "-echo") as other:
        ours = ControlClient(parse_endpoint(d.control), timeout=30)
        theirs = ControlClient(parse_endpoint(other.control), timeout=30)
        peer, addrs = theirs.identify()
        ours.connect(peer, addrs)
        assert ours.ping(peer, 2)
        status = ours.status()
        text = json.dumps(status)
        cli = subprocess.run([sys.executable, "-m", "p2pd", "status", "--json", "--api",
                              d.control], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        text_status = subprocess.run([sys.executable, "-m", "p2pd", "status", "--api",
                                      d.control], capture_output=True, text=True, timeout=60)
        assert "Limits: " in text_status.stdout and " refused" in text_status.stdout
        cli_id = subprocess.run([sys.executable, "-m", "p2pd", "id", "--api", d.control],
                                capture_output=True, text=True, timeout=60)
        d.stop()
        log = d.proc.stderr.read()
    assert "DEBUG" in log and len(log) > 1000  # it was a debug log, with something in it
    assert "Limits" in status
    for secret in (seed, blob, record.data):
        for form in _forms(secret):
            for where, haystack in (("debug log", log), ("STATUS", text),
                                    ("p2pd status --json", cli.stdout),
                                    ("p2pd status", text_status.stdout),
                                    ("p2pd id", cli_id.stdout)):
                assert form not in haystack, f"key material ({form[:12]}...) in {where}"
