"""The ``p2pd`` command.

``p2pd [go-style flags]`` runs the daemon (flags as the go libp2p daemon takes
them); ``p2pd SUBCOMMAND ...`` runs a client action (``add``, ...). Errors the
user can act on are printed as one line, never as a traceback.
"""

import argparse
import importlib
import sys

from ..errors import P2PDError

#: Command groups: each module has ``COMMANDS``, ``add_parsers(sub)`` and ``run(args)``.
GROUPS = {
    "add": ("add",),
    "node": ("id", "peers", "connect", "disconnect", "ping", "status"),
    "dht": ("dht",),
    "blocks": ("cat", "get", "pin", "repo", "block"),
    "pubsub": ("pubsub",),
}
SUBCOMMANDS = tuple(name for names in GROUPS.values() for name in names)

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..logs import configure, level_from_env

    configure(level_from_env())  # the daemon sets its own level once its config is read
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv)
        from .daemon import run_daemon

        return run_daemon(argv, DESCRIPTION)
    except P2PDError as exc:
        print(f"p2pd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run_subcommand(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p2pd")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {name: importlib.import_module(f".{name}", __name__) for name in GROUPS}
    for module in modules.values():
        module.add_parsers(sub)
    args = parser.parse_args(argv)
    for name, commands in GROUPS.items():
        if args.command in commands:
            return modules[name].run(args)
    return 2  # pragma: no cover - argparse enforces the choices




if __name__ == "__main__":
    sys.exit(main())
