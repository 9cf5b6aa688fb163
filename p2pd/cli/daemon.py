"""``p2pd [flags]``: run the daemon with the go libp2p daemon's flags.

Every flag of the go daemon is declared here with its go type and default: the
upstream one (go-libp2p-daemon v0.9) and the hivemind fork (v0.5.0.hivemind1), so a
launcher written for either starts ours unchanged. ``-quiet`` (``-q``), ``-bootstrap``
(``-b`` that joins in the background instead of refusing to start), ``-help`` and
``-version`` are ours.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..goflags import Duration, FlagError, FlagSet, Uint


def daemon_flags() -> FlagSet:
    """The go libp2p daemon's flags, same names, types, defaults and meanings."""
    fs = FlagSet("p2pd")
    add = fs.add
    add("listen", str, None, "daemon control listen multiaddr (default /unix/$P2PD_HOME/p2pd.sock)")
    add("allowRemoteControl", bool, False,
        "allow a -listen TCP control address beyond loopback (p2pd's; anyone who reaches it "
        "controls the node)")
    add("id", str, None, "peer identity; private key file (protobuf-encoded libp2p key)")
    add("hostAddrs", str, None, "comma separated list of multiaddrs the host should listen on")
    add("announceAddrs", str, None,
        "comma separated list of multiaddrs the host should announce to the network")
    add("noAnnounce", str, None,
        "comma separated list of multiaddrs (or /ip4|ip6/NET/ipcidr/BITS networks) never to "
        "announce (p2pd's; kubo's Addresses.NoAnnounce)")
    add("noListenAddrs", bool, False, "sets the host to listen on no addresses")
    add("q", bool, False, "be quiet")
    add("quiet", bool, False, "be quiet (same as -q)")
    add("v", bool, False, "log at info level (p2pd's; [log] level in the home config)")
    add("vv", bool, False, "log at debug level, with tracebacks (p2pd's)")
    add("b", bool, False, "connects to bootstrap peers and bootstraps the dht if enabled")
    add("bootstrap", bool, False,
        "connects to bootstrap peers in the background, retrying (p2pd's; -b refuses to start "
        "when none answers, as go)")
    add("bootstrapPeers", str, None,
        "comma separated list of bootstrap peers; defaults to the IPFS DHT peers")
    add("dht", bool, False, "Enables the DHT in full node mode")
    add("dhtClient", bool, False, "Enables the DHT in client mode")
    add("dhtServer", bool, False, "Enables the DHT in server mode")
    add("connManager", bool, False, "Enables the Connection Manager")
    add("connLo", int, 256, "Connection Manager Low Water mark")
    add("connHi", int, 512, "Connection Manager High Water mark")
    add("connGrace", Duration, 120.0, "Connection Manager grace period")
    add("muxer", str, "yamux", "muxer to use for connections (yamux or mplex: the preferred one)")
    add("noise", bool, True, "Enables Noise channel security protocol")
    add("tls", bool, True, "Enables TLS1.3 channel security protocol")
    add("plaintext", bool, True, "Enables Plaintext channel security protocol (refused here)")
    add("quic", bool, True, "Enables the QUIC transport")
    add("natPortMap", bool, False, "Enables NAT port mapping")
    add("pubsub", bool, False, "Enables pubsub")
    add("pubsubRouter", str, "gossipsub", "Specifies the pubsub router implementation")
    add("pubsubSign", bool, True, "Enables pubsub message signing")
    add("pubsubSignStrict", bool, True, "Enables or disables pubsub strict signature verification")
    add("gossipsubHeartbeatInterval", Duration, 0.0, "Specifies the gossipsub heartbeat interval")
    add("gossipsubHeartbeatInitialDelay", Duration, 0.0,
        "Specifies the gossipsub initial heartbeat delay")
    add("relay", bool, True, "Enables circuit relay")
    add("relayActive", bool, False, "Enables active mode for relay (deprecated, has no effect)")
    add("relayHop", bool, False, "Enables hop for relay (deprecated, has no effect)")
    add("relayHopLimit", int, 0, "Sets the hop limit for hop relays (deprecated, has no effect)")
    add("relayDiscovery", bool, True, "Discover potential relays in background if -autoRelay=1")
    add("relayService", bool, True, "Configures this node to serve as a relay for others")
    add("relayBufferSize", int, 16777216, "size (in bytes) of the relayed connection buffers")
    add("relayDataLimit", int, 4294967296, "maximum data bytes relayed (in each direction)")
    add("relayMaxCircuits", int, 16, "maximum number of open relay connections for each peer")
    add("relayMaxReservations", int, 128, "maximum number of reserved relay slots for each peer")
    add("relayTimeLimit", Duration, 1800.0,
        "maximum duration of a single active relayed connection")
    add("autoRelay", bool, False, "Enables autorelay")
    add("trustedRelays", str, None,
        "comma separated list of multiaddrs for static circuit relay peers")
    add("autonat", bool, False, "Enables the AutoNAT service")
    add("autonatClient", bool, False,
        "asks peers serving AutoNAT whether we are reachable; a -dht node in auto mode then "
        "serves the DHT only while reachable (p2pd's; on in the home config)")
    add("autonatConfidence", int, 3, "AutoNAT servers that must agree (p2pd's)")
    add("forceReachabilityPublic", bool, False, "Set up ForceReachability as public for autonat")
    add("forceReachabilityPrivate", bool, False, "Set up ForceReachability as private for autonat")
    add("metricsAddr", str, None,
        "an address to bind the metrics handler to (host:port; :port is 127.0.0.1:port)")
    add("httpAddr", str, None,
        "the status page and read-only gateway listener, host:port or \"off\" (p2pd's; "
        "default: [http] listen in the home config, off with -listen)")
    add("pprof", bool, False, "Enables the HTTP pprof handler")
    add("pprofPort", Uint, 0, "Binds the HTTP pprof handler to a specific port")
    add("echo", bool, False,
        "Enables the echo protocol (/echo/1.0.0; upstream v0.9 serves it unless -echo=false, "
        "hivemind's fork never)")
    add("idleTimeout", Duration, 0.0,
        "Kills the daemon if no client opens a persistent connection in idleTimeout seconds; "
        "0 disables this")
    add("persistentConnMaxMsgSize", int, 4194304, "Max size for persistent connection messages")
    add("f", str, None, "a file from which to read a json representation of the daemon config")
    add("i", bool, False, "have the daemon read the json config from stdin")
    add("help", bool, False, "show this help")
    add("h", bool, False, "show this help")
    add("version", bool, False, "print the version")
    return fs


def run_daemon(argv: list[str], description: str) -> int:
    fs = daemon_flags()
    try:
        values, rest = fs.parse(argv)
    except FlagError as exc:  # Go's flag package: the message, the usage, status 2
        print(f"{exc}\nUsage of p2pd:\n{fs.usage()}", file=sys.stderr)
        return 2
    if values.get("help") or values.get("h"):
        print(description + "\ndaemon flags:\n" + fs.usage())
        return 0
    if values.get("version"):
        print(f"p2pd {__version__}")
        return 0
    if rest:
        print(f"p2pd: unknown subcommand {rest[0]!r} (see p2pd --help)", file=sys.stderr)
        return 2
    from ..daemon import run

    return run(values)  # only the flags that were set: config.toml fills the rest
