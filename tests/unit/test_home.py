"""$P2PD_HOME resolution and creation."""

import os
import stat
from pathlib import Path

import pytest

from p2pd.errors import HomeError
from p2pd.home import (
    config_path,
    datastore_path,
    ensure_home,
    identity_path,
    resolve_home,
    socket_path,
)

needs_non_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits"
)


def test_resolve_uses_the_environment_variable(tmp_path: Path):
    assert resolve_home({"P2PD_HOME": str(tmp_path / "h")}) == tmp_path / "h"


def test_resolve_defaults_to_dot_p2pd_in_the_user_home(tmp_path: Path):
    assert resolve_home({"HOME": str(tmp_path)}) == Path("~/.p2pd").expanduser()
    assert resolve_home({"P2PD_HOME": ""}) == Path("~/.p2pd").expanduser()


def test_resolve_reads_os_environ_by_default(p2pd_home: Path):
    assert resolve_home() == p2pd_home


def test_resolve_expands_tilde_and_makes_relative_paths_absolute(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_home({"P2PD_HOME": "rel/home"}) == tmp_path / "rel" / "home"
    assert resolve_home({"P2PD_HOME": "~/x"}) == Path("~/x").expanduser()


def test_resolve_creates_nothing(p2pd_home: Path):
    resolve_home()
    assert not p2pd_home.exists()


def test_ensure_creates_the_home_and_its_parents_with_mode_0700(tmp_path: Path):
    home = tmp_path / "a" / "b" / "home"
    old = os.umask(0o022)
    try:
        assert ensure_home(home) == home
    finally:
        os.umask(old)
    assert home.is_dir()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_ensure_accepts_an_existing_directory_and_keeps_its_mode(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "keep").write_text("x")
    assert ensure_home(home) == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert (home / "keep").read_text() == "x"


def test_ensure_refuses_a_file_naming_the_path(tmp_path: Path):
    home = tmp_path / "home"
    home.write_text("not a dir")
    with pytest.raises(HomeError, match="not a directory") as info:
        ensure_home(home)
    assert str(home) in str(info.value)


def test_ensure_refuses_a_path_under_a_file(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    home = tmp_path / "file" / "home"
    with pytest.raises(HomeError) as info:
        ensure_home(home)
    assert str(home) in str(info.value)


@needs_non_root
def test_ensure_refuses_an_unwritable_directory(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o500)
    try:
        with pytest.raises(HomeError, match="not readable and writable") as info:
            ensure_home(home)
        assert str(home) in str(info.value)
    finally:
        os.chmod(home, 0o700)


@needs_non_root
def test_ensure_reports_a_home_it_cannot_create(tmp_path: Path):
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, 0o500)
    try:
        with pytest.raises(HomeError, match="cannot create") as info:
            ensure_home(parent / "home")
        assert str(parent / "home") in str(info.value)
    finally:
        os.chmod(parent, 0o700)


def test_paths_inside_the_home(tmp_path: Path):
    assert datastore_path(tmp_path) == tmp_path / "datastore"
    assert config_path(tmp_path) == tmp_path / "config.toml"
    assert identity_path(tmp_path) == tmp_path / "identity.key"
    assert socket_path(tmp_path) == tmp_path / "p2pd.sock"


def test_secure_path_closes_a_home_and_a_key_to_group_and_others(tmp_path: Path):
    from p2pd.home import secure_path

    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    key = home / "identity.key"
    key.write_bytes(b"k")
    os.chmod(key, 0o644)
    assert secure_path(home, 0o700, "$P2PD_HOME") == f"$P2PD_HOME {home} was mode 0755, made 0700"
    assert secure_path(key, 0o600, "identity key file") == \
        f"identity key file {key} was mode 0644, made 0600"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert secure_path(home, 0o700, "$P2PD_HOME") is None  # nothing to change: nothing said
    assert secure_path(key, 0o600, "identity key file") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_secure_path_refuses_what_another_user_owns_and_leaves_it_alone(tmp_path: Path):
    from p2pd.home import secure_path

    key = tmp_path / "identity.key"
    key.write_bytes(b"k")
    os.chmod(key, 0o644)
    os.chown(key, 65534, 65534)
    with pytest.raises(HomeError, match="owned by uid 65534, not by this user") as info:
        secure_path(key, 0o600, "identity key file")
    assert str(key) in str(info.value)
    assert stat.S_IMODE(key.stat().st_mode) == 0o644
