"""The soak (issue 16 item 2): many of our daemons in the lab under a mixed workload, with
peers restarted and links flapping, sampled over time; shared by tests/lab/test_lab_soak.py
(3 minutes) and bench/soak.py (``python -m bench soak --minutes N``).

Layout: a bootstrap DHT server and further public daemons on the internet segment, one
daemon in each of several homes (full cone, port-restricted, symmetric, a routed public
LAN; some uplinks with delay), all with DHT and pubsub. Workload, from this process through
the daemons' control sockets (the lab's Unix sockets are files, reachable without the
namespaces):

- adds of files of mixed sizes (4 KiB - 3 MiB) at one daemon, each fetched (CAT, bytes
  checked) by a public daemon the adder connected to, then by a third daemon via that one;
- DHT PROVIDE at the adder and FIND_PROVIDERS at another daemon;
- pubsub: every daemon subscribed to one topic, publishes at a steady rate from all;
- control clients coming and going: IDENTIFY, LIST_PEERS, STATUS, short subscriptions and
  ping streams dropped mid-way;
- chaos: a restartable daemon (homes only) stopped (SIGTERM or SIGKILL, alternately) and
  started again on the same home directory; an uplink dropped (nftables, both ways) for a
  few seconds.

Every daemon is sampled (STATUS "Runtime": trio tasks, fds, RSS; "Limits": connections,
streams). Daemons never restarted are the ones whose series are judged (:func:`judge`).
At the end a fresh daemon on the internet segment, to which every daemon connects, fetches
every acknowledged add (bytes checked).

Optionally (``go=True``) a go daemon (hivemind's fork) and one of ours ("twin"), both on
public hosts, get the same go-compatible load (IDENTIFY, LIST_PEERS, CONNECT, ping streams,
DHT FIND_PEER / PROVIDE / FIND_PROVIDERS, pubsub PUBLISH and a subscription) at the same
rate: their request latencies and RSS side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import multiaddr
import psutil

from p2pd.blocks.cid import CID
from p2pd.blocks.multibase import b58decode
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder
from p2pd.control.endpoint import parse_endpoint
from p2pd.proto import daemon_pb2 as pb

from .nat import Nat
from .netns import run as netns_run
from .peers import SWARM_PORT, LabDaemon, LabGoDaemon, daemon_env
from .shaping import Link
from .topology import Home, Lab, Node

TOPIC = "soak"
SIZES = (4 << 10, 64 << 10, 300 << 10, 1 << 20, 3 << 20)
SIZE_WEIGHTS = (4, 3, 3, 2, 1)
HOME_KINDS = (
    (Nat.PORT_RESTRICTED, Link(rtt_ms=40, up_mbit=20, down_mbit=100)),
    (Nat.FULL_CONE, Link(up_mbit=50, down_mbit=100)),
    (Nat.SYMMETRIC, Link(rtt_ms=30, up_mbit=20, down_mbit=50)),
    (Nat.NONE, Link(up_mbit=100)),
    (Nat.PORT_RESTRICTED, Link(up_mbit=30, down_mbit=100)),
    (Nat.FULL_CONE, Link(rtt_ms=20, up_mbit=50)),
    (Nat.SYMMETRIC, Link(up_mbit=20, down_mbit=100)),
    (Nat.PORT_RESTRICTED, Link(up_mbit=20)),
)


def _log(text: str) -> None:
    print(f"[soak] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


@dataclass
class SoakConfig:
    seconds: float = 180.0
    publics: int = 3  # public daemons besides the bootstrap node (and the twin)
    homes: int = 4
    restartable: int = 2  # of the homes
    add_every: float = 3.0
    publish_per_s: float = 4.0
    control_clients: int = 3
    restart_every: float = 30.0
    flap_every: float = 20.0
    flap_seconds: float = 6.0
    sample_every: float = 3.0
    go: bool = False
    peer_ops_every: float = 0.5  # the twin/go comparison: one round of ops this often


HOME_CONFIG = """\
[control]
listen = "{control}"
[swarm]
listen = ["/ip4/0.0.0.0/tcp/{port}"]
quic = false
port_map = false
[blockstore]
cache_mib = {cache_mib}
[datastore]
memtable_mib = {memtable_mib}
block_cache_mib = {memtable_mib}
[bitswap]
enabled = true
[dht]
enabled = true
mode = "{dht_mode}"
[pubsub]
enabled = true
[autonat]
client = true
service = {autonat_service}
[http]
listen = ""
[bootstrap]
enabled = {bootstrap}
peers = [{peers}]
"""
#: The block LRU, RocksDB's write buffer and its block cache are bounded by configuration
#: (64, 64 and 32 MiB by default); the soak gives them 4, 2 and 2 MiB so that they are full
#: within the warm-up and what RSS does afterwards is not a cache filling up.
CACHE_MIB = 4
MEMTABLE_MIB = 2


class SoakDaemon(LabDaemon):
    """Our daemon in home mode (config.toml, RocksDB datastore, the identity kept in the
    home) inside a lab node: a restart keeps its peer id, its blocks and its pins."""

    def __init__(self, lab: Lab, node: Node, *, name: str, dht_mode: str = "auto",
                 bootstrap: list[str] = (), public: bool = False) -> None:
        self.lab, self.node, self.name, self.restarts = lab, node, name, 0
        self.extra: tuple[str, ...] = tuple(os.environ.get("SOAK_DAEMON_FLAGS", "").split())
        self.dir = Path(tempfile.mkdtemp(prefix="p2ps-", dir="/tmp"))  # short: sun_path
        lab.on_close(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.control = f"/unix{self.dir / 'p2pd.sock'}"
        home = self.dir / "home"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text(HOME_CONFIG.format(
            control=self.control, port=SWARM_PORT, cache_mib=CACHE_MIB, dht_mode=dht_mode,
            memtable_mib=MEMTABLE_MIB,
            autonat_service=str(public).lower(), bootstrap=str(bool(bootstrap)).lower(),
            peers=", ".join(f'"{p}"' for p in bootstrap)))
        self.up = threading.Event()
        self._start()
        self.client = ControlClient(parse_endpoint(self.control), timeout=30)

    def _start(self) -> None:
        suffix = f"-r{self.restarts}" if self.restarts else ""
        self.proc = self.lab.run(self.node, [sys.executable, "-m", "p2pd", *self.extra],
                                 name=f"{self.name}{suffix}", env=daemon_env(self.dir / "home"))
        m = self.proc.wait_for(r"^Peer ID: (\S+)\nPeer Addrs:\n", timeout=90)
        self.peer_id = m.group(1)
        self.addr = f"/ip4/{self.node.addr}/tcp/{SWARM_PORT}/p2p/{self.peer_id}"
        self.up.set()

    def restart(self, kill: bool) -> None:
        """Stop (SIGKILL, or SIGTERM and the shutdown it does) and start again."""
        self.up.clear()
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stop()
        self.restarts += 1
        before = self.peer_id
        self._start()
        if self.peer_id != before:
            raise RuntimeError(f"{self.name} came back as {self.peer_id}, was {before}")


@dataclass
class Added:
    cid: str
    sha: str
    size: int
    origin: str


@dataclass
class Stats:
    adds: list[Added] = field(default_factory=list)
    add_failed: int = 0
    fetch_ok: int = 0
    fetch_failed: int = 0
    fetch_mismatch: int = 0
    found_ok: int = 0
    found_missed: int = 0
    published: int = 0
    received: int = 0
    control_requests: int = 0
    control_failed: int = 0
    restarts: int = 0
    kills: int = 0
    flaps: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, exc: BaseException) -> None:
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {what}: {str(exc)[:200]}")


def _name(d: LabDaemon) -> str:
    return getattr(d, "name", "") or d.node.name


def _ma(text: str) -> bytes:
    return multiaddr.Multiaddr(text).to_bytes()


def _pid(text: str) -> bytes:
    return b58decode(text)


def _ps(kind, **fields) -> pb.Request:
    return pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(type=kind, **fields))


def _dht(kind, timeout: int = 20, **fields) -> pb.Request:
    return pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(type=kind, timeout=timeout, **fields))


def cat(d: LabDaemon, cid: str, timeout: int = 60) -> bytes:
    """The file ``cid`` as ``d`` serves it (fetched over the network if it lacks it)."""
    client = ControlClient(parse_endpoint(d.control), timeout=timeout + 30)
    req = pb.Request(type=pb.Request.BLOCKS, blocks=pb.BlocksRequest(
        type=pb.BlocksRequest.CAT, cid=CID.decode(cid).to_bytes(), timeout=timeout))
    size, out = None, bytearray()
    for piece in client.request_bytes(req):
        if isinstance(piece, int):
            size = piece
        else:
            out += piece
    if size is not None and len(out) != size:
        raise RuntimeError(f"cat {cid} at {d.node.name}: {len(out)} of {size} bytes")
    return bytes(out)


#: A message published this close to a subscription's end is not expected by it (in flight).
PUBSUB_GRACE = 1.5
#: A miss this close (s) to a flap of the publisher's or the subscriber's uplink is put down
#: to it: the flood publish or the mesh copy died on the dropped link, and the catch-up
#: IHAVE only offers the last 5 heartbeats' messages once the link is back.
FLAP_MARGIN = 2.0


@dataclass
class Session:
    """One SUBSCRIBE connection: when it was open, what it got (message id -> times)."""
    daemon: str
    start: float
    end: float = 0.0
    got: dict[int, int] = field(default_factory=dict)
    foreign: int = 0  # frames that are not the soak's messages


class Deliveries:
    """Pubsub accounting per subscription: every published message has a unique id (the
    first word of its data), the time it was published and its publisher; every
    subscription (a SUBSCRIBE connection, opened again after its daemon restarts) counts
    what it got, by id. A message is expected by each subscription open when it was
    published (up to :data:`PUBSUB_GRACE` before the subscription ended); a copy beyond the
    first within one subscription is a duplicate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._next = 0
        self.published: dict[int, tuple[float, str]] = {}
        self.sessions: list[Session] = []
        self.flaps: list[tuple[str, float, float]] = []

    def new_id(self) -> int:
        with self.lock:
            self._next += 1
            return self._next

    def message(self, msg_id: int, label: str) -> bytes:
        return f"{msg_id} {label} {time.time():.3f} ".encode() + b"." * 180

    def sent(self, msg_id: int, at: float, publisher: str) -> None:
        with self.lock:
            self.published[msg_id] = (at, publisher)

    def open(self, daemon: str, at: float) -> Session:
        s = Session(daemon, at)
        with self.lock:
            self.sessions.append(s)
        return s

    def got(self, s: Session, data: bytes) -> None:
        head = data.split(b" ", 1)[0]
        with self.lock:
            if not head.isdigit():
                s.foreign += 1
                return
            i = int(head)
            s.got[i] = s.got.get(i, 0) + 1

    def flapped(self, link: str, start: float, end: float) -> None:
        with self.lock:
            self.flaps.append((link, start, end))

    def report(self, links: dict[str, str]) -> dict:
        """``links``: daemon name -> the name of the uplink the flapper drops for it."""
        with self.lock:
            published = dict(self.published)
            sessions = list(self.sessions)
            flaps = list(self.flaps)

        def near_flap(daemon: str, t: float) -> bool:
            link = links.get(daemon)
            return any(name == link and start - FLAP_MARGIN <= t <= end + FLAP_MARGIN
                       for name, start, end in flaps)

        expected = delivered = duplicates = early = unpublished = foreign = 0
        missed_flap = missed_other = 0
        missed_examples: list[str] = []
        earlier: dict[str, set[int]] = {}  # per daemon: what its earlier sessions got
        redelivered = 0
        for s in sorted(sessions, key=lambda x: x.start):
            foreign += s.foreign
            duplicates += sum(n - 1 for n in s.got.values())
            seen_before = earlier.setdefault(s.daemon, set())
            redelivered += sum(1 for i in s.got if i in seen_before)
            seen_before.update(s.got)
            for i in s.got:
                if i not in published:
                    unpublished += 1  # a publish that failed (timed out) yet went out
                elif published[i][0] < s.start:
                    early += 1
            for i, (t, publisher) in published.items():
                if not s.start <= t <= s.end - PUBSUB_GRACE:
                    continue
                expected += 1
                if i in s.got:
                    delivered += 1
                elif near_flap(s.daemon, t) or near_flap(publisher, t):
                    missed_flap += 1
                else:
                    missed_other += 1
                    if len(missed_examples) < 10:
                        missed_examples.append(f"{i} from {publisher} at {t:.1f} s, "
                                               f"{s.daemon} subscribed {s.start:.1f}-{s.end:.1f}")
        return {"published": len(published), "subscriptions": len(sessions),
                "expected": expected, "delivered": delivered, "duplicates": duplicates,
                "missed_near_flap": missed_flap, "missed_other": missed_other,
                "missed_examples": missed_examples, "before_subscribed": early,
                "redelivered_after_restart": redelivered, "unacknowledged": unpublished,
                "foreign": foreign}


