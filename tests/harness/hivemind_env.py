"""hivemind (PyPI, with CPU torch) in its own venv, and a way to run it on either daemon.

hivemind cannot live in the project's venv: it pulls in torch and pins its own protobuf
files, and its ``hivemind.proto.p2pd_pb2`` registers the same descriptor names as
``p2pclient``. :func:`hivemind_python` creates ``.cache/hivemind-venv`` once with pip
(``torch==2.13.0``, the CPU build this machine's wheel directory holds, then the pinned
hivemind) and returns its interpreter.

hivemind starts the file ``hivemind/hivemind_cli/p2pd`` of the package it imports.
:func:`overlay_for` builds, without touching the installed package, a directory to put
first on PYTHONPATH: a ``hivemind`` package made of symlinks to the installed one, except
``hivemind_cli/p2pd``, which is a two-line script starting our daemon. With no overlay
hivemind runs its own go daemon (v0.5.0.hivemind1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HIVEMIND_VERSION = "1.1.12"
TORCH_VERSION = "2.13.0"
ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("P2PD_HIVEMIND_VENV", ROOT / ".cache" / "hivemind-venv"))
OVERLAY = ROOT / ".cache" / "hivemind-overlay"


class HivemindUnavailable(RuntimeError):
    """The hivemind venv could not be created (pip failed)."""


def hivemind_python() -> Path:
    """The interpreter of a venv with hivemind and CPU torch, created on first use."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import hivemind, torch; print(hivemind.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 and done.stdout.strip() == HIVEMIND_VERSION:
            return python
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    for spec in (f"torch=={TORCH_VERSION}", f"hivemind=={HIVEMIND_VERSION}"):
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", spec],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise HivemindUnavailable(f"pip install {spec} failed: {done.stderr[-1000:]}")
    return python


def installed_package(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import hivemind, os; print(os.path.dirname(hivemind.__file__))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return Path(out.stdout.strip())


def overlay_for(python: Path) -> Path:
    """A PYTHONPATH entry whose ``hivemind`` starts ``python -m p2pd`` (ours) as its daemon."""
    package = installed_package(python)
    target = OVERLAY / "hivemind"
    cli = target / "hivemind_cli"
    cli.mkdir(parents=True, exist_ok=True)
    for entry in package.iterdir():
        if entry.name in ("hivemind_cli", "__pycache__"):
            continue
        link = target / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)
    for entry in (package / "hivemind_cli").iterdir():
        if entry.name in ("p2pd", "__pycache__"):
            continue
        link = cli / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)
    daemon = cli / "p2pd"
    daemon.write_text(f'#!/bin/sh\nexec env -u PYTHONPATH "{sys.executable}" -m p2pd "$@"\n')
    daemon.chmod(0o755)
    return OVERLAY


if __name__ == "__main__":
    print(hivemind_python())
