"""Daemon configuration: defaults, ``config.toml`` and go-daemon flags, in that order of weight.

:class:`Config` is a plain value. :func:`resolve` builds it from the TOML document of
``$P2PD_HOME/config.toml`` (home mode only) and the flags that were set on the command
line: a flag always wins over the file, the file over the defaults. Every value is
validated here, so the node never sees a negative limit or an unparsable address.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .net.rcmgr import Limits

#: A home node listens on the well-known ports on every interface.
HOME_HOST_ADDRS = ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1",
                   "/ip4/0.0.0.0/tcp/4002/ws")
#: Channel security protocols, in the default order of preference (go-libp2p's).
SECURITY_PROTOCOLS = ("tls", "noise")
#: A harness-launched daemon (``-listen`` without config) takes any free port, like go's.
EPHEMERAL_HOST_ADDRS = ("/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1")

DEFAULT_CONFIG_TOML = """\
# p2pd configuration. Flags given on the command line override these values.
# Durations are written as Go does: "500ms", "30s", "2m".

[control]
# Control endpoint multiaddr (/unix/PATH or /ip4/127.0.0.1/tcp/PORT).
# Empty: the Unix socket $P2PD_HOME/p2pd.sock (mode 0600). A TCP address beyond loopback
# gives whoever reaches it this node: refused unless allow_remote (-allowRemoteControl).
listen = ""
allow_remote = false

[swarm]
# Swarm listen addresses (-hostAddrs) and addresses to announce instead (-announceAddrs);
# no_announce: addresses never announced, whole or by leading components, or networks as
# "/ip4/10.0.0.0/ipcidr/8" (kubo's Addresses.NoAnnounce).
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4002/ws"]
announce = []
no_announce = []
# Channel security protocols, most preferred first: "tls" (TLS 1.3) and "noise"; -tls=false
# and -noise=false take one out. Plaintext is never accepted.
security = ["tls", "noise"]
# QUIC v1 (-quic): listen on the /udp/.../quic-v1 addresses above and dial peers' QUIC
# addresses (before TCP when a peer offers both).
quic = true
# Ask the home router to forward the TCP listen ports (UPnP IGD, else NAT-PMP; -natPortMap);
# the mapped address is announced once AutoNAT confirms peers can reach it.
port_map = true

[connmgr]
# Keep connections between low and high; new connections are safe for `grace`.
enabled = true
low = 256
high = 512
grace = "120s"

[limits]
# Largest control-socket message, in bytes.
max_control_frame = 4194304
# A control client that sends nothing for this long is disconnected.
control_idle_timeout = "30s"
# Connections per remote peer, streams per connection, concurrent control-socket clients.
max_conns_per_peer = 8
max_streams_per_conn = 512
max_control_clients = 256
# The resource manager (docs/daemon.md "Limits"): over a limit a new connection is closed
# before its handshake, a new stream is reset; what is open goes on. 0: no limit.
max_conns = 1024
max_conns_inbound = 768
max_conns_outbound = 768
# Inbound connections from one IP, from one /24 (IPv4) or /56 (IPv6), still handshaking.
max_conns_per_ip = 16
max_conns_per_subnet = 64
max_pending_inbound = 64
# Streams in total, inbound from one peer, inbound of one protocol; ours to one peer,
# ours of one protocol.
max_streams = 8192
max_streams_inbound_per_peer = 1024
max_streams_per_protocol = 4096
max_streams_outbound_per_peer = 1024
max_streams_outbound_per_protocol = 4096
# Receive windows and unread buffers all muxers may hold ("256MiB" or bytes), and how
# much of that one peer's connections may hold ("0": no per-peer cap).
memory = "256MiB"
memory_per_peer = "128MiB"
# New inbound connections per second per IP (0: no cap) and the burst allowed.
inbound_rate = 5.0
inbound_burst = 20
# Loopback (127.0.0.0/8, ::1) skips the per-IP, per-subnet and rate limits.
exempt_loopback = true
# Caps for a home uplink: bytes per second all streams together may send / read on
# ("1MiB", "500kB" or bytes; 0: no cap). A capped download slows the peers through
# their flow control. Counters and rates: `p2pd stats bw`.
max_upload_rate = 0
max_download_rate = 0

[perf]
# Answer the libp2p perf protocol (/perf/1.0.0), up to max_bytes per request. Off by
# default: any peer could pull max_bytes per request through a home uplink.
enabled = false
max_bytes = 1073741824

[blockstore]
# In-memory LRU of recently read blocks, in MiB (0 turns it off).
cache_mib = 64

[datastore]
# Most the repo may take on disk ("10GB", "512MiB" or bytes; 0: no limit). When it passes
# gc_watermark percent of that, unpinned blocks are collected automatically (pins and
# blocks of operations in progress stay), as kubo's Datastore.StorageMax/StorageGCWatermark.
storage_max = "10GB"
gc_watermark = 90
# RocksDB's write buffer (memtable), in MiB: writes collect in memory up to this much
# before they are flushed to a table file, so RSS grows by up to about this much.
memtable_mib = 64
# RocksDB's own cache of table blocks it read, in MiB (RocksDB's default 32), behind the
# [blockstore] LRU; RSS grows by up to this much as stored blocks are read back.
block_cache_mib = 32

[bitswap]
# Trade blocks with /ipfs/bitswap/1.2.0 (1.1.0, 1.0.0). `provide`: what `p2pd add`
# announces on the DHT: "roots" (the added root CIDs), "all" (every block) or "none".
enabled = true
provide = "roots"

