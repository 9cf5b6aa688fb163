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
    "node": ("id", "peers", "connect", "disconnect", "ping", "status", "stats"),
    "dht": ("dht",),
    "blocks": ("cat", "get", "ls", "pin", "repo", "block"),
    "pubsub": ("pubsub",),
    "setup": ("init", "config", "version", "shutdown"),
}
SUBCOMMANDS = tuple(name for names in GROUPS.values() for name in names)

DESCRIPTION = """\
p2pd - a libp2p peer-to-peer daemon (Kademlia DHT, gossipsub, Bitswap, daemon protocol)

usage:
  p2pd [flags]                 run the daemon (go libp2p daemon flags, below)
  p2pd add [options] PATH      import a file or directory as UnixFS, pinned and provided
                               (through the running daemon; --only-hash: print the CID only)
  p2pd cat CID | get CID -o PATH | ls CID                    fetch over Bitswap, list a directory
  p2pd pin add|rm|ls | repo gc|stat | block get|put|stat     blocks and pins
  p2pd id|peers|status         the running daemon's identity, peers, status (--json for scripts)
  p2pd stats bw [--proto P] [--peer ID]                      bytes and rates in and out
  p2pd connect MULTIADDR/p2p/ID | disconnect ID | ping ID    act through the running daemon
  p2pd dht findpeer|findprovs|get|put|provide ...            the running daemon's DHT
  p2pd pubsub sub|pub|peers|topics ...                       pubsub (daemon started with -pubsub)
  p2pd init                    create $P2PD_HOME (config.toml, identity key), print the peer id
  p2pd config show|get KEY|set KEY VALUE                     read and edit config.toml
  p2pd shutdown                stop the running daemon (as SIGTERM)
  p2pd version | --version     print the version
  p2pd SUBCOMMAND --help       help for a subcommand
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import os

    if os.environ.get("P2PD_DEBUG_LOG") or not (argv and argv[0] in SUBCOMMANDS):
        # the daemon sets its own level once its config is read; a client command logs
        # nothing of its own (its errors are one line on stderr), so it skips the imports
        from ..logs import configure, level_from_env

        configure(level_from_env())
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


class _Formatter(argparse.HelpFormatter):
    """argparse's help format, with the terminal width from ``os`` (argparse imports
    shutil for it in every parser, help or not: ~2 ms of each command's start)."""

    def __init__(self, prog: str, **kwargs) -> None:
        if kwargs.get("width") is None:
            import os

            try:
                columns = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, OSError, ValueError):
                    columns = 80
            kwargs["width"] = max(columns - 2, 20)
        super().__init__(prog, **kwargs)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _run_subcommand(argv: list[str]) -> int:
    """Only the group that has the command is imported (each start of the CLI pays for
    its imports: bench/cli.py)."""
    group = next(name for name, commands in GROUPS.items() if argv[0] in commands)
    module = importlib.import_module(f".{group}", __name__)
    parser = _Parser(prog="p2pd")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    module.add_parsers(sub)
    return module.run(parser.parse_args(argv))




if __name__ == "__main__":
    sys.exit(main())
