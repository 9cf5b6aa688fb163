"""An acknowledged block survives ``kill -9`` of the process that wrote it.

A real child process opens a datastore, writes blocks (single puts, put_many
batches and unlogged bulk writes) and prints each CID after the write returned;
the test reads those acknowledgements, SIGKILLs the child mid-stream, reopens the store and
checks every acknowledged block is present and verifies.
"""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from p2pd.blocks import CID
from p2pd.blocks.blockstore import Blockstore
from p2pd.store import Datastore

ACKS = 300

WRITER = textwrap.dedent(
    """
    import os, sys
    from p2pd.blocks import CID, Codec
    from p2pd.blocks.blockstore import Blockstore
    from p2pd.store import Datastore

    ds = Datastore.open(sys.argv[1])
    store = Blockstore(ds)
    out = sys.stdout
    i = 0
    while True:
        if i % 5 == 4:
            # A bulk write (no WAL) is acknowledged only after its closing flush.
            batch = [os.urandom(2000 + j * 900) for j in range(6)]
            cids = [CID.for_block(b, Codec.RAW) for b in batch]
            with store.bulk() as writer:
                writer.put_many(zip(cids, batch))
            out.write("".join(f"{c}\\n" for c in cids))
        elif i % 2:
            data = os.urandom(1000 + i % 5000)
            cid = CID.for_block(data, Codec.RAW)
            store.put(cid, data)
            out.write(f"{cid}\\n")
        else:
            batch = [os.urandom(300 + j * 700) for j in range(4)]
            cids = [CID.for_block(b, Codec.RAW) for b in batch]
            store.put_many(zip(cids, batch))
            out.write("".join(f"{c}\\n" for c in cids))
        out.flush()
        i += 1
    """
)


def test_acknowledged_blocks_survive_kill_9(tmp_path: Path):
    path = tmp_path / "datastore"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    acked: list[CID] = []
    try:
        assert child.stdout is not None
        while len(acked) < ACKS:
            line = child.stdout.readline()
            assert line, f"writer exited early with {child.poll()}"
            acked.append(CID.decode(line.strip()))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Datastore.open(path) as ds:
        store = Blockstore(ds)
        missing = [c for c in acked if not store.has(c)]
        assert not missing, f"{len(missing)} acknowledged blocks lost, first {missing[0]}"
        for cid in acked:
            assert cid.verify(store.get(cid))
        assert store.count() >= len(acked)
