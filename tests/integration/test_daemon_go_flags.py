"""The go daemon's flags as launchers use them: real ``p2pd`` processes, their output and exit
codes, side by side with the go daemon itself where its behaviour is the reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest
import trio
from multiaddr import Multiaddr
from p2pclient import Client
from test_daemon_harness import Daemon

P2PD = [sys.executable, "-m", "p2pd"]
UNREACHABLE = "/ip4/127.0.0.1/tcp/1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ"


_DIRS: list[str] = []


def short_dir(prefix: str) -> str:
    """A directory under /tmp (Unix socket paths must stay short), removed after the module."""
    _DIRS.append(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    return _DIRS[-1]


@pytest.fixture(scope="module", autouse=True)
def _remove_short_dirs():
    yield
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def go_binary() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.godaemon import GoDaemonUnavailable, go_daemon_path

    try:
        return str(go_daemon_path())
    except GoDaemonUnavailable as exc:
        pytest.skip(f"go daemon unavailable: {exc}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "P2PD_HOME": short_dir("p2pd-fl-")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, **kw)


@pytest.mark.parametrize(
    "argv",
    [["-foo"], ["-connHi=x"], ["-dht=maybe"], ["-connGrace=5"], ["-idleTimeout", "30"],
     ["-listen"], ["-pprofPort=-1"], ["-connHi=99999999999999999999"], ["---dht"],
     ["-relayTimeLimit=1d"]],
)
def test_bad_flags_fail_exactly_as_the_go_daemon_fails(go_binary, argv):
    ours, go = run([*P2PD, *argv]), run([go_binary, *argv])
    assert go.returncode == 2 and ours.returncode == 2
    assert ours.stderr.splitlines()[0] == go.stderr.splitlines()[0]
    assert ours.stderr.splitlines()[1] == "Usage of p2pd:"
    assert ours.stdout == "" and "Traceback" not in ours.stderr


def test_b_with_no_answering_bootstrap_peer_refuses_to_start_like_go(go_binary):
    short = short_dir("p2pd-b-")
    args = ["-listen", f"/unix{short}/c.sock", "-hostAddrs", "/ip4/127.0.0.1/tcp/0", "-b",
            "-bootstrapPeers", UNREACHABLE]
    go = run([go_binary, *args])
    ours = run([*P2PD, *args[:1], f"/unix{short}/o.sock", *args[2:]])
    assert go.returncode == 1 and "failed to connect to bootstrap peers" in go.stderr
    assert ours.returncode == 1 and "p2pd: failed to connect to bootstrap peers" in ours.stderr
    assert ours.stdout == "" and "Traceback" not in ours.stderr


HIVEMIND_FLAGS = [  # what hivemind's P2P.create passes (plus the flags of its other setups)
    "-autoRelay=0", "-autonat=1", "-b=0", "-connManager=1", "-idleTimeout=0s", "-natPortMap=1",
    "-relay=1", "-relayHopLimit=0", "-tls=1", "-persistentConnMaxMsgSize=4194304",
    "-dhtServer=1", "-quic=1", "-relayHop=1", "-relayDiscovery=1",
    "-forceReachabilityPublic=1", "-connLo=10", "-connHi=20", "-connGrace=1m",
]


async def test_hivemind_flags_start_the_daemon_and_none_is_unimplemented():
    d = Daemon(*HIVEMIND_FLAGS)
    try:
        peer, addrs = await Client(Multiaddr(d.control)).identify()
        assert peer.to_base58() == d.peer_id and addrs
    finally:
        d.stop()
    err = d.proc.stderr.read()
    assert "not yet implemented" not in err, err  # -quic, -tls, -natPortMap, ... all are


async def test_an_unimplemented_flag_is_named_in_one_line():
    d = Daemon("-plaintext", "-metricsAddr", "127.0.0.1:0")
    d.stop()
    named = [line for line in d.proc.stderr.read().splitlines() if "not yet implemented" in line]
    assert len(named) == 1 and " -plaintext" in named[0] and "-quic" not in named[0]
    assert "-metricsAddr" not in named[0]  # served: see tests/integration/test_http_gateway.py


async def test_pprof_serves_the_debug_profiles_on_localhost():
    import re
    import urllib.request

    d = Daemon("-pprof", "-pprofPort=0")
    try:
        seen = []  # said on stderr before the ready lines, so already in the pipe
        while not (m := re.search(r"pprof debug http handler at: (http://\S+)",
                                  line := d.proc.stderr.readline())):
            seen.append(line)
            assert line and len(seen) < 50, seen
        base = m.group(1)
        assert base.startswith("http://127.0.0.1:")

        def get(path: str) -> str:
            with urllib.request.urlopen(base + path, timeout=30) as r:
                return r.read().decode()

        assert "goroutine" in get("") and "profile" in get("")
        tasks = get("goroutine")
        assert tasks.startswith("tasks: total ") and "serve" in tasks
        assert "objects tracked by gc" in get("heap") and "rss:" in get("heap")
        profile = get("profile?seconds=1")
        assert "cProfile of the trio thread for 1 s" in profile and "function calls" in profile
        assert "-pprof" in get("cmdline").split("\0")
        import urllib.error

        for bad, code in (("profile?seconds=999", 400), ("nothing", 404)):
            try:
                get(bad)
            except urllib.error.HTTPError as exc:
                assert exc.code == code
            else:
                raise AssertionError(bad)
        from p2pd.cli.client import ControlClient

        assert ControlClient.for_address(d.control).identify()  # the daemon goes on
    finally:
        d.stop()


async def test_without_unimplemented_flags_nothing_is_said():
    d = Daemon("-tls=0", "-relay=false", "-quic=f")  # asks for what p2pd does anyway
    d.stop()
    assert "not yet implemented" not in d.proc.stderr.read()


async def test_no_listen_addrs_listens_nowhere_but_dials_out():
    with Daemon() as other:
        sock = Path(short_dir("p2pd-nl-")) / "c.sock"
        proc = subprocess.Popen([*P2PD, "-listen", f"/unix{sock}", "-noListenAddrs"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]
            assert lines[0] == f"Control socket: /unix{sock}" and lines[2] == "Peer Addrs:"
            c = Client(Multiaddr(f"/unix{sock}"))
            me, addrs = await c.identify()
            assert addrs == ()
            o = Client(Multiaddr(other.control))
            other_id, other_addrs = await o.identify()
            await c.connect(other_id, other_addrs)
            assert other_id in [p.peer_id for p in await c.list_peers()]
            assert me in [p.peer_id for p in await o.list_peers()]
        finally:
            proc.terminate()
            proc.wait(15)


async def test_announce_addrs_replace_the_listen_addrs_in_identify_and_the_ready_lines():
    announce = "/ip4/198.51.100.7/tcp/4001"
    with Daemon("-announceAddrs", announce) as d:
        assert d.addrs == [announce]
        _, addrs = await Client(Multiaddr(d.control)).identify()
        assert [str(a) for a in addrs] == [announce]


async def test_an_unspecified_listen_address_is_shown_as_the_interface_addresses():
    with Daemon(host_addrs="/ip4/0.0.0.0/tcp/0") as d:
        _, addrs = await Client(Multiaddr(d.control)).identify()
        shown = [str(a) for a in addrs]
        assert d.addrs[0] in shown and not any("/0.0.0.0/" in a for a in [*shown, *d.addrs])
        assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in shown)


async def test_no_announce_drops_addresses_everywhere():
    with Daemon("-noAnnounce", "/ip4/127.0.0.0/ipcidr/8", host_addrs="/ip4/0.0.0.0/tcp/0") as d:
        assert not any(a.startswith("/ip4/127.") for a in d.addrs)
        _, addrs = await Client(Multiaddr(d.control)).identify()
        assert not any(str(a).startswith("/ip4/127.") for a in addrs)


async def test_b_connects_the_bootstrap_peers_before_the_ready_lines_and_lists_them():
    with Daemon() as boot:
        entry = f"{boot.addrs[0]}/p2p/{boot.peer_id}"
        with Daemon("-b", "-bootstrapPeers", entry) as d:
            assert [d.proc.stdout.readline().rstrip("\n") for _ in range(2)] == [
                "Bootstrap peers:", entry]
            peers = await Client(Multiaddr(d.control)).list_peers()  # no waiting: already there
            assert boot.peer_id in [p.peer_id.to_base58() for p in peers]


async def test_q_prints_no_ready_lines_and_serves():
    sock = Path(short_dir("p2pd-q-")) / "c.sock"
    proc = subprocess.Popen([*P2PD, "-q", "-listen", f"/unix{sock}", "-hostAddrs",
                             "/ip4/127.0.0.1/tcp/0"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            await trio.sleep(0.05)
        _, addrs = await Client(Multiaddr(f"/unix{sock}")).identify()
        assert addrs
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.stdout.read() == ""


async def test_echo_serves_the_upstream_echo_protocol():
    with Daemon("-echo") as a, Daemon() as b:
        ca, cb = Client(Multiaddr(a.control)), Client(Multiaddr(b.control))
        a_id, a_addrs = await ca.identify()
        await cb.connect(a_id, a_addrs)
        info, stream = await cb.stream_open(a_id, ["/echo/1.0.0"])
        assert info.proto == "/echo/1.0.0"
        payload = os.urandom(100_000)
        got = bytearray()
        async with anyio.create_task_group() as tg:
            async def read_all():
                while True:
                    try:
                        got.extend(await stream.receive(65536))
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        return
            tg.start_soon(read_all)
            await stream.send(payload)
            await stream.send_eof()
        assert bytes(got) == payload


def test_json_config_from_stdin_and_file_sets_what_its_fields_say(tmp_path):
    sock = Path(short_dir("p2pd-j-")) / "j.sock"  # sun_path limit
    doc = {"ListenAddr": f"/unix{sock}", "HostAddresses": ["/ip4/127.0.0.1/tcp/0"],
           "ConnectionManager": {"Enabled": True, "LowWaterMark": 1, "HighWaterMark": 2,
                                 "GracePeriod": 30},
           "PubSub": {"Enabled": True, "Router": "floodsub"}, "Relay": {"Enabled": True}}
    proc = subprocess.Popen([*P2PD, "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps(doc))
        proc.stdin.close()
        assert proc.stdout.readline() == f"Control socket: /unix{sock}\n"
        assert proc.stdout.readline().startswith("Peer ID: ")
        topics = subprocess.run([*P2PD, "pubsub", "topics", "--api", f"/unix{sock}"],
                                capture_output=True, text=True, timeout=30)
        assert topics.returncode == 0, topics.stderr  # pubsub is on, as the config says
    finally:
        proc.terminate()
        proc.wait(15)
    assert "not yet implemented" not in proc.stderr.read()  # relay is, now
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ConnectionManager": {"LowWaterMark": "many"}}))
    out = run([*P2PD, "-f", str(bad)])
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{bad}: ConnectionManager.LowWaterMark must be an integer" in out.stderr
    bad.write_text(json.dumps({"Listen": "/unix/tmp/x"}))
    out = run([*P2PD, "-f", str(bad)])
    assert f"{bad}: unknown field Listen" in out.stderr and out.returncode == 1


async def test_no_announce_in_the_home_config_keeps_addresses_out_of_what_is_announced():
    home = Path(short_dir("p2pd-na-"))
    home.chmod(0o700)
    (home / "config.toml").write_text(
        '[swarm]\nlisten = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.2/tcp/0"]\n'
        'no_announce = ["/ip4/127.0.0.2/ipcidr/32"]\n'
        "[dht]\nenabled = false\n[bootstrap]\nenabled = false\n[pubsub]\nenabled = false\n")
    proc = subprocess.Popen(P2PD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "P2PD_HOME": str(home)})
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(4)]
        assert lines[2] == "Peer Addrs:" and lines[3].startswith("/ip4/127.0.0.1/tcp/"), lines
        _, addrs = await Client(Multiaddr(f"/unix{home}/p2pd.sock")).identify()
        assert [str(a) for a in addrs] == [lines[3]]
    finally:
        proc.terminate()
        proc.wait(15)
