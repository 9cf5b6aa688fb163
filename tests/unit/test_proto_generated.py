"""The checked-in protobuf modules are exactly what scripts/gen_proto.sh makes from proto/."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_modules_match_a_fresh_regeneration(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True, env=env
    )
    fresh = sorted(p.name for p in tmp_path.glob("*_pb2.py"))
    sources = sorted(p.stem + "_pb2.py" for p in (ROOT / "proto").glob("*.proto"))
    assert fresh == sources
    for name in fresh:
        checked_in = ROOT / "p2pd" / "proto" / name
        assert checked_in.exists(), f"{name} is not checked in; run scripts/gen_proto.sh"
        assert checked_in.read_bytes() == (tmp_path / name).read_bytes(), (
            f"p2pd/proto/{name} is stale; run scripts/gen_proto.sh and commit the result"
        )