[dht]
# Kademlia on /ipfs/kad/1.0.0: "server" answers queries (a home node with a public or
# forwarded port), "client" only asks; "auto" is a client until AutoNAT finds the node
# reachable from the internet, then a server (and back when it stops being reachable).
enabled = true
mode = "auto"   # auto, server or client

[autonat]
# The client asks peers serving AutoNAT (v2, else v1) to dial us back, to learn whether
# we are reachable from the internet and on which addresses (those get announced).
# `service`: answer such requests for others (dial-backs from a separate identity, rate
# limited). `force`: "public" or "private" instead of asking (-forceReachability*).
client = true
service = false
force = ""
confidence = 3

[relay]
# Circuit relay v2. `client`: dial /p2p-circuit addresses and accept relayed connections.
# `auto`: while AutoNAT says private, hold reservations at `trusted` relays (multiaddrs
# with /p2p/ID) or, without any, at connected peers offering relay service, and announce
# the relay addresses. `service`: relay for others (limits as the go daemon's flags).
client = true
auto = true
trusted = []
service = false

[pubsub]
# Gossipsub (or "floodsub") on /meshsub/1.1.0; a daemon started with -listen (harness
# mode) follows the go daemon instead: pubsub only with -pubsub.
enabled = true
router = "gossipsub"

[http]
# The status page (/) and the read-only IPFS gateway (/ipfs/CID[/path]) on one local
# HTTP listener, "host:port" ("" turns it off; -httpAddr overrides). Anything that can
# reach it can read every block the node has or can fetch: keep it on 127.0.0.1.
listen = "127.0.0.1:8080"
# How long the gateway waits for one block it does not have (then 504).
block_timeout = "30s"

[metrics]
# Prometheus metrics at /metrics ("host:port"; "" is off; -metricsAddr overrides). A bare
# ":port" means 127.0.0.1:port.
listen = ""

[log]
# debug, info, warning or error (-v: info, -vv: debug, -q: error). Below debug each event
# is one line; tracebacks are shown at debug only.
level = "warning"

