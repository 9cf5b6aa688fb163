"""``p2pd [flags]``: run the daemon with the go libp2p daemon's flags."""

from __future__ import annotations

import sys

from .. import __version__
from ..goflags import FlagSet


def daemon_flags() -> FlagSet:
    """The go libp2p daemon's flags, same names and meanings."""
    fs = FlagSet("p2pd")
    fs.add("listen", str, None, "daemon control listen multiaddr (default /unix/$P2PD_HOME/p2pd.sock)")
    fs.add("id", str, None, "file holding a protobuf-encoded libp2p private key")
    fs.add("hostAddrs", str, None, "comma-separated swarm listen multiaddrs")
    fs.add("announceAddrs", str, None, "comma-separated multiaddrs to announce instead of the listen ones")
    fs.add("quiet", bool, False, "be quiet")
    fs.add("bootstrap", bool, False, "connect to bootstrap peers")
    fs.add("bootstrapPeers", str, None, "comma-separated bootstrap peer multiaddrs")
    fs.add("dht", bool, False, "enable the DHT (server or client by reachability)")
    fs.add("dhtServer", bool, False, "enable the DHT in server mode")
    fs.add("dhtClient", bool, False, "enable the DHT in client mode")
    fs.add("connManager", bool, False, "enable the connection manager")
    fs.add("connLo", int, 256, "connection manager low water mark")
    fs.add("connHi", int, 512, "connection manager high water mark")
    fs.add("connGrace", str, "120s", "connection manager grace period")
    fs.add("pubsub", bool, False, "enable pubsub")
    fs.add("pubsubRouter", str, "gossipsub", "pubsub router: gossipsub or floodsub")
    fs.add("pubsubSign", bool, True, "sign pubsub messages")
    fs.add("pubsubSignStrict", bool, True, "require signed pubsub messages")
    fs.add("help", bool, False, "show this help")
    fs.add("h", bool, False, "show this help")
    fs.add("version", bool, False, "print the version")
    return fs


def run_daemon(argv: list[str], description: str) -> int:
    fs = daemon_flags()
    values, rest = fs.parse(argv)
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
