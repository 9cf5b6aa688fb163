"""Shared fixtures. Keep this small: fixtures used by one test file live in that file."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pd.store import Datastore


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
