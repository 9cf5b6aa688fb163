"""An acknowledged block survives ``kill -9`` of the process that wrote it.

A real child process opens a datastore, writes blocks (single puts, put_many
batches and unlogged bulk writes) and prints each CID after the write returned;
the test reads those acknowledgements, SIGKILLs the child mid-stream, reopens the store and
checks every acknowledged block is present and verifies.

Then the whole daemon, killed -9 in the middle of a pin (its fetch), of a gc and of a run
of DHT puts: after each restart every block verifies and every pin is whole (no half pin,
nothing pinned collected), and every acknowledged add and DHT record is there. (Kill -9
during an add and during a get: test_bitswap.py.)
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


# -- the daemon killed -9 in the middle of an add, a pin (a fetch), a gc and DHT puts ----------

DHT_CONFIG = """\
[swarm]
listen = ["/ip4/127.0.0.1/tcp/0"]
[dht]
enabled = true
"""


def _blocks_request(**fields):
    from p2pd.proto import daemon_pb2 as pb

    return pb.Request(type=pb.Request.BLOCKS, blocks=pb.BlocksRequest(**fields))


def _repo(client, what: str):
    import json

    from p2pd.proto import daemon_pb2 as pb

    kind = pb.BlocksRequest.STAT if what == "stat" else pb.BlocksRequest.VERIFY
    return json.loads(client.request(_blocks_request(type=kind)).blocks.stats)


def _kill_when(daemon, client, ready, what: str, timeout: float = 20.0) -> None:
    """SIGKILL ``daemon`` as soon as ``ready(client)`` holds (polled over the socket)."""
    import time

    deadline = time.monotonic() + timeout
    while not ready(client):
        assert time.monotonic() < deadline, f"{what} never got under way"
        time.sleep(0.002)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)


def test_the_daemon_killed_9_during_pin_gc_and_dht_puts_restarts_consistent(tmp_path):
    import shutil
    import tempfile
    import threading

    import nacl.signing
    from test_daemon_bad_input import HomeDaemon
    from test_daemon_harness import Daemon

    from p2pd.cli.client import ControlClient
    from p2pd.proto import daemon_pb2 as pb

    base = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))
    home = base / "home"
    p2pd = [sys.executable, "-m", "p2pd"]

    def cli(d, *args, check=True):
        r = subprocess.run([*p2pd, *args, "--api", f"/unix{d.sock}"], capture_output=True,
                           timeout=60)
        assert not check or r.returncode == 0, r.stderr.decode()[-2000:]
        return r

    def start():
        d = HomeDaemon(home, DHT_CONFIG)
        return d, ControlClient.for_address(f"/unix{d.sock}", timeout=30)

    def consistent(client) -> dict:
        """The restarted store: every block verifies, every pin is whole."""
        report = _repo(client, "verify")
        assert report["blocks_bad"] == 0 and report["pins_incomplete"] == [], report
        return report

    files = {}
    for name, size in (("small", 300_000), ("big", 40_000_000)):
        files[name] = tmp_path / name
        files[name].write_bytes(os.urandom(size))
    peer = Daemon("-dhtServer")
    d, client = start()
    try:
        kept = cli(d, "add", "-q", str(files["small"])).stdout.decode().strip()  # acked

        # 1. pin add of a DAG fetched from a peer: killed mid-fetch; no half pin after
        big = subprocess.run([*p2pd, "add", "-q", str(files["big"]), "--api", peer.control],
                             capture_output=True, check=True, timeout=60).stdout.decode().strip()
        pid, paddrs = ControlClient.for_address(peer.control).identify()
        client.connect(pid, paddrs)
        before = _repo(client, "stat")["blocks"]
        pinning = subprocess.Popen([*p2pd, "pin", "add", big, "--api", f"/unix{d.sock}"],
                                   stdout=subprocess.PIPE)
        _kill_when(d, client, lambda c: _repo(c, "stat")["blocks"] > before + 20, "the pin")
        pinning.wait(10)
        assert pinning.returncode != 0
        d, client = start()
        consistent(client)
        assert big not in cli(d, "pin", "ls").stdout.decode()

        # 2. gc: the big file added and unpinned, then killed while gc removes it
        big_here = cli(d, "add", "-q", str(files["big"])).stdout.decode().strip()
        assert big_here == big
        cli(d, "pin", "rm", big)
        before = _repo(client, "stat")["blocks"]
        collecting = subprocess.Popen([*p2pd, "repo", "gc", "--api", f"/unix{d.sock}"],
                                      stdout=subprocess.PIPE)
        _kill_when(d, client, lambda c: _repo(c, "stat")["blocks"] < before, "the gc")
        collecting.wait(10)
        d, client = start()
        consistent(client)
        assert cli(d, "cat", kept).stdout == files["small"].read_bytes()  # pinned: kept

        # 3. DHT puts, acknowledged one by one, killed in the middle of the run
        client.connect(pid, paddrs)
        acked: list[tuple[bytes, bytes]] = []

        def put_loop() -> None:
            c = ControlClient.for_address(f"/unix{d.sock}", timeout=30)
            for _ in range(200):
                proto = b"\x08\x01\x12\x20" + bytes(
                    nacl.signing.SigningKey(os.urandom(32)).verify_key)
                key = b"/pk/" + bytes([0x00, len(proto)]) + proto
                try:
                    c.request(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(
                        type=pb.DHTRequest.PUT_VALUE, key=key, value=proto, timeout=10)))
                except Exception:
                    return  # the daemon is gone
                acked.append((key, proto))

        putter = threading.Thread(target=put_loop)
        putter.start()
        _kill_when(d, client, lambda c: len(acked) >= 10, "the DHT puts")
        putter.join(30)
        assert len(acked) < 200
        d, client = start()
        consistent(client)
    finally:
        d.stop()
        peer.stop()
    with Datastore.open(home / "datastore") as ds:  # every acknowledged record is there
        missing = [k for k, v in acked if ds.records.get(k) != v]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged DHT records lost"
    shutil.rmtree(base, ignore_errors=True)