class Soak:
    """Builds the lab network, runs the workload and chaos for ``config.seconds``, samples,
    and verifies every acknowledged add at the end (:meth:`run` returns the report)."""

    def __init__(self, lab: Lab, config: SoakConfig, workdir: Path) -> None:
        self.lab, self.cfg = lab, config
        self.work = workdir
        self.work.mkdir(parents=True, exist_ok=True)
        self.stats = Stats()
        self.stop = threading.Event()
        self.chaos_on = threading.Event()
        self.samples: dict[str, list[dict]] = {}
        self.latency: dict[str, dict[str, list[float]]] = {}
        self.peer_rss: dict[str, list[tuple[float, int]]] = {}
        self.rng = random.Random(1616)
        self.t0 = 0.0
        self.ours: list[SoakDaemon] = []
        self.public: list[SoakDaemon] = []
        self.restartable: list[SoakDaemon] = []
        self.homes: dict[str, Home] = {}
        self.twin: SoakDaemon | None = None
        self.go: LabGoDaemon | None = None
        self.flapping: set[str] = set()
        self.deliveries = Deliveries()
        #: daemon name -> the uplink (flapper name) its traffic goes through
        self.links: dict[str, str] = {}

    # -- building ------------------------------------------------------------------------
    def build(self) -> None:
        lab, cfg = self.lab, self.cfg
        boot = SoakDaemon(lab, lab.add_host("boot"), name="p2pd-boot", dht_mode="server",
                          public=True)
        self.boot = boot
        self.ours.append(boot)
        self.public.append(boot)
        specs: list[tuple[str, Node, dict]] = []
        public = {"dht_mode": "server", "public": True, "bootstrap": [boot.addr]}
        for i in range(cfg.publics):
            specs.append((f"pub{i}", lab.add_host(f"pub{i}"), public))
        if cfg.go:
            specs.append(("twin", lab.add_host("twin"), public))
        for i in range(cfg.homes):
            nat, link = HOME_KINDS[i % len(HOME_KINDS)]
            home = lab.add_home(f"h{i}", nat, link=link)
            self.homes[f"h{i}"] = home
            specs.append((f"h{i}", home.hosts[0], {"bootstrap": [boot.addr]}))
        made: dict[str, SoakDaemon] = {}
        errors: list[BaseException] = []

        def start(name: str, node: Node, kw: dict) -> None:
            try:
                made[name] = SoakDaemon(lab, node, name=f"p2pd-{name}", **kw)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=s) for s in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for name, _node, _kw in specs:
            d = made[name]
            if name == "twin":
                self.twin = d
                continue
            self.ours.append(d)
            if name.startswith("pub"):
                self.public.append(d)
        for name, node, _kw in specs:
            self.links[made[name].name] = name if name in self.homes else node.name
        homes = [made[f"h{i}"] for i in range(cfg.homes)]
        self.restartable = homes[: cfg.restartable]
        if cfg.go:
            self.go = LabGoDaemon(lab, lab.add_host("go"), "-dht", "-pubsub", "-b",
                                  "-bootstrapPeers", boot.addr)
            self.go.client = ControlClient(parse_endpoint(self.go.control), timeout=30)
        _log(f"{len(self.all_ours())} of our daemons up"
             + (" and the go daemon" if self.go else ""))

    def all_ours(self) -> list[SoakDaemon]:
        return self.ours + ([self.twin] if self.twin else [])

    def _live(self, among: list[SoakDaemon]) -> list[SoakDaemon]:
        return [d for d in among if d.up.is_set()]

    # -- workload ------------------------------------------------------------------------
    def _adder(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.stop.wait(self.cfg.add_every * (0.5 + self.rng.random()))
            if self.stop.is_set():
                return
            n += 1
            live = self._live(self.ours)
            origin = self.rng.choice(live)
            size = self.rng.choices(SIZES, SIZE_WEIGHTS)[0] + self.rng.randrange(4096)
            data = os.urandom(size)
            path = self.work / f"add-{n}.bin"
            path.write_bytes(data)
            try:
                req = pb.Request(type=pb.Request.BLOCKS, blocks=pb.BlocksRequest(
                    type=pb.BlocksRequest.ADD, path=str(path), cidVersion=1, pin=True))
                cid = str(CID.from_bytes(origin.client.request(req).blocks.cid))
            except Exception as exc:
                with self.stats.lock:
                    self.stats.add_failed += 1
                self.stats.note(f"add at {origin.name}", exc)
                continue
            finally:
                path.unlink(missing_ok=True)
            sha = hashlib.sha256(data).hexdigest()
            with self.stats.lock:
                self.stats.adds.append(Added(cid, sha, size, origin.name))
            self._spread(origin, cid, sha)

    def _spread(self, origin: SoakDaemon, cid: str, sha: str) -> None:
        """A public daemon fetches from the adder (which connects to it: homes cannot be
        dialled), a third daemon from the public one; the adder provides, another finds."""
        others = [d for d in self._live(self.public) if d is not origin]
        if not others:
            return
        first = self.rng.choice(others)
        third = self.rng.choice([d for d in self._live(self.ours) if d not in (origin, first)])
        for fetcher, source in ((first, origin), (third, first)):
            try:  # the one that may be behind NAT dials: the public one cannot
                dialer, dialed = ((fetcher, source) if source in self.public
                                  else (source, fetcher))
                dialer.client.connect(_pid(dialed.peer_id), [_ma(dialed.addr)], timeout=10)
                got = cat(fetcher, cid, timeout=45)
                ok = hashlib.sha256(got).hexdigest() == sha
                with self.stats.lock:
                    self.stats.fetch_ok += ok
                    self.stats.fetch_mismatch += not ok
            except Exception as exc:
                with self.stats.lock:
                    self.stats.fetch_failed += 1
                self.stats.note(f"fetch {cid[:16]} at {fetcher.name} from {source.name}", exc)
        key = CID.decode(cid).to_bytes()
        try:
            origin.client.request(_dht(pb.DHTRequest.PROVIDE, cid=key))
            finder = self.rng.choice([d for d in self._live(self.ours) if d is not origin])
            found = finder.client.request_stream(
                _dht(pb.DHTRequest.FIND_PROVIDERS, cid=key, count=5))
            hit = any(r.HasField("peer") and r.peer.id == _pid(origin.peer_id) for r in found)
            with self.stats.lock:
                self.stats.found_ok += hit
                self.stats.found_missed += not hit
        except Exception as exc:
            with self.stats.lock:
                self.stats.found_missed += 1
            self.stats.note(f"provide/find {cid[:16]}", exc)

    def _publish(self, d: LabDaemon, request) -> None:
        """One PUBLISH of a message with a new id at ``d`` (``request``: its client's)."""
        msg_id = self.deliveries.new_id()
        t = time.monotonic() - self.t0
        try:
            request(_ps(pb.PSRequest.PUBLISH, topic=TOPIC,
                        data=self.deliveries.message(msg_id, _name(d))))
        except Exception as exc:
            self.stats.note(f"publish at {d.node.name}", exc)
            raise
        self.deliveries.sent(msg_id, t, _name(d))
        with self.stats.lock:
            self.stats.published += 1

    def _publisher(self) -> None:
        seq = 0
        period = 1.0 / self.cfg.publish_per_s
        targets = self.all_ours() + ([self.go] if self.go else [])
        while not self.stop.wait(period):
            d = self.rng.choice(targets)
            if isinstance(d, SoakDaemon) and not d.up.is_set():
                continue
            seq += 1
            with contextlib.suppress(Exception):  # noted
                self._publish(d, d.client.request)

    def _subscriber(self, d: LabDaemon) -> None:
        """One long subscription per daemon, opened again after a restart."""
        while not self.stop.is_set():
            if isinstance(d, SoakDaemon) and not d.up.wait(1.0):
                continue
            try:
                client = ControlClient(parse_endpoint(d.control), timeout=30)
                sock = client._connect()
                sock.settimeout(1.0)
                with sock:
                    _first, rest = client._exchange(sock, _ps(pb.PSRequest.SUBSCRIBE,
                                                              topic=TOPIC))
                    session = self.deliveries.open(_name(d), time.monotonic() - self.t0)
                    decoder = FrameDecoder()
                    decoder.receive_data(rest)
                    while not self.stop.is_set():
                        session.end = time.monotonic() - self.t0
                        while (frame := decoder.next_frame()) is not None:
                            self.deliveries.got(session, pb.PSMessage.FromString(frame).data)
                            with self.stats.lock:
                                self.stats.received += 1
                        try:
                            data = sock.recv(65536)
                        except TimeoutError:
                            continue
                        if not data:
                            break
                        decoder.receive_data(data)
            except Exception as exc:
                if not self.stop.is_set():
                    self.stats.note(f"subscription at {d.node.name}", exc)
                    self.stop.wait(1.0)

    def _control_churn(self, seed: int) -> None:
        """Clients coming and going: one request per connection, a subscription or a ping
        stream dropped mid-way now and then."""
        rng = random.Random(seed)
        while not self.stop.wait(0.05 + rng.random() * 0.2):
            d = rng.choice(self._live(self.ours))
            client = ControlClient(parse_endpoint(d.control), timeout=30)
            kind = rng.random()
            try:
                if kind < 0.4:
                    client.identify()
                elif kind < 0.7:
                    client.list_peers()
                elif kind < 0.85:
                    client.status()
                elif kind < 0.93:
                    sock = client._connect()
                    with sock:
                        client._exchange(sock, _ps(pb.PSRequest.SUBSCRIBE, topic=TOPIC))
                        time.sleep(rng.random())
                else:
                    peers = client.list_peers()
                    if peers:
                        sock = client._connect()
                        with sock:
                            client._exchange(sock, pb.Request(
                                type=pb.Request.STREAM_OPEN, streamOpen=pb.StreamOpenRequest(
                                    peer=rng.choice(peers).id, proto=["/ipfs/ping/1.0.0"],
                                    timeout=5)))
                            sock.sendall(os.urandom(32))
                            sock.recv(32)
                with self.stats.lock:
                    self.stats.control_requests += 1
            except Exception as exc:
                with self.stats.lock:
                    self.stats.control_failed += 1
                self.stats.note(f"control at {d.node.name}", exc)

    # -- chaos ---------------------------------------------------------------------------
    def _restarter(self) -> None:
        kill = False
        while not self.stop.wait(self.cfg.restart_every * (0.7 + 0.6 * self.rng.random())):
            if not self.restartable:
                return
            d = self.rng.choice(self.restartable)
            kill = not kill
            try:
                d.restart(kill)
                with self.stats.lock:
                    self.stats.restarts += 1
                    self.stats.kills += kill
                _log(f"restarted {d.name} ({'SIGKILL' if kill else 'SIGTERM'})")
            except Exception as exc:
                self.stats.note(f"restart {d.name}", exc)

    def _uplink(self, name: str) -> tuple[str, str]:
        node = self.homes[name].router if name in self.homes else self.lab.nodes[name]
        return node.ns, node.dev

    def flap(self, name: str, down: bool) -> None:
        """Drop everything through ``name``'s uplink (a home: its router's WAN side), or
        stop dropping."""
        ns, dev = self._uplink(name)
        if down:
            hook = "type filter hook {} priority -50;"
            rules = (f"table inet soakflap {{\n"
                     f" chain i {{ {hook.format('input')} iifname \"{dev}\" drop; }}\n"
                     f" chain o {{ {hook.format('output')} oifname \"{dev}\" drop; }}\n"
                     f" chain f {{ {hook.format('forward')} iifname \"{dev}\" drop;"
                     f" oifname \"{dev}\" drop; }}\n}}\n")
            netns_run("nft", "-f", "-", ns=ns, input=rules)
        else:
            netns_run("nft", "delete", "table", "inet", "soakflap", ns=ns, check=False)

    def _flapper(self) -> None:
        names = [*self.homes, *(d.node.name for d in self.public[1:])]
        while not self.stop.wait(self.cfg.flap_every * (0.7 + 0.6 * self.rng.random())):
            name = self.rng.choice(names)
            self.flapping.add(name)
            try:
                start = time.monotonic() - self.t0
                self.flap(name, True)
                with self.stats.lock:
                    self.stats.flaps += 1
                self.stop.wait(self.cfg.flap_seconds)
            finally:
                self.flap(name, False)
                self.flapping.discard(name)
                self.deliveries.flapped(name, start, time.monotonic() - self.t0)

    # -- the twin and go, same load ------------------------------------------------------
    def _peer_load(self, d: LabDaemon, label: str) -> None:
        """The same go-compatible ops at the same rate at ``d``; each request's latency."""
        rng = random.Random(label == "go")  # same sequence of choices for both
        lat = self.latency.setdefault(label, {})
        known = [x for x in self.public if x is not self.boot]
        n = 0

        def timed(op: str, fn) -> object:
            t = time.perf_counter()
            try:
                out = fn()
            except Exception as exc:
                lat.setdefault(op + " failed", []).append(time.perf_counter() - t)
                self.stats.note(f"{label} {op}", exc)
                return None
            lat.setdefault(op, []).append(time.perf_counter() - t)
            return out

        sub = threading.Thread(target=self._subscriber, args=(d,), daemon=True)
        sub.start()
        while not self.stop.wait(self.cfg.peer_ops_every):
            n += 1
            c = ControlClient(parse_endpoint(d.control), timeout=30)
            target = rng.choice(known)
            timed("IDENTIFY", c.identify)
            peers = timed("LIST_PEERS", c.list_peers) or []
            tid, taddr = _pid(target.peer_id), _ma(target.addr)
            timed("CONNECT", partial(c.connect, tid, [taddr], 10))
            timed("ping stream", partial(c.ping, tid, 3))
            timed("PUBLISH", partial(self._publish, d, c.request))
            if n % 4 == 0:
                find = _dht(pb.DHTRequest.FIND_PEER, peer=_pid(rng.choice(self.ours).peer_id))
                timed("FIND_PEER", partial(c.request, find))
                cid = _random_cid(rng)  # a new CID each round
                timed("PROVIDE", partial(c.request, _dht(pb.DHTRequest.PROVIDE, cid=cid)))
                timed("FIND_PROVIDERS", partial(c.request_stream, _dht(
                    pb.DHTRequest.FIND_PROVIDERS, cid=cid, count=1)))
            if n % 10 == 0 and peers:  # a connection dropped and made again
                timed("DISCONNECT", partial(c.disconnect, rng.choice(peers).id))

    # -- sampling ------------------------------------------------------------------------
    def _sample(self) -> None:
        while True:
            t = time.monotonic() - self.t0
            for d in self.all_ours():
                if not d.up.is_set():
                    continue
                try:
                    s = d.client.status()
                except Exception as exc:
                    self.stats.note(f"status {d.name}", exc)
                    continue
                rt, use = s["Runtime"], s["Limits"]["Use"]
                self.samples.setdefault(d.name, []).append({
                    "t": round(t, 1), "rss": rt["RSS"], "fds": rt["Fds"], "tasks": rt["Tasks"],
                    "pyblocks": rt.get("PyBlocks", 0),
                    "conns": use["conns"], "streams": use["streams"], "gen": d.restarts,
                    "by_protocol": use.get("streams_by_protocol")})
            if self.go is not None:
                with contextlib.suppress(Exception):
                    p = psutil.Process(self.go.proc.pid)
                    conns = len(self.go.client.list_peers())
                    self.samples.setdefault("go", []).append({
                        "t": round(t, 1), "rss": p.memory_info().rss, "fds": p.num_fds(),
                        "tasks": p.num_threads(), "conns": conns, "streams": -1, "gen": 0,
                        "pyblocks": 0})
            if self.stop.wait(self.cfg.sample_every):
                return

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict:
        self.build()
        self.boot_wait()
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (
            self._sample, self._adder, self._publisher, self._restarter, self._flapper)]
        threads += [threading.Thread(target=self._control_churn, args=(i,), daemon=True)
                    for i in range(self.cfg.control_clients)]
        threads += [threading.Thread(target=self._subscriber, args=(d,), daemon=True)
                    for d in self.ours]
        if self.go is not None:
            assert self.twin is not None
            threads += [threading.Thread(target=self._peer_load, args=(d, label), daemon=True)
                        for d, label in ((self.twin, "ours"), (self.go, "go"))]
        for t in threads:
            t.start()
        end = self.t0 + self.cfg.seconds
        while time.monotonic() < end:
            time.sleep(min(10.0, max(0.1, end - time.monotonic())))
            with self.stats.lock:
                s = self.stats
                _log(f"t={time.monotonic() - self.t0:.0f}s adds={len(s.adds)} fetch ok/failed="
                     f"{s.fetch_ok}/{s.fetch_failed} pub/recv={s.published}/{s.received} "
                     f"control={s.control_requests}/{s.control_failed} restarts={s.restarts} "
                     f"flaps={s.flaps}")
        self.stop.set()
        for t in threads:
            t.join(timeout=90)
        for name in list(self.homes) + [d.node.name for d in self.public]:
            self.flap(name, False)
        lost = self.verify()
        return self.report(lost)

    def boot_wait(self) -> None:
        """Every daemon has a peer (joined through the bootstrap node) before the clock starts."""
        deadline = time.monotonic() + 60
        for d in self.all_ours()[1:] + ([self.go] if self.go else []):
            while not d.client.list_peers():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{d.node.name} joined nobody")
                time.sleep(0.3)

    def verify(self) -> list[str]:
        """A fresh daemon on the internet segment, connected to by every daemon, fetches
        every acknowledged add: the CIDs it could not get or got wrong."""
        for d in self.restartable:
            d.up.wait(120)
        checker = LabDaemon(self.lab, self.lab.add_host("verify"), name="p2pd-verify")
        for d in self.ours:
            try:
                d.client.connect(_pid(checker.peer_id), [_ma(checker.addr)], timeout=20)
            except Exception as exc:
                self.stats.note(f"verify connect {d.name}", exc)
        lost: list[str] = []
        lock = threading.Lock()
        todo = list(self.stats.adds)

        def worker() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    a = todo.pop()
                try:
                    ok = hashlib.sha256(cat(checker, a.cid, timeout=90)).hexdigest() == a.sha
                except Exception as exc:
                    self.stats.note(f"verify {a.cid}", exc)
                    ok = False
                if not ok:
                    with lock:
                        lost.append(f"{a.cid} ({a.size} B from {a.origin})")

        t0 = time.monotonic()
        workers = [threading.Thread(target=worker) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        _log(f"verified {len(self.stats.adds)} adds in {time.monotonic() - t0:.0f} s: "
             f"{len(lost)} lost")
        checker.close()
        return lost

    def died(self) -> dict[str, str]:
        """Daemons that exited on their own (not stopped by the restarter): name -> exit
        status and the tail of their stderr (the lab's logs go with its directory)."""
        out = {}
        for d in self.all_ours():
            if not d.proc.running():
                out[d.name] = (f"exit {d.proc.popen.returncode}: "
                               + d.proc.errors()[-4000:])
        return out

    def report(self, lost: list[str]) -> dict:
        s = self.stats
        stable = [d.name for d in self.all_ours() if d.restarts == 0]
        return {
            "seconds": self.cfg.seconds,
            "daemons": len(self.all_ours()),
            "go": self.go is not None,
            "adds": len(s.adds), "add_bytes": sum(a.size for a in s.adds),
            "add_failed": s.add_failed, "lost": lost,
            "fetch_ok": s.fetch_ok, "fetch_failed": s.fetch_failed,
            "fetch_mismatch": s.fetch_mismatch,
            "found_ok": s.found_ok, "found_missed": s.found_missed,
            "published": s.published, "received": s.received,
            "pubsub": self.deliveries.report(self.links),
            "control_requests": s.control_requests, "control_failed": s.control_failed,
            "restarts": s.restarts, "kills": s.kills, "flaps": s.flaps,
            "died": self.died(),
            "errors": s.errors[:50],
            "samples": self.samples, "stable": stable,
            "judged": {name: judge(self.samples.get(name, []))
                       for name in stable + (["go"] if self.go is not None else [])},
            "latency": {label: {op: summary(v) for op, v in ops.items()}
                        for label, ops in self.latency.items()},
        }


def _random_cid(rng: random.Random) -> bytes:
    """A CIDv1 (raw, sha2-256) of 32 random bytes."""
    digest = hashlib.sha256(rng.randbytes(32)).digest()
    return bytes([0x01, 0x55, 0x12, 0x20]) + digest


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "p50_ms": round(v[len(v) // 2] * 1000, 2),
            "p99_ms": round(v[min(len(v) - 1, int(len(v) * 0.99))] * 1000, 2),
            "mean_ms": round(statistics.fmean(v) * 1000, 2)}


def fifths(series: list[dict], key: str) -> tuple[list[float], list[float]]:
    """The values of ``key`` in the second and the last fifth of the run (by time)."""
    if not series:
        return [], []
    end = series[-1]["t"]
    second = [s[key] for s in series if end * 0.2 <= s["t"] < end * 0.4]
    last = [s[key] for s in series if s["t"] >= end * 0.8]
    return second, last


def slope_per_min(series: list[dict], key: str, after: float = 0.2) -> float:
    """Least-squares slope of ``key`` per minute after the first ``after`` of the run."""
    if len(series) < 3:
        return 0.0
    end = series[-1]["t"]
    pts = [(s["t"], s[key]) for s in series if s["t"] >= end * after]
    if len(pts) < 3:
        return 0.0
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 60 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else 0.0


def judge(series: list[dict]) -> dict:
    """The second and last fifths of one daemon's series, compared (see :func:`violations`)."""
    out: dict = {}
    for key in ("rss", "fds", "tasks", "conns", "streams", "pyblocks"):
        second, last = fifths(series, key)
        if not second or not last:
            out[key] = None
            continue
        out[key] = {"second_median": statistics.median(second), "second_max": max(second),
                    "second_min": min(second), "last_median": statistics.median(last),
                    "last_max": max(last), "last_min": min(last),
                    "slope_per_min": round(slope_per_min(series, key), 2)}
    return out


#: The bounds, per daemon never restarted, between the second fifth of the run (after the
#: warm-up) and the last (tests/lab/test_lab_soak.py says why these numbers):
#: RSS: the floor (the lowest sample of the fifth: a fetch in flight lifts single samples
#: by up to ~20 MiB until the next trim, a leak lifts the floor) grows less than RSS_GROWTH
#: plus RSS_ALLOWANCE (the first 3 MiB file a daemon handles may leave its buffers'
#: high-water mark in the heap);
#: Python's allocated blocks (the objects): the median grows less than PYBLOCKS_GROWTH;
#: fds, tasks and streams: the last median at most the second fifth's maximum, plus what
#: more connections than then explain (PER_CONN_*), plus SLACK for requests in flight.
RSS_GROWTH = 0.05
RSS_ALLOWANCE = 8 << 20
PYBLOCKS_GROWTH = 0.05
PER_CONN_FDS = 1.0
PER_CONN_TASKS = 4.0
PER_CONN_STREAMS = 6.0
SLACK = 8


def violations(judged: dict[str, dict]) -> list[str]:
    """What broke the bounds, one line per daemon and quantity."""
    bad = []
    for name, j in judged.items():
        rss, conns = j.get("rss"), j.get("conns")
        if not rss:
            bad.append(f"{name}: too few samples")
            continue
        if rss["last_min"] > rss["second_min"] * (1 + RSS_GROWTH) + RSS_ALLOWANCE:
            bad.append(f"{name}: RSS floor {rss['second_min'] / (1 << 20):.1f} -> "
                       f"{rss['last_min'] / (1 << 20):.1f} MiB (> {RSS_GROWTH:.0%} + "
                       f"{RSS_ALLOWANCE >> 20} MiB)")
        blocks = j.get("pyblocks")
        if blocks and blocks["second_median"] and (
                blocks["last_median"] > blocks["second_median"] * (1 + PYBLOCKS_GROWTH)):
            bad.append(f"{name}: Python blocks {blocks['second_median']:.0f} -> "
                       f"{blocks['last_median']:.0f} (> {PYBLOCKS_GROWTH:.0%})")
        more_conns = max(0, conns["last_median"] - conns["second_max"])
        for key, per, slack in (("fds", PER_CONN_FDS, SLACK), ("tasks", PER_CONN_TASKS, SLACK),
                                ("streams", PER_CONN_STREAMS, 2 * SLACK)):
            q = j[key]
            allowed = q["second_max"] + per * more_conns + slack
            if q["last_median"] > allowed:
                bad.append(f"{name}: {key} {q['second_max']} -> {q['last_median']} "
                           f"(allowed {allowed:.0f} with {more_conns:.0f} more connections)")
    return bad