[bootstrap]
# Join the network through these peers at start. Empty: the public IPFS bootstrap peers
# (/dnsaddr/bootstrap.libp2p.io, resolved via DNS). The environment variable
# P2PD_BOOTSTRAP_PEERS (comma-separated multiaddrs, or "none") overrides this table.
enabled = true
peers = []
# DNS resolver for /dnsaddr (host:port); empty: the first nameserver in /etc/resolv.conf.
dns_resolver = ""
"""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKMGTP]i?B|B)?$")
_SIZE_UNIT = {"B": 1, **{f"{p}B": 1000 ** (i + 1) for i, p in enumerate("kMGTP")},
              **{f"{p}iB": 1024 ** (i + 1) for i, p in enumerate("KMGTP")}, "KB": 1000}


def parse_size(text: str | int) -> int:
    """Bytes from ``"10GB"`` (powers of 1000, as kubo writes them), ``"512MiB"`` (of
    1024) or a bare number of bytes."""
    if isinstance(text, bool):
        raise ConfigError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"size must not be negative: {text}")
        return text
    m = _SIZE.match(text.strip())
    if m is None:
        raise ConfigError(f"invalid size {text!r} (examples: 10GB, 512MiB, 1000000)")
    return int(float(m.group(1)) * _SIZE_UNIT[m.group(2) or "B"])


def parse_duration(text: str | int | float) -> float:
    """Parse a Go duration (``"1m30s"``, ``"250ms"``) into seconds; bare numbers are seconds."""
    if isinstance(text, bool):
        raise ConfigError(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ConfigError(f"duration must not be negative: {text}")
        return float(text)
    s = text.strip()
    if s in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ConfigError(f"invalid duration {text!r} (examples: 500ms, 30s, 2m)")
    return total


@dataclass(slots=True)
class Config:
    """Everything a node and its control socket need; defaults are a harness daemon's."""

    control_listen: str | None = None
    #: ``-allowRemoteControl`` / ``[control] allow_remote``: a TCP control listener beyond
    #: loopback is refused without it
    allow_remote_control: bool = False
    host_addrs: list[str] = field(default_factory=lambda: list(EPHEMERAL_HOST_ADDRS))
    announce_addrs: list[str] = field(default_factory=list)
    identity_file: str | None = None
    quiet: bool = False
    #: ``[log] level``; -v info, -vv debug, -q error; P2PD_DEBUG_LOG between file and flags
    log_level: str = "warning"
    conn_manager: bool = False
    conn_low: int = 256
    conn_high: int = 512
    conn_grace: float = 120.0
    max_control_frame: int = 4 << 20
    control_idle_timeout: float = 30.0
    max_conns_per_peer: int = 8
    max_streams_per_conn: int = 512
    max_control_clients: int = 256
    #: ``[limits] max_upload_rate`` / ``max_download_rate``: node-wide caps on the bytes
    #: streams send / read on, per second (0: none)
    max_upload_rate: int = 0
    max_download_rate: int = 0
    #: the resource manager's other limits (``[limits]``; p2pd/net/rcmgr.py)
    limits: Limits = field(default_factory=Limits)
    blockstore_cache_bytes: int = 64 << 20
    #: ``[datastore] storage_max`` in bytes (0: no limit) and the percent of it at which
    #: automatic gc runs.
    storage_max: int = 0
    gc_watermark: int = 90
    #: ``[datastore] memtable_mib`` in bytes: RocksDB's write buffer
    memtable_bytes: int = 64 << 20
    #: ``[datastore] block_cache_mib`` in bytes: RocksDB's block cache
    db_cache_bytes: int = 32 << 20
    perf: bool = False
    perf_max_bytes: int = 1 << 30
    bitswap: bool = True
    provide: str = "roots"
    dht: bool = False
    dht_mode: str = "auto"
    pubsub: bool = False
    pubsub_router: str = "gossipsub"
    pubsub_sign: bool = True
    pubsub_strict: bool = True
    bootstrap: bool = False
    bootstrap_peers: list[str] = field(default_factory=list)
    dns_resolver: str = ""
    #: ``-b`` as the go daemon does it: connect to bootstrap peers before the ready lines
    #: and refuse to start when none answers (a home node's config joins in the background).
    bootstrap_strict: bool = False
    #: Addresses (or ``/ip4/NET/ipcidr/BITS`` filters) never announced (kubo's NoAnnounce).
    no_announce: list[str] = field(default_factory=list)
    #: ``-noListenAddrs``: no swarm listener at all (outbound connections only).
    no_listen: bool = False
    #: AutoNAT: the client (reachability, confirmed addresses; home config), the service
    #: (``-autonat``), a forced answer (``-forceReachabilityPublic|Private``), how many
    #: servers must agree, and how often to ask while the answer is unknown.
    autonat_client: bool = False
    autonat_service: bool = False
    force_reachability: str = ""
    autonat_confidence: int = 3
    autonat_probe_interval: float = 15.0
    #: circuit relay v2: the client (``-relay``), AutoRelay (``-autoRelay``,
    #: ``-trustedRelays``) and the service (``-relayService``) with its limits
    #: ``-natPortMap``: keep UPnP IGD / NAT-PMP mappings of the TCP listen ports on the router
    nat_port_map: bool = False
    relay: bool = True
    auto_relay: bool = False
    trusted_relays: list[str] = field(default_factory=list)
    relay_service: bool = True
    relay_max_reservations: int = 128
    relay_max_circuits: int = 16
    relay_time_limit: float = 1800.0
    relay_data_limit: int = 1 << 32
    relay_buffer_size: int = 16 << 20
    #: ``-muxer``: the stream muxer offered first (the other one stays as a fallback).
    muxer: str = "yamux"
    #: ``[swarm] security``, ``-tls``, ``-noise``: channel security, most preferred first.
    security: list[str] = field(default_factory=lambda: list(SECURITY_PROTOCOLS))
    #: ``[swarm] quic``, ``-quic``: the QUIC v1 transport (on, as the go daemon's).
    quic: bool = True
    #: Gossipsub heartbeat interval and initial delay in seconds; 0 keeps the router's.
    gossipsub_heartbeat_interval: float = 0.0
    gossipsub_heartbeat_initial_delay: float = 0.0
    #: ``-echo``: serve /echo/1.0.0 (the upstream daemon's echo protocol).
    echo: bool = False
    #: ``(host, port)`` of the status page and gateway listener, and of the metrics one
    #: (None: off; ``[http] listen``/``-httpAddr``, ``[metrics] listen``/``-metricsAddr``)
    http_listen: tuple[str, int] | None = None
    metrics_listen: tuple[str, int] | None = None
    http_block_timeout: float = 30.0
    #: ``-pprof`` / ``-pprofPort``: the debug handler (/debug/pprof/) on localhost; port 0:
    #: any free one (said at start)
    pprof: bool = False
    pprof_port: int = 0
    #: hivemind fork: exit when no persistent control connection is open for this many
    #: seconds (0 = never).
    idle_timeout: float = 0.0
    #: hivemind fork: largest message on a persistent control connection, in bytes.
    persistent_conn_max_msg_size: int = 4 << 20
    #: Go flags accepted whose behaviour is not implemented yet, as ``-name=value``;
    #: the daemon names them in one line at start.
    not_implemented: list[str] = field(default_factory=list)

    def validate(self) -> Config:
        """Refuse values the node cannot run with; return ``self``."""
        if self.conn_low < 0 or self.conn_high < 1 or self.conn_low > self.conn_high:
            raise ConfigError(
                f"connection manager needs 0 <= connLo <= connHi and connHi >= 1 "
                f"(got connLo={self.conn_low}, connHi={self.conn_high})",
                key="connmgr.low" if self.conn_low < 0 or self.conn_high >= 1 else "connmgr.high")
        if not 64 <= self.max_control_frame <= 1 << 30:
            raise ConfigError("limits.max_control_frame must be between 64 and 2**30 bytes",
                              key="limits.max_control_frame")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"[log] level must be debug, info, warning or error "
                              f"(got {self.log_level!r})", key="log.level")
        if self.http_block_timeout <= 0:
            raise ConfigError("[http] block_timeout must be positive", key="http.block_timeout")
        if self.control_idle_timeout <= 0:
            raise ConfigError("limits.control_idle_timeout must be positive",
                              key="limits.control_idle_timeout")
        if self.max_conns_per_peer < 1 or self.max_control_clients < 1:
            raise ConfigError("limits.max_conns_per_peer and max_control_clients must be >= 1",
                              key="limits.max_conns_per_peer" if self.max_conns_per_peer < 1
                              else "limits.max_control_clients")
        if self.max_streams_per_conn < 1:
            raise ConfigError("limits.max_streams_per_conn must be >= 1",
                              key="limits.max_streams_per_conn")
        if not 0 <= self.perf_max_bytes <= 1 << 40:
            raise ConfigError("perf.max_bytes must be between 0 and 2**40", key="perf.max_bytes")
        if not 0 <= self.blockstore_cache_bytes <= 1 << 40:
            raise ConfigError("blockstore.cache_mib must be between 0 and 1048576",
                              key="blockstore.cache_mib")
        if not 1 << 20 <= self.memtable_bytes <= 1 << 30:
            raise ConfigError("datastore.memtable_mib must be 1-1024",
                              key="datastore.memtable_mib")
        if not 1 << 20 <= self.db_cache_bytes <= 1 << 34:
            raise ConfigError("datastore.block_cache_mib must be 1-16384",
                              key="datastore.block_cache_mib")
        if self.storage_max < 0:
            raise ConfigError("datastore.storage_max must not be negative",
                              key="datastore.storage_max")
        if not 1 <= self.gc_watermark <= 100:
            raise ConfigError(f"datastore.gc_watermark is a percent: 1 to 100 "
                              f"(got {self.gc_watermark})", key="datastore.gc_watermark")
        if self.pubsub and self.pubsub_router not in ("gossipsub", "floodsub"):
            # as go: only a daemon with pubsub on looks at its router
            raise ConfigError(f"unknown pubsub router {self.pubsub_router!r} "
                              "(gossipsub or floodsub)", key="pubsub.router")
        if self.provide not in ("roots", "all", "none"):
            raise ConfigError(f"bitswap.provide must be roots, all or none (got {self.provide!r})",
                              key="bitswap.provide")
        if self.dht_mode not in ("auto", "server", "client"):
            raise ConfigError(f"unknown DHT mode {self.dht_mode!r} (auto, server or client)",
                              key="dht.mode")
        if self.force_reachability not in ("", "public", "private"):
            raise ConfigError(f"[autonat] force must be \"public\", \"private\" or \"\", "
                              f"not {self.force_reachability!r}", key="autonat.force")
        if self.autonat_confidence < 1:
            raise ConfigError("[autonat] confidence must be at least 1", key="autonat.confidence")
        if self.muxer not in ("yamux", "mplex"):
            raise ConfigError(f"unknown muxer {self.muxer!r} (yamux or mplex)")
        for name in self.security:
            if name not in SECURITY_PROTOCOLS:
                raise ConfigError(f"unknown security protocol {name!r} in swarm.security "
                                  f"(tls or noise; plaintext is never accepted)",
                                  key="swarm.security")
        if len(set(self.security)) != len(self.security):
            raise ConfigError(f"swarm.security names a protocol twice: {self.security}",
                              key="swarm.security")
        if not self.security:
            raise ConfigError("at least one channel security protocol must be enabled "
                              "(tls or noise; p2pd never runs plaintext)", key="swarm.security")
        for name, value in (
            ("connGrace", self.conn_grace),
            ("idleTimeout", self.idle_timeout),
            ("gossipsubHeartbeatInterval", self.gossipsub_heartbeat_interval),
            ("gossipsubHeartbeatInitialDelay", self.gossipsub_heartbeat_initial_delay),
        ):
            if value < 0:
                raise ConfigError(f"-{name} must not be negative (got {value:g}s)")
        if not 1 <= self.persistent_conn_max_msg_size <= 1 << 31:
            raise ConfigError(
                "-persistentConnMaxMsgSize must be between 1 and 2**31 bytes "
                f"(got {self.persistent_conn_max_msg_size})"
            )
        for key, addrs in (("swarm.listen", self.host_addrs),
                           ("swarm.announce", self.announce_addrs),
                           ("bootstrap.peers", self.bootstrap_peers),
                           ("swarm.no_announce", self.no_announce)):
            for addr in addrs:
                if not addr.startswith("/"):
                    raise ConfigError(f"{addr!r} is not a multiaddr (it must start with '/')",
                                      key=key)
        for addr in self.trusted_relays:
            if not addr.startswith("/") or "/p2p/" not in addr:
                raise ConfigError(f"trusted relay {addr!r} must be a multiaddr ending in "
                                  "/p2p/PEER_ID", key="relay.trusted")
        return self


