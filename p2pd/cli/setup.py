"""``p2pd init|config|version|shutdown``: setting a node up and stopping it.

``init`` makes ``$P2PD_HOME`` (0700), its ``config.toml`` with the documented defaults
and its identity key (0600), and prints the peer id; nothing that exists is replaced.
``config show|get|set`` read and edit ``config.toml`` in place (comments and layout
kept); a value is checked as the daemon would check it before the file is written.
``shutdown`` asks the running daemon to stop (as SIGTERM) and waits until it has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import ConfigError, P2PDError

COMMANDS = ("init", "config", "version", "shutdown")


def add_parsers(sub) -> None:
    p = sub.add_parser("init", help="create $P2PD_HOME: config.toml and the identity key")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p = sub.add_parser("config", help="show, get or set values of $P2PD_HOME/config.toml")
    csub = p.add_subparsers(dest="config_command", required=True)
    s = csub.add_parser("show", help="print config.toml (the defaults if there is none)")
    s.add_argument("--json", action="store_true",
                   help="every value in effect (the file over the defaults) as JSON")
    g = csub.add_parser("get", help="print one value: SECTION.KEY, e.g. datastore.storage_max")
    g.add_argument("key")
    g.add_argument("--json", action="store_true", help="print the value as JSON")
    st = csub.add_parser("set", help="set one value in place, checked first "
                                     "(restart the daemon for it to take effect)")
    st.add_argument("key", help="SECTION.KEY, e.g. datastore.storage_max")
    st.add_argument("value", help='TOML (90, true, ["/ip4/..."], "text") or plain text (10GB)')
    p = sub.add_parser("version", help="print the version")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p = sub.add_parser("shutdown", help="stop the running daemon and wait until it has")
    p.add_argument("--api", metavar="MULTIADDR", default=None,
                   help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for it to stop (default 60)")


def run(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _init(args)
    if args.command == "config":
        return _config(args)
    if args.command == "version":
        return _version(args)
    return _shutdown(args)


def _version(args) -> int:
    from .. import __version__

    if args.json:
        print(json.dumps({"Version": __version__, "Python": sys.version.split()[0]}))
    else:
        print(f"p2pd {__version__}")
    return 0


def _init(args) -> int:
    from ..blocks.multibase import b58encode
    from ..config import write_default_config
    from ..home import config_path, ensure_home, identity_path, resolve_home, secure_path
    from ..identity import load_or_create_identity, to_key_pair
    from ..peerkeys import peer_id_from_public_key

    home = resolve_home()
    existed = home.is_dir()
    ensure_home(home)
    secure_path(home, 0o700, "$P2PD_HOME")
    wrote = write_default_config(config_path(home))
    key, created = load_or_create_identity(identity_path(home))
    secure_path(identity_path(home), 0o600, "identity key file")
    peer = b58encode(peer_id_from_public_key(to_key_pair(key).public_key.serialize()))
    problem = None
    if not wrote:  # a config.toml kept as it was is checked as the daemon will check it
        from ..config import resolve_file

        try:
            resolve_file({}, config_path(home))
        except ConfigError as exc:
            problem = str(exc)
    if problem:
        print(f"p2pd: the daemon will not start until this is fixed:\n{problem}",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"Home": str(home), "Config": str(config_path(home)),
                          "ConfigWritten": wrote, "KeyCreated": created, "PeerID": peer}))
        return 0
    print(f"{'initialized' if not existed else 'using'} p2pd home {home}")
    print(f"  config.toml: {'written with the defaults' if wrote else 'kept as it was'}")
    print(f"  identity.key: {'a new Ed25519 key' if created else 'kept as it was'}")
    print(f"Peer ID: {peer}")
    if wrote:
        print("Start the daemon with `p2pd`; change settings with `p2pd config set KEY VALUE`.")
    return 0


def _config_file():
    from ..home import config_path, resolve_home

    return config_path(resolve_home())


def _split_key(dotted: str, defaults: dict) -> tuple[str, str]:
    import difflib

    section, dot, key = dotted.partition(".")
    known = sorted(f"{s}.{k}" for s, table in defaults.items() for k in table)
    if not dot or section not in defaults or key not in defaults[section]:
        near = difflib.get_close_matches(dotted, known, n=1)
        hint = f"did you mean {near[0]}?" if near else "see `p2pd config show`"
        raise ConfigError(f"unknown config key {dotted!r}: keys are SECTION.KEY ({hint})")
    return section, key


def _config(args) -> int:
    import tomllib

    from ..config import DEFAULT_CONFIG_TOML, parse_config_text, read_config_text

    path = _config_file()
    text = read_config_text(path)
    doc = parse_config_text(text, path)
    defaults = tomllib.loads(DEFAULT_CONFIG_TOML)
    if args.config_command == "show":
        if args.json:
            merged = {s: {**table, **doc.get(s, {})} for s, table in defaults.items()}
            print(json.dumps(merged, indent=2))
        else:
            if not text:
                print(f"p2pd: {path} does not exist (yet): these are the defaults "
                      "(`p2pd init` writes them)", file=sys.stderr)
            sys.stdout.write(text or DEFAULT_CONFIG_TOML)
        return 0
    section, key = _split_key(args.key, defaults)
    if args.config_command == "get":
        value = doc.get(section, {}).get(key, defaults[section][key])
        if args.json:
            print(json.dumps(value))
        else:
            from ..tomlfile import literal

            print(value if isinstance(value, str) else literal(value))
        return 0
    return _config_set(path, text, section, key, args.value)


def _config_set(path, text: str, section: str, key: str, raw: str) -> int:
    from ..config import located, parse_config_text, resolve
    from ..home import socket_path
    from ..tomlfile import parse_value, set_value

    if not text:
        raise P2PDError(f"{path} does not exist: run `p2pd init` first")
    new = set_value(text, section, key, parse_value(raw))
    try:
        resolve({}, parse_config_text(new, path))
    except ConfigError as exc:  # named as it would be at start, the file left alone
        raise located(exc, path, new) from None
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)
    if socket_path(path.parent).exists():
        print("p2pd: a daemon may be running; it reads config.toml at start: restart it "
              "(`p2pd shutdown`, then `p2pd`)", file=sys.stderr)
    return 0


def _shutdown(args) -> int:
    from .client import ControlClient

    client = ControlClient.for_address(args.api, args.timeout)
    client.shutdown(args.timeout)
    return 0
