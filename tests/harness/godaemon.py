"""The go-libp2p daemon (hivemind's fork) as a third-party peer, installed from PyPI.

The ``hivemind`` wheel ships a static ``p2pd`` binary (go-libp2p-daemon
v0.5.0.hivemind1) at ``hivemind/hivemind_cli/p2pd`` and its proto at
``hivemind/proto/p2pd.proto``. :func:`go_daemon_path` downloads the pinned wheel once with
pip (no dependencies), extracts those two files under ``.cache/go-p2pd/`` in the checkout and
returns the binary's path. Nothing is fetched when the files are already there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HIVEMIND_VERSION = "1.1.12"
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("P2PD_GO_DAEMON_DIR", ROOT / ".cache" / "go-p2pd"))
MEMBERS = {"hivemind/hivemind_cli/p2pd": "p2pd", "hivemind/proto/p2pd.proto": "p2pd.proto"}


class GoDaemonUnavailable(RuntimeError):
    """The hivemind wheel could not be downloaded or did not hold the daemon."""


def go_daemon_path() -> Path:
    """Path of the go daemon binary, downloading the hivemind wheel on first use."""
    binary = CACHE / "p2pd"
    if binary.exists() and os.access(binary, os.X_OK):
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
               f"hivemind=={HIVEMIND_VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("hivemind-*.whl"))
        if done.returncode != 0 or not wheels:
            raise GoDaemonUnavailable(f"pip download hivemind failed: {done.stderr[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member, name in MEMBERS.items():
                with wheel.open(member) as src, open(Path(tmp) / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        (Path(tmp) / "p2pd").chmod(0o755)
        for name in MEMBERS.values():
            os.replace(Path(tmp) / name, CACHE / name)
    return binary


def go_daemon_proto() -> Path:
    """The fork's p2pd.proto (extracted with the binary)."""
    go_daemon_path()
    return CACHE / "p2pd.proto"


if __name__ == "__main__":
    print(go_daemon_path())
