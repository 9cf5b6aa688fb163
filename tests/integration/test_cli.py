"""The ``p2pd`` command as a user runs it: a real subprocess, its output and exit code."""

import json
import os
import subprocess
import sys

import pytest

from p2pd import __version__


def p2pd(*args: str, home=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if home is not None:
        env["P2PD_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "p2pd", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_version_prints_the_package_version():
    out = p2pd("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"p2pd {__version__}"


def test_help_lists_go_daemon_flags_and_subcommands():
    out = p2pd("--help")
    assert out.returncode == 0
    for word in ("-listen", "-hostAddrs", "-dhtClient", "-pubsubRouter", "add"):
        assert word in out.stdout


def test_add_only_hash_prints_kubo_cids(tmp_path):
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world\n")
    v0 = p2pd("add", "--only-hash", str(f), home=tmp_path / "home")
    assert v0.returncode == 0, v0.stderr
    # `ipfs add -n hello.txt` and `ipfs add -n --cid-version=1 hello.txt` on kubo.
    assert v0.stdout == "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o hello.txt\n"
    v1 = p2pd("add", "-n", "--cid-version", "1", "-q", str(f), home=tmp_path / "home")
    assert v1.stdout == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4\n"
    assert not (tmp_path / "home").exists(), "--only-hash must not create or write a repo"


def test_add_of_a_directory_needs_no_flag_and_lists_every_entry_root_last(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"a")
    (tmp_path / "d" / "sub" / "b").write_bytes(b"b")
    out = p2pd("add", "-n", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["added"] * 4
    assert [line.split()[2] for line in lines] == ["d/a", "d/sub/b", "d/sub", "d"]
    root = lines[-1].split()[1]
    assert p2pd("add", "-n", "-r", str(tmp_path / "d")).stdout == out.stdout
    assert p2pd("add", "-n", "-Q", str(tmp_path / "d")).stdout == root + "\n"
    assert p2pd("add", "-n", "-q", str(tmp_path / "d")).stdout.splitlines() == [
        line.split()[1] for line in lines]
    rows = [json.loads(line) for line in
            p2pd("add", "-n", "--json", str(tmp_path / "d")).stdout.splitlines()]
    assert [(r["Name"], r["Hash"]) for r in rows] == [
        (line.split()[2], line.split()[1]) for line in lines]
    sizes = [int(r["Size"]) for r in rows]  # cumulative DAG sizes, as kubo reports them
    assert sizes[-1] > sizes[0] + sizes[1] and sizes[2] > sizes[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "-n", "/nonexistent/file"], "/nonexistent/file: no such file or directory"),
        (["add", "-n", "--chunker", "rabin", "FILE"], "unsupported chunker 'rabin'"),
        (["add", "-n", "--chunker", "size-0", "FILE"], "size must be"),
        (["-nosuchflag"], "flag provided but not defined: -nosuchflag"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(tmp_path, args, message):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    out = p2pd(*[str(f) if a == "FILE" else a for a in args], home=tmp_path / "home")
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_add_of_an_unreadable_file_is_a_clear_error(tmp_path):
    f = tmp_path / "secret"
    f.write_bytes(b"x")
    f.chmod(0)
    out = p2pd("add", "-n", str(f))
    assert out.returncode == 1 and "permission denied" in out.stderr


def test_status_json_without_a_daemon_is_json(tmp_path):
    r = p2pd("status", "--json", "--api", f"/unix{tmp_path}/none.sock")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"Running": False, "API": f"/unix{tmp_path}/none.sock",
                                    "Error": json.loads(r.stdout)["Error"]}
    assert "no daemon is running" in json.loads(r.stdout)["Error"]


def test_a_misspelt_config_key_stops_the_daemon_with_the_file_and_line(tmp_path):
    from p2pd.config import DEFAULT_CONFIG_TOML

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    text = DEFAULT_CONFIG_TOML.replace("gc_watermark = 90", "gc_watermak = 80")
    (home / "config.toml").write_text(text)
    line = text.splitlines().index("gc_watermak = 80") + 1
    out = p2pd(home=home)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (f"p2pd: {home}/config.toml:{line}: unknown key "
                          "datastore.gc_watermak (did you mean gc_watermark?)\n")
