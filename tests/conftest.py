"""Shared fixtures. Keep this small: fixtures used by one test file live in that file."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pd.store import Datastore

# Tests never leave 127.0.0.1. The default config.toml joins the public network (DHT on,
# the public bootstrap peers, /dnsaddr through resolv.conf): every daemon a test starts
# inherits these unless the test sets its own (a local DNS server, local peers).
os.environ.setdefault("P2PD_BOOTSTRAP_PEERS", "none")
os.environ.setdefault("P2PD_DNS_RESOLVER", "127.0.0.1:9")


@pytest.fixture
def p2pd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, not yet created ``$P2PD_HOME`` under the test's tmp dir, set in the environment."""
    home = tmp_path / "p2pd-home"
    monkeypatch.setenv("P2PD_HOME", str(home))
    return home


@pytest.fixture
def datastore(tmp_path: Path) -> Iterator[Datastore]:
    """An open datastore in a tmp dir (real RocksDB), closed after the test."""
    ds = Datastore.open(tmp_path / "datastore")
    try:
        yield ds
    finally:
        ds.close()


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def pytest_sessionfinish(session, exitstatus):
    """Safety net: no daemon or node a test started outlives the test run."""
    import os
    import signal

    if not Path("/proc").is_dir():
        return
    for child in _children(os.getpid()):
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass
