"""The code passes ruff (pyproject.toml's rules) everywhere: package, tests and benchmarks."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean_repo_wide():
    beside = Path(sys.executable).parent / "ruff"  # the venv's, pinned by the test extras
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (it is in the test extras)")
    out = subprocess.run([ruff, "check", "--no-cache", "p2pd", "tests", "bench"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-1000:]
