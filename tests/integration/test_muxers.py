"""Runs muxer_cases.py (our Yamux and mplex muxers and Noise channel over real sockets) in its own
process: it imports py-libp2p, and py-libp2p and p2pclient (imported by other test modules)
cannot be loaded into one process (both register ``crypto.pb.KeyType``)."""

import subprocess
import sys
from pathlib import Path

CASES = Path(__file__).with_name("muxer_cases.py")


def test_yamux_mplex_and_noise_cases_in_their_own_process():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(CASES)],
        capture_output=True, text=True, timeout=600, cwd=CASES.parents[2],
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "PASSED" in run.stdout
