"""hivemind (PyPI 1.1.12, CPU torch) runs unchanged on our p2pd, and the same workload on
hivemind's own go daemon in the same run.

The workload (tests/interop/hivemind_workload.py) runs in hivemind's venv
(tests/harness/hivemind_env.py): two ``hivemind.DHT`` nodes store and get values, ``P2P``
unary (20 concurrent, and one of 3 MiB) and streaming protobuf handlers across daemons, a
``hivemind.moe`` expert served by one process and called (forward and backward) from
another, and a three-peer decentralized averaging round. hivemind picks its daemon from
the file ``hivemind/hivemind_cli/p2pd`` of the package it imports; for ours that package
is a symlink overlay whose only different file is that one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.hivemind_env import hivemind_python, overlay_for  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.slow]

WORKLOAD = Path(__file__).with_name("hivemind_workload.py")
STAGES = ["dht", "p2p", "moe", "averaging"]


@pytest.fixture(scope="module")
def python() -> Path:
    return hivemind_python()


@pytest.mark.parametrize("daemon", ["go", "ours"])
def test_the_hivemind_workload_passes(python, daemon, tmp_path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if daemon == "ours":
        env["PYTHONPATH"] = str(overlay_for(python))
    done = subprocess.run(
        [str(python), str(WORKLOAD), *STAGES],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by_stage = {row["stage"]: row for row in rows}
    first = by_stage.get("daemon", {})
    assert first.get("script") is (daemon == "ours"), (first, done.stderr[-3000:])
    failed = {name: by_stage.get(name) for name in STAGES if not by_stage.get(name, {}).get("ok")}
    assert not failed, (json.dumps(failed, indent=1)[-6000:], done.stderr[-3000:])
    assert done.returncode == 0
