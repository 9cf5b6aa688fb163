"""The ``p2pd`` command.

``p2pd [go-style flags]`` runs the daemon (flags as the go libp2p daemon takes
them); ``p2pd SUBCOMMAND ...`` runs a client action (``add``, ...). Errors the
user can act on are printed as one line, never as a traceback.
"""

import argparse
import logging
import sys

from . import __version__
from .errors import P2PDError
from .goflags import FlagSet

SUBCOMMANDS = ("add", "id", "peers", "connect", "disconnect", "ping", "status", "dht",
               "cat", "get", "pin", "repo", "block", "pubsub")

DESCRIPTION = """\
p2pd - a libp2p peer-to-peer daemon (Kademlia DHT, gossipsub, Bitswap, daemon protocol)

usage:
  p2pd [flags]                 run the daemon (go libp2p daemon flags, below)
  p2pd add [options] PATH      import a file or directory as UnixFS, pinned and provided
                               (through the running daemon; --only-hash: print the CID only)
  p2pd cat CID | get CID -o PATH                             fetch over Bitswap
  p2pd pin add|rm|ls | repo gc|stat | block get|put|stat     blocks and pins
  p2pd id|peers|status         the running daemon's identity, peers, status (--json for scripts)
  p2pd connect MULTIADDR/p2p/ID | disconnect ID | ping ID    act through the running daemon
  p2pd dht findpeer|findprovs|get|put|provide ...            the running daemon's DHT
  p2pd pubsub sub|pub|peers|topics ...                       pubsub (daemon started with -pubsub)
  p2pd --version               print the version
  p2pd SUBCOMMAND --help       help for a subcommand
"""


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv)
        return _run_daemon(argv)
    except P2PDError as exc:
        print(f"p2pd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run_daemon(argv: list[str]) -> int:
    fs = daemon_flags()
    values, rest = fs.parse(argv)
    if values.get("help") or values.get("h"):
        print(DESCRIPTION + "\ndaemon flags:\n" + fs.usage())
        return 0
    if values.get("version"):
        print(f"p2pd {__version__}")
        return 0
    if rest:
        print(f"p2pd: unknown subcommand {rest[0]!r} (see p2pd --help)", file=sys.stderr)
        return 2
    from .daemon import run

    return run(values)  # only the flags that were set: config.toml fills the rest


def _run_subcommand(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p2pd")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="import a file or directory as UnixFS")
    add.add_argument("path", help="file or directory to import")
    add.add_argument("-n", "--only-hash", action="store_true",
                     help="only compute the root CID; store nothing (works without a daemon)")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0,
                     help="CID version of the result (1 implies --raw-leaves, as in kubo)")
    add.add_argument("--raw-leaves", action=argparse.BooleanOptionalAction, default=None,
                     help="store file data in raw leaves (default: on with --cid-version 1)")
    add.add_argument("--chunker", default="size-262144", help="chunker: size-N (default size-262144)")
    add.add_argument("-r", "--recursive", action="store_true", help="accepted for kubo compatibility")
    add.add_argument("-q", "--quiet", action="store_true", help="print only the root CID")
    add.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                     help="pin the added root (default: yes)")
    add.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)")
    add.add_argument("--api", metavar="MULTIADDR", default=None,
                     help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
    from .control import blocks_cli, commands, dht_cli, pubsub_cli

    commands.add_parsers(sub)
    dht_cli.add_parser(sub)
    blocks_cli.add_parsers(sub)
    pubsub_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "add":
        return _cmd_add(args)
    if args.command == "dht":
        return dht_cli.run(args)
    if args.command in commands.COMMANDS:
        return commands.run(args)
    if args.command == "pubsub":
        return pubsub_cli.run(args)
    if args.command in blocks_cli.COMMANDS:
        return blocks_cli.run(args)
    return 2  # pragma: no cover - argparse enforces the choices


def _cmd_add(args: argparse.Namespace) -> int:
    """``p2pd add``: UnixFS import with kubo's defaults and output (``added <cid> <name>``)."""
    import os

    from .blocks.importer import import_path, parse_chunker
    from .errors import ConfigError, InvalidUnixFS

    try:
        chunk_size = parse_chunker(args.chunker)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    path = args.path
    if not os.path.lexists(path):
        raise InvalidUnixFS(f"{path}: no such file or directory")
    if os.path.isdir(path) and not os.path.islink(path) and not args.recursive:
        raise InvalidUnixFS(f"{path} is a directory; use -r to add it recursively")
    options = dict(chunk_size=chunk_size, cid_version=args.cid_version, raw_leaves=args.raw_leaves)
    try:
        if args.only_hash:
            result = import_path(path, None, **options)
        else:
            result = _add_through_daemon(args, path, options)
            if result is None:  # no daemon: straight into $P2PD_HOME's repo, as `ipfs add`
                result = _add_to_local_repo(path, options, pin=args.pin)
    except PermissionError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: permission denied") from None
    except IsADirectoryError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: is a directory") from None
    except OSError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: {exc.strerror or exc}") from None
    name = os.path.basename(os.path.normpath(path))
    print(str(result.cid) if args.quiet else f"added {result.cid} {name}", flush=True)
    return 0


def _add_through_daemon(args: argparse.Namespace, path: str, options: dict):
    """Add through the running daemon (it holds the repo); None when none runs."""
    from types import SimpleNamespace

    from .blocks.cid import CID
    from .control.blocks_cli import add_via_daemon
    from .control.client import ControlClient, DaemonNotRunning

    client = ControlClient.for_address(args.api, 24 * 3600.0)
    try:
        final = add_via_daemon(client, path, chunk_size=options["chunk_size"],
                               cid_version=options["cid_version"],
                               raw_leaves=options["raw_leaves"], pin=args.pin,
                               progress=args.progress)
    except DaemonNotRunning:
        if args.api:
            raise
        return None
    return SimpleNamespace(cid=CID.from_bytes(final.cid), size=final.size)


def _add_to_local_repo(path: str, options: dict, pin: bool = True):
    """Import into $P2PD_HOME's blockstore, as ``ipfs add`` does when no daemon runs."""
    import os

    from .blocks.blockstore import Blockstore
    from .blocks.importer import import_path
    from .home import datastore_path, ensure_home, resolve_home
    from .store import Datastore

    home = ensure_home(resolve_home())
    datastore = Datastore.open(datastore_path(home))
    try:
        # One bulk write: no WAL per buffer, one flush at the end makes it all durable.
        store = Blockstore(datastore)
        with store.bulk(prehashed=True) as writer:
            result = import_path(path, writer, **options)
        if pin:  # after the flush: a pin never points at a missing block
            from .blocks.pins import Pins

            Pins(datastore, store).add(result.cid, os.path.basename(os.path.normpath(path)),
                                       complete=True)
        return result
    finally:
        datastore.close()


if __name__ == "__main__":
    sys.exit(main())
