"""The ``netlab`` fixture: a fresh lab per test, always torn down (also when the test fails)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import Lab, unavailable_reason

_reason: list[str | None] = []


def lab_unavailable() -> str | None:
    """Why lab tests cannot run here (checked once per session), None when they can."""
    if not _reason:
        _reason.append(unavailable_reason())
    return _reason[0]


@pytest.fixture
def netlab(tmp_path) -> Iterator[Lab]:
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    lab = Lab(logdir=tmp_path / "lab")
    try:
        lab.start()
        yield lab
    finally:
        lab.close()