def resolve_file(flags: dict[str, Any], path: Path) -> Config:
    """:func:`resolve` for a home: ``config.toml`` read from ``path`` and checked alone
    first, so an unknown key or a bad value in it is named with the file and its line
    (``config.toml:12: datastore.gc_watermark is a percent ...``); then the flags."""
    text = read_config_text(path)
    doc = parse_config_text(text, path)
    try:
        resolve({}, doc)
    except ConfigError as exc:
        raise located(exc, path, text) from None
    return resolve(flags, doc)


def located(exc: ConfigError, path: Path, text: str) -> ConfigError:
    """``exc`` with the file and line of each value it names put in front."""
    from .tomlfile import key_line

    if not exc.problems:
        return ConfigError(f"{path}: {str(exc).removeprefix('config: ')}")
    lines = []
    for key, message in exc.problems:
        line = key_line(text, key)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {message.removeprefix('config: ')}")
    return ConfigError("\n".join(lines), problems=exc.problems)


def read_config_text(path: Path) -> str:
    """The text of ``config.toml`` ("" when there is none)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def parse_config_text(text: str, path: Path) -> dict[str, Any]:
    """The TOML document; a syntax error is ``PATH:LINE:COLUMN: what``, as compilers
    write it (editors jump there)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{m.group(2)}:{m.group(3)}: {m.group(1)}" if m else f"{path}: {exc}"
        raise ConfigError(f"{where} (TOML syntax)") from None


