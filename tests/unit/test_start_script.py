"""scripts/start.sh installs only when it must (issue 15: it reinstalled the package at
every start, 21 s to a running daemon): on the first start, and again only when the build
inputs (pyproject.toml, setup.py, native/) change. Run against a copy of the script in a
scratch tree whose .venv is a recording stand-in, so no pip runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "start.sh", tmp_path / "scripts" / "start.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p2pd'\n")
    (tmp_path / "setup.py").write_text("# setup\n")
    (tmp_path / "native").mkdir()
    (tmp_path / "native" / "core.c").write_text("int x;\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "log"
    # the venv's python records each pip run; pip "installs" the p2pd entry point
    (bin_dir / "python").write_text(
        "#!/bin/sh\n"
        f'echo "pip $*" >> {log}\n'
        f'printf \'#!/bin/sh\\necho "p2pd ran $*"\\n\' > {bin_dir}/p2pd\n'
        f"chmod +x {bin_dir}/p2pd\n")
    (bin_dir / "python").chmod(0o755)
    return tmp_path


def _start(tree: Path) -> str:
    out = subprocess.run(["bash", str(tree / "scripts" / "start.sh"), "-v"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "p2pd ran -v"
    return out.stderr


def _installs(tree: Path) -> int:
    log = tree / "log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if "install" in line and " -e ." in line)


def test_start_installs_once_and_again_only_when_the_build_inputs_change(tmp_path):
    tree = _tree(tmp_path)
    assert "installing" in _start(tree)
    assert _installs(tree) == 1
    assert "installing" not in _start(tree)  # the next start goes straight to the daemon
    _start(tree)
    assert _installs(tree) == 1
    (tree / "native" / "core.c").write_text("int y;\n")  # a build input changed
    _start(tree)
    assert _installs(tree) == 2
    (tree / ".venv" / "bin" / "p2pd").unlink()  # the entry point went missing
    _start(tree)
    assert _installs(tree) == 3
