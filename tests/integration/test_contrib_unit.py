"""contrib/p2pd.service is a unit systemd accepts (systemd-analyze verify, user manager)
and starts the p2pd command of this install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_user_unit_verifies(tmp_path):
    unit = (ROOT / "contrib" / "p2pd.service").read_text()
    assert "ExecStart=%h/.local/bin/p2pd\n" in unit  # where pip install --user puts it
    p2pd = Path(sys.executable).with_name("p2pd")
    assert p2pd.exists()
    (tmp_path / "p2pd.service").write_text(unit.replace("%h/.local/bin/p2pd", str(p2pd)))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    out = subprocess.run(["systemd-analyze", "--user", "verify", str(tmp_path / "p2pd.service")],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)))
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