def load_toml(path: Path) -> dict[str, Any]:
    """Read ``config.toml``; a syntax error names the file and line."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_default_config(path: Path) -> bool:
    """Create ``config.toml`` with the documented defaults unless it exists."""
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write(DEFAULT_CONFIG_TOML)
    except FileExistsError:
        return False
    return True


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false",
               float: "a number"}


def _get_value(doc: dict[str, Any], section: str, key: str, kind: type | tuple,
               default: Any, seen: set[str] | None = None) -> Any:
    if seen is not None:
        seen.add(f"{section}.{key}")
    table = doc.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{section}] must be a table", key=section)
    if key not in table:
        return default
    value = table[key]
    where = f"{section}.{key}"
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config: {where} must be a list of strings", key=where)
        return list(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise ConfigError(f"config: {where} has the wrong type ({value!r}; it must be "
                          f"{wanted})", key=where)
    return value


def _parsed(key: str, parse, value: Any) -> Any:
    """``parse(value)`` (a size, a duration, an address) with errors naming ``key``."""
    try:
        return parse(value)
    except ConfigError as exc:
        message = str(exc)
        section, name = key.split(".", 1)
        named = key in message or f"[{section}] {name}" in message
        raise ConfigError(message if named else f"config: {key}: {message}", key=key) from None


def _check_known(doc: dict[str, Any], seen: set[str]) -> None:
    """Every table and key of ``config.toml`` is one p2pd reads: a misspelt key would
    otherwise be ignored and its default used without a word."""
    import difflib

    sections = {k.split(".", 1)[0] for k in seen}
    problems = []
    for section, table in doc.items():
        if section not in sections:
            near = difflib.get_close_matches(section, sorted(sections), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else (
                f" (known tables: {', '.join(sorted(sections))})")
            problems.append((section, f"unknown table [{section}]{hint}"))
            continue
        if not isinstance(table, dict) or section == "limits":  # limits: checked by
            continue                                            # limits_from_toml
        known = sorted(k.split(".", 1)[1] for k in seen if k.startswith(section + "."))
        for key in table:
            if f"{section}.{key}" in seen:
                continue
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(known)}"
            problems.append((f"{section}.{key}", f"unknown key {section}.{key} ({hint})"))
    if problems:
        raise ConfigError("\n".join(f"config: {m}" for _, m in problems), problems=problems)


def resolve(flags: dict[str, Any], doc: dict[str, Any] | None = None) -> Config:
    """Build the config from the TOML document (home mode) and the flags that were set.

    ``doc is None`` is harness mode: the go daemon's defaults (no connection manager,
    ephemeral swarm port). With a document, its values replace the defaults; any flag
    present in ``flags`` wins over both.
    """
    c = Config()
    if doc is not None:
        from dataclasses import fields

        seen: set[str] = {f"limits.{f.name}" for f in fields(Limits)} | {
            f"limits.{k}" for k in _OTHER_LIMIT_KEYS}

        def _get(doc, section, key, kind, default):  # records what is read
            return _get_value(doc, section, key, kind, default, seen)

        c.control_listen = _get(doc, "control", "listen", str, "") or None
        c.allow_remote_control = _get(doc, "control", "allow_remote", bool, False)
        c.host_addrs = _get(doc, "swarm", "listen", list, list(HOME_HOST_ADDRS))
        c.announce_addrs = _get(doc, "swarm", "announce", list, [])
        c.no_announce = _get(doc, "swarm", "no_announce", list, [])
        c.security = _get(doc, "swarm", "security", list, list(SECURITY_PROTOCOLS))
        c.quic = _get(doc, "swarm", "quic", bool, True)
        c.conn_manager = _get(doc, "connmgr", "enabled", bool, True)
        c.conn_low = _get(doc, "connmgr", "low", int, c.conn_low)
        c.conn_high = _get(doc, "connmgr", "high", int, c.conn_high)
        c.conn_grace = _parsed("connmgr.grace", parse_duration,
                               _get(doc, "connmgr", "grace", (str, int, float), "120s"))
        c.max_control_frame = _get(doc, "limits", "max_control_frame", int, c.max_control_frame)
        c.control_idle_timeout = _parsed("limits.control_idle_timeout", parse_duration,
            _get(doc, "limits", "control_idle_timeout", (str, int, float), "30s"))
        c.max_conns_per_peer = _get(doc, "limits", "max_conns_per_peer", int, 8)
        c.max_streams_per_conn = _get(doc, "limits", "max_streams_per_conn", int, 512)
        c.max_control_clients = _get(doc, "limits", "max_control_clients", int, 256)
        c.max_upload_rate = _parsed("limits.max_upload_rate", parse_size,
                                    _get(doc, "limits", "max_upload_rate", (str, int), 0))
        c.max_download_rate = _parsed("limits.max_download_rate", parse_size,
                                      _get(doc, "limits", "max_download_rate", (str, int), 0))
        c.limits = limits_from_toml(doc.get("limits", {}))
        c.blockstore_cache_bytes = _get(doc, "blockstore", "cache_mib", int, 64) << 20
        c.storage_max = _parsed("datastore.storage_max", parse_size,
                                _get(doc, "datastore", "storage_max", (str, int), "10GB"))
        c.gc_watermark = _get(doc, "datastore", "gc_watermark", int, 90)
        c.memtable_bytes = _get(doc, "datastore", "memtable_mib", int, 64) << 20
        c.db_cache_bytes = _get(doc, "datastore", "block_cache_mib", int, 32) << 20
        c.perf = _get(doc, "perf", "enabled", bool, False)
        c.perf_max_bytes = _get(doc, "perf", "max_bytes", int, 1 << 30)
        c.bitswap = _get(doc, "bitswap", "enabled", bool, True)
        c.provide = _get(doc, "bitswap", "provide", str, "roots")
        c.dht = _get(doc, "dht", "enabled", bool, True)
        c.dht_mode = _get(doc, "dht", "mode", str, "auto")
        c.autonat_client = _get(doc, "autonat", "client", bool, True)
        c.autonat_service = _get(doc, "autonat", "service", bool, False)
        c.force_reachability = _get(doc, "autonat", "force", str, "")
        c.autonat_confidence = _get(doc, "autonat", "confidence", int, 3)
        c.nat_port_map = _get(doc, "swarm", "port_map", bool, True)
        c.relay = _get(doc, "relay", "client", bool, True)
        c.auto_relay = _get(doc, "relay", "auto", bool, True)
        c.trusted_relays = _get(doc, "relay", "trusted", list, [])
        c.relay_service = _get(doc, "relay", "service", bool, False)
        c.pubsub = _get(doc, "pubsub", "enabled", bool, True)
        c.pubsub_router = _get(doc, "pubsub", "router", str, "gossipsub")
        c.bootstrap = _get(doc, "bootstrap", "enabled", bool, True)
        c.bootstrap_peers = _get(doc, "bootstrap", "peers", list, [])
        c.dns_resolver = _get(doc, "bootstrap", "dns_resolver", str, "")
        c.http_listen = _parsed("http.listen", lambda v: parse_http_addr(v, "[http] listen"),
                                _get(doc, "http", "listen", str, "127.0.0.1:8080"))
        c.log_level = _get(doc, "log", "level", str, "warning").lower()
        c.http_block_timeout = _parsed("http.block_timeout", parse_duration,
            _get(doc, "http", "block_timeout", (str, int, float), "30s"))
        c.metrics_listen = _parsed("metrics.listen",
                                   lambda v: parse_http_addr(v, "[metrics] listen"),
                                   _get(doc, "metrics", "listen", str, ""))
        _check_known(doc, seen)
    env_peers = os.environ.get("P2PD_BOOTSTRAP_PEERS")
    if env_peers is not None:  # between config.toml and the flags
        if env_peers.strip().lower() == "none":
            c.bootstrap, c.bootstrap_peers = False, []
        else:
            c.bootstrap_peers = _split(env_peers)
    if "listen" in flags:
        c.control_listen = flags["listen"]
    if "allowRemoteControl" in flags:
        c.allow_remote_control = flags["allowRemoteControl"]
    if "id" in flags:
        c.identity_file = flags["id"]
    if flags.get("hostAddrs"):  # empty, as go: the default addresses
        c.host_addrs = _split(flags["hostAddrs"])
    if flags.get("announceAddrs"):
        c.announce_addrs = _split(flags["announceAddrs"])
    if flags.get("noAnnounce"):
        c.no_announce = _split(flags["noAnnounce"])
    if flags.get("autonat"):
        c.autonat_service = True
    if flags.get("autonatClient"):
        c.autonat_client = True
    if "natPortMap" in flags:
        c.nat_port_map = flags["natPortMap"]
    for flag, name in (("relay", "relay"), ("relayService", "relay_service"),
                       ("autoRelay", "auto_relay"), ("relayMaxReservations",
                       "relay_max_reservations"), ("relayMaxCircuits", "relay_max_circuits"),
                       ("relayDataLimit", "relay_data_limit"),
                       ("relayBufferSize", "relay_buffer_size")):
        if flag in flags:
            setattr(c, name, flags[flag])
    if "relayTimeLimit" in flags:
        c.relay_time_limit = _duration_flag(flags, "relayTimeLimit")
    if flags.get("trustedRelays"):
        c.trusted_relays = _split(flags["trustedRelays"])
    if "autonatConfidence" in flags:
        c.autonat_confidence = flags["autonatConfidence"]
    if flags.get("forceReachabilityPublic"):
        c.force_reachability = "public"
    elif flags.get("forceReachabilityPrivate"):
        c.force_reachability = "private"
    if "quiet" in flags or "q" in flags:
        c.quiet = flags.get("q", False) or flags.get("quiet", False)
    from .logs import level_from_env

    c.log_level = level_from_env(c.log_level)
    if c.quiet:
        c.log_level = "error"
    if flags.get("v"):
        c.log_level = "info"
    if flags.get("vv"):
        c.log_level = "debug"
    if "connManager" in flags:
        c.conn_manager = flags["connManager"]
    if "connLo" in flags:
        c.conn_low = flags["connLo"]
    if "connHi" in flags:
        c.conn_high = flags["connHi"]
    if "connGrace" in flags:
        c.conn_grace = _duration_flag(flags, "connGrace")
    if any(name in flags for name in ("dht", "dhtServer", "dhtClient")):
        # -dht=false (all three false) turns a home node's DHT off
        c.dht = bool(flags.get("dht") or flags.get("dhtServer") or flags.get("dhtClient"))
        if c.dht:  # go's precedence when several are given: -dht, then -dhtClient
            c.dht_mode = (
                "auto" if flags.get("dht")
                else "client" if flags.get("dhtClient") else "server"
            )
    if "pubsub" in flags:
        c.pubsub = flags["pubsub"]
    if "pubsubRouter" in flags:
        c.pubsub_router = flags["pubsubRouter"]
    if "pubsubSign" in flags:
        c.pubsub_sign = flags["pubsubSign"]
    if "pubsubSignStrict" in flags:
        c.pubsub_strict = flags["pubsubSignStrict"]
    if "bootstrap" in flags or "b" in flags:
        c.bootstrap = flags.get("b", False) or flags.get("bootstrap", False)
        # go's -b refuses to start when no bootstrap peer answers; our -bootstrap (and
        # [bootstrap] in config.toml) joins in the background and retries
        c.bootstrap_strict = flags.get("b", False)
    if "bootstrapPeers" in flags:
        if flags["bootstrapPeers"].strip().lower() == "none":  # as P2PD_BOOTSTRAP_PEERS=none
            if c.bootstrap_strict:
                raise ConfigError("-b needs bootstrap peers, and -bootstrapPeers none names none")
            c.bootstrap, c.bootstrap_peers = False, []
        else:
            c.bootstrap_peers = _split(flags["bootstrapPeers"])
    if "idleTimeout" in flags:
        c.idle_timeout = _duration_flag(flags, "idleTimeout")
    if "persistentConnMaxMsgSize" in flags:
        c.persistent_conn_max_msg_size = flags["persistentConnMaxMsgSize"]
    if "noListenAddrs" in flags:
        c.no_listen = flags["noListenAddrs"]
    if "muxer" in flags:
        c.muxer = flags["muxer"]
    for name in SECURITY_PROTOCOLS:  # -tls / -noise: on (kept in place, or last) or off
        if flags.get(name) is False:
            c.security = [p for p in c.security if p != name]
        elif flags.get(name) and name not in c.security:
            c.security = [*c.security, name]
    if "quic" in flags:
        c.quic = flags["quic"]
    if "gossipsubHeartbeatInterval" in flags:
        c.gossipsub_heartbeat_interval = _duration_flag(flags, "gossipsubHeartbeatInterval")
    if "gossipsubHeartbeatInitialDelay" in flags:
        c.gossipsub_heartbeat_initial_delay = _duration_flag(
            flags, "gossipsubHeartbeatInitialDelay"
        )
    if "echo" in flags:
        c.echo = flags["echo"]
    if flags.get("metricsAddr"):  # "" (go's default): as configured
        c.metrics_listen = parse_http_addr(flags["metricsAddr"], "-metricsAddr")
    if flags.get("httpAddr"):
        c.http_listen = parse_http_addr(flags["httpAddr"], "-httpAddr")
    if "pprof" in flags:
        c.pprof = flags["pprof"]
    if "pprofPort" in flags:
        c.pprof_port = flags["pprofPort"]
    _check_go_combinations(flags, c)
    c.not_implemented = not_implemented_flags(flags)
    return c.validate()


#: ``[limits]`` keys that are not resource manager fields (the control socket's, and the
#: two older swarm limits kept as Config fields)
_OTHER_LIMIT_KEYS = ("max_control_frame", "control_idle_timeout", "max_control_clients",
                     "max_upload_rate", "max_download_rate",
                     "max_conns_per_peer", "max_streams_per_conn")


def limits_from_toml(table: Any) -> Limits:
    """The resource manager's limits from ``[limits]``; a bad value is a ConfigError
    naming ``limits.KEY``."""
    from dataclasses import fields

    if not isinstance(table, dict):
        raise ConfigError("config: [limits] must be a table")
    limits = Limits()
    known = {f.name: f for f in fields(Limits)}
    for key, value in table.items():
        if key in _OTHER_LIMIT_KEYS:
            continue
        if key not in known:
            names = ", ".join(sorted(set(known) - set(_OTHER_LIMIT_KEYS)))
            raise ConfigError(f"config: unknown key limits.{key} (known: {names})",
                              key=f"limits.{key}")
        default = getattr(limits, key)
        try:
            if key in ("memory", "memory_per_peer") and isinstance(value, str):
                value = parse_size(value)
            elif isinstance(default, float) and isinstance(value, int) \
                    and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ConfigError(f"must be {type(default).__name__}, not {value!r}")
            setattr(limits, key, value)
            Limits(**{key: value}).check()
        except (ConfigError, ValueError) as exc:
            message = str(exc).removeprefix(f"{key} ")
            raise ConfigError(f"config: limits.{key}: {message}", key=f"limits.{key}") from None
    return limits


def parse_http_addr(text: str, where: str) -> tuple[str, int] | None:
    """``(host, port)`` from ``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":9090"`` or
    ``"9090"`` (both: 127.0.0.1), or ``/ip4|ip6/HOST/tcp/PORT``; ``""``, ``"off"`` or
    ``"none"``: None. Only an explicit host listens beyond loopback."""
    import ipaddress

    t = text.strip()
    if t.lower() in ("", "off", "none", "false"):
        return None
    if t.startswith("/"):
        parts = t.split("/")
        if len(parts) != 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
            raise ConfigError(f"{where}: {text!r} is not /ip4|ip6/HOST/tcp/PORT")
        host, port_text = parts[2], parts[4]
    else:
        host, sep, port_text = t.rpartition(":")
        if not sep:
            host, port_text = "", t
        host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{where}: {host!r} is not an IP address (write 127.0.0.1:PORT)"
                          ) from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}: port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def _duration_flag(flags: dict[str, Any], name: str) -> float:
    """A duration flag in seconds (Go's flag parser allows negative ones; we do not)."""
    value = flags[name]
    seconds = value if isinstance(value, float) else parse_duration(value)
    if seconds < 0:
        raise ConfigError(f"-{name} must not be negative (got {seconds:g}s)")
    return seconds


#: Go flags p2pd accepts with the go daemon's syntax and defaults but does not act on
#: (plaintext: refused by design, every connection is secured); named at start when
#: asked for.
NOT_IMPLEMENTED_FLAGS = (
    "plaintext",
)


def not_implemented_flags(flags: dict[str, Any]) -> list[str]:
    """``-name=value`` for each flag given that asks for something not implemented yet.

    A flag counts when its value asks for something: true, a non-empty string, a
    non-zero number (``-relay=false``, ``-metricsAddr=""`` ask for what p2pd does anyway).
    """
    out = []
    for name in NOT_IMPLEMENTED_FLAGS:
        if not flags.get(name):
            continue
        value = flags[name]
        out.append(f"-{name}" + ("" if value is True else f"={value:g}s" if isinstance(value, float)
                                 else f"={value}"))
    return out


def _check_go_combinations(flags: dict[str, Any], c: Config) -> None:
    """The combinations the go daemon refuses, refused with its words."""
    if flags.get("forceReachabilityPublic") and flags.get("forceReachabilityPrivate"):
        raise ConfigError("forceReachability must be public or private, not both")
    if not flags.get("noise", True) and not flags.get("tls", True) and not flags.get("plaintext"):
        raise ConfigError("at least one channel security protocol must be enabled")
    relay, auto = flags.get("relay", True), flags.get("autoRelay", False)
    if flags.get("trustedRelays"):
        if not relay:
            raise ConfigError("found trustedRelays but relays are not enabled, expected -relay=1")
        if not auto:
            raise ConfigError("found trustedRelays but autoRelay is not enabled, "
                              "expected -autoRelay=1")
    if auto and not flags.get("relayDiscovery", True) and not flags.get("trustedRelays"):
        raise ConfigError("a daemon with autoRelay requires either -relayDiscovery=1 or "
                          "-trustedRelays=$STATIC_RELAYS_HERE")
    if auto and (not relay or not c.dht):
        raise ConfigError("can't have autorelay enabled without Relay enabled and DHT enabled")


# -- the upstream daemon's JSON config (-f FILE, -i) -------------------------------------

#: go-libp2p-daemon's config/config.go, field by field: the flag each one stands for.
#: Go's encoding/json matches names case-insensitively, so do we.
_JSON_FIELDS: dict[str, Any] = {
    "ListenAddr": ("listen", "maddr"),
    "Quiet": ("q", bool),
    "ID": ("id", str),
    "Bootstrap": {"Enabled": ("b", bool), "Peers": ("bootstrapPeers", "maddrs")},
    "DHT": {"Mode": ("dht-mode", str)},
    "ConnectionManager": {
        "Enabled": ("connManager", bool),
        "LowWaterMark": ("connLo", int),
        "HighWaterMark": ("connHi", int),
        "GracePeriod": ("connGrace", "duration"),
    },
    "QUIC": ("quic", bool),
    "NatPortMap": ("natPortMap", bool),
    "PubSub": {
        "Enabled": ("pubsub", bool),
        "Router": ("pubsubRouter", str),
        "Sign": ("pubsubSign", bool),
        "SignStrict": ("pubsubSignStrict", bool),
        "GossipSubHeartbeat": {
            "Interval": ("gossipsubHeartbeatInterval", "duration"),
            "InitialDelay": ("gossipsubHeartbeatInitialDelay", "duration"),
        },
    },
    "Relay": {
        "Enabled": ("relay", bool),
        "Active": ("relayActive", bool),
        "Hop": ("relayHop", bool),
        "Discovery": ("relayDiscovery", bool),
        "Auto": ("autoRelay", bool),
        "HopLimit": ("relayHopLimit", int),
    },
    "AutoNat": ("autonat", bool),
    "HostAddresses": ("hostAddrs", "maddrs"),
    "AnnounceAddresses": ("announceAddrs", "maddrs"),
    "NoListen": ("noListenAddrs", bool),
    "MetricsAddress": ("metricsAddr", str),
    "PProf": {"Enabled": ("pprof", bool), "Port": ("pprofPort", int)},
    "Security": {"Noise": ("noise", bool), "TLS": ("tls", bool), "Plaintext": ("plaintext", bool)},
    "Echo": ("echo", bool),
}

#: The go daemon's control socket when the JSON config names none.
GO_DEFAULT_LISTEN = "/unix/tmp/p2pd.sock"


def json_config_flags(text: str | bytes, source: str) -> dict[str, Any]:
    """Translate the go daemon's JSON config into the flags it stands for.

    Field names and meanings are go-libp2p-daemon's ``config.Config``; multiaddr lists
    may be JSON arrays or one comma-separated string; durations are Go duration strings
    (``"2m"``) or numbers of seconds (as specs/CONFIG.md documents). An unknown field or
    a wrong type is refused with the file and the field named.
    """
    import json

    from .goflags import parse_go_duration

    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}: not a JSON config: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the JSON config must be an object")
    out: dict[str, Any] = {}

    def walk(obj: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        for key, value in obj.items():
            where = f"{path}{key}"
            spec = next((v for k, v in schema.items() if k.lower() == key.lower()), None)
            if spec is None:
                known = ", ".join(schema)
                raise ConfigError(f"{source}: unknown field {where} (known here: {known})")
            if isinstance(spec, dict):
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {where} must be an object")
                walk(value, spec, where + ".")
                continue
            flag, kind = spec
            if value is None:
                continue
            out[flag] = _json_value(value, kind, where, source, parse_go_duration)

    walk(doc, _JSON_FIELDS, "")
    mode = out.pop("dht-mode", "")
    if mode not in ("", "full", "client", "server"):
        raise ConfigError(f"{source}: unknown DHT mode {mode!r} (full, client, server or \"\")")
    if mode:
        out[{"full": "dht", "client": "dhtClient", "server": "dhtServer"}[mode]] = True
    out.setdefault("listen", GO_DEFAULT_LISTEN)
    return out


def _json_value(value: Any, kind: Any, where: str, source: str, parse_go_duration) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true or false (got {value!r})")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer (got {value!r})")
        return value
    if kind is str or kind == "maddr":
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be a string (got {value!r})")
        if kind == "maddr" and not value.startswith("/"):
            raise ConfigError(f"{source}: {where} is not a multiaddr: {value!r}")
        return value
    if kind == "maddrs":
        items = _split(value) if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{source}: {where} must be a list of multiaddr strings")
        return ",".join(items)
    if kind == "duration":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{source}: {where} must be a duration (\"2m\" or seconds)")
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except ValueError:
                raise ConfigError(f"{source}: {where}: invalid duration {value!r}") from None
        return float(value)
    raise TypeError(kind)  # pragma: no cover - the table above holds only these kinds
