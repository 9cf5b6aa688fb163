"""``p2pd add``: import a file or directory as UnixFS (kubo's defaults and output)."""

from __future__ import annotations

import argparse
import sys

COMMANDS = ("add",)


def add_parsers(sub) -> None:
    add = sub.add_parser("add", help="import a file or directory as UnixFS")
    add.add_argument("path", help="file or directory to import")
    add.add_argument("-n", "--only-hash", action="store_true",
                     help="only compute the root CID; store nothing (works without a daemon)")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0,
                     help="CID version of the result (1 implies --raw-leaves, as in kubo)")
    add.add_argument("--raw-leaves", action=argparse.BooleanOptionalAction, default=None,
                     help="store file data in raw leaves (default: on with --cid-version 1)")
    add.add_argument("--chunker", default="size-262144",
                     help="chunker: size-N (default size-262144)")
    add.add_argument("-r", "--recursive", action="store_true",
                     help="accepted for kubo compatibility (a directory is always added whole)")
    add.add_argument("-q", "--quiet", action="store_true",
                     help="print only CIDs, one per file and directory (root last)")
    add.add_argument("-Q", "--quieter", action="store_true", help="print only the root CID")
    add.add_argument("--json", action="store_true",
                     help='one JSON object per entry, root last: {"Name", "Hash", "Size"}')
    add.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                     help="pin the added root (default: yes)")
    add.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)")
    add.add_argument("--api", metavar="MULTIADDR", default=None,
                     help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")


def run(args: argparse.Namespace) -> int:
    return _cmd_add(args)


def _cmd_add(args: argparse.Namespace) -> int:
    """``p2pd add``: UnixFS import with kubo's defaults and output: ``added <cid> <name>``
    for every file and directory, the root last."""
    import os

    from ..blocks.chunker import parse_chunker  # the importer only where it runs here
    from ..errors import ConfigError, InvalidUnixFS

    try:
        chunk_size = parse_chunker(args.chunker)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    path = args.path
    if not os.path.lexists(path):
        raise InvalidUnixFS(f"{path}: no such file or directory")
    options = dict(chunk_size=chunk_size, cid_version=args.cid_version, raw_leaves=args.raw_leaves)
    entries: list = []  # [name, cid text, dag size], root last
    more = 0
    try:
        if args.only_hash:
            from ..blocks.importer import import_path

            result = import_path(path, None, on_entry=_collect(entries), **options)
        else:
            added = _add_through_daemon(args, path, options)
            if added is None:  # no daemon: straight into $P2PD_HOME's repo, as `ipfs add`
                result = _add_to_local_repo(path, options, pin=args.pin,
                                            on_entry=_collect(entries))
            else:
                result, entries, more = added
    except PermissionError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: permission denied") from None
    except IsADirectoryError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: is a directory") from None
    except OSError as exc:
        raise InvalidUnixFS(f"{exc.filename or path}: {exc.strerror or exc}") from None
    if not entries:
        entries = [[os.path.basename(os.path.normpath(path)), str(result.cid), result.size]]
    if more:
        print(f"p2pd: {more} earlier entries are not listed", file=sys.stderr)
    print("\n".join(_entry_lines(args, entries)), flush=True)
    return 0


def _collect(entries: list):
    return lambda name, r: entries.append([name, str(r.cid), r.tsize])


def _entry_lines(args: argparse.Namespace, entries: list) -> list[str]:
    import json

    if args.quieter:
        return [entries[-1][1]]
    if args.json:
        return [json.dumps({"Name": n, "Hash": c, "Size": str(size)}) for n, c, size in entries]
    if args.quiet:
        return [c for _n, c, _size in entries]
    return [f"added {c} {n}" for n, c, _size in entries]


def _add_through_daemon(args: argparse.Namespace, path: str, options: dict):
    """Add through the running daemon (it holds the repo): ``(root, entries, entries not
    listed)``; None when no daemon runs."""
    import json
    from types import SimpleNamespace

    from ..blocks.cid import CID
    from .blocks import add_via_daemon
    from .client import ControlClient, DaemonNotRunning

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
    details = json.loads(final.stats) if final.stats else {}
    root = SimpleNamespace(cid=CID.from_bytes(final.cid), size=final.size)
    return root, details.get("entries", []), details.get("more", 0)


def _add_to_local_repo(path: str, options: dict, pin: bool = True, on_entry=None):
    """Import into $P2PD_HOME's blockstore, as ``ipfs add`` does when no daemon runs."""
    import os

    from ..blocks.blockstore import Blockstore
    from ..blocks.importer import import_path
    from ..home import datastore_path, ensure_home, resolve_home
    from ..store import Datastore

    home = ensure_home(resolve_home())
    datastore = Datastore.open(datastore_path(home))
    try:
        # One bulk write: no WAL per buffer, one flush at the end makes it all durable.
        store = Blockstore(datastore)
        with store.bulk(prehashed=True) as writer:
            result = import_path(path, writer, on_entry=on_entry, **options)
        if pin:  # after the flush: a pin never points at a missing block
            from ..blocks.pins import Pins

            Pins(datastore, store).add(result.cid, os.path.basename(os.path.normpath(path)),
                                       complete=True)
        return result
    finally:
        datastore.close()

