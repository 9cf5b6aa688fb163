"""``p2pd [flags]``: run a daemon until SIGINT/SIGTERM.

Two modes, chosen by one rule (docs/daemon.md):

* **Home mode** (no ``-listen``): the daemon of a person's machine. It uses
  ``$P2PD_HOME`` (created on first start with ``config.toml`` and a persistent
  ``identity.key``), holds ``$P2PD_HOME/p2pd.lock`` so a second daemon on the same
  home is refused, and serves the control socket ``$P2PD_HOME/p2pd.sock`` (0600).
* **Harness mode** (``-listen``, ``-f FILE`` or ``-i`` given): what test launchers
  written for the go daemon expect. Nothing in ``$P2PD_HOME`` is read, written or
  locked; without ``-id`` the identity is fresh, the swarm listens where ``-hostAddrs``
  says (default: any free port), so any number of such daemons run side by side.

``-f FILE`` / ``-i`` read the go daemon's JSON config (from the file / stdin); flags
given beside it win over its fields. Either way the go daemon's ready lines are printed
(and flushed) once the control socket and the swarm listen, then the daemon serves until
a signal arrives.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio

from .config import Config, json_config_flags, resolve, resolve_file, write_default_config
from .errors import ConfigError, HomeError, P2PDError
from .home import (
    config_path,
    datastore_path,
    ensure_home,
    identity_path,
    resolve_home,
    secure_path,
    socket_path,
)
from .identity import PrivateKeyRecord, load_or_create_identity, new_ed25519, read_identity
from .store import Datastore

log = logging.getLogger(__name__)

LOCK_NAME = "p2pd.lock"


def run(flags: dict[str, Any]) -> int:
    """Entry point from the CLI; ``flags`` holds only the flags that were set."""
    from .runtime import tune_allocator

    tune_allocator()  # before the first large buffer
    with ExitStack() as stack:
        notes: list[str] = []
        config, key, control, datastore = _prepare(flags, stack, notes)
        from . import __version__
        from .logs import configure

        configure(config.log_level)
        log.info("p2pd %s starting (log level %s)", __version__, config.log_level)
        for note in notes:  # modes tightened at start (home 0700, key file 0600)
            log.warning("%s", note)
        _say_remote_control(control, config)
        try:
            return trio.run(_serve, config, key, control, datastore)
        except OSError as exc:
            raise P2PDError(f"cannot start: {exc.strerror or exc}") from None


def _prepare(
    flags: dict[str, Any], stack: ExitStack, notes: list[str] | None = None
) -> tuple[Config, PrivateKeyRecord, str, Datastore | None]:
    """Resolve mode, config, lock, identity and datastore before any network I/O.

    Harness mode keeps everything in memory (no datastore); home mode opens
    ``$P2PD_HOME/datastore`` after taking the lock. The home (0700) and the key file
    (0600) are closed to group and others first; what was changed goes to ``notes``.
    """
    notes = [] if notes is None else notes

    def secure(path, mode: int, what: str) -> None:
        note = secure_path(path, mode, what)
        if note:
            notes.append(note)

    if "listen" in flags or flags.get("f") or flags.get("i"):  # harness mode
        config = resolve({**_json_config(flags), **flags}, None)
        check_control_exposure(config.control_listen or "", config)
        if config.identity_file:
            key = read_identity(config.identity_file)
            secure(config.identity_file, 0o600, "identity key file")
        else:
            key = new_ed25519()
        return config, key, config.control_listen or "", None
    home = ensure_home(resolve_home())
    secure(home, 0o700, "$P2PD_HOME")
    write_default_config(config_path(home))
    config = resolve_file(flags, config_path(home))
    stack.enter_context(_HomeLock(home))
    if config.identity_file:
        key = read_identity(config.identity_file)
        secure(config.identity_file, 0o600, "identity key file")
    else:
        key, _created = load_or_create_identity(identity_path(home))
        secure(identity_path(home), 0o600, "identity key file")
    control = config.control_listen or "/unix" + str(socket_path(home))
    check_control_exposure(control, config)
    datastore = stack.enter_context(Datastore.open(datastore_path(home),
                                                       memtable_bytes=config.memtable_bytes,
                                                       cache_bytes=config.db_cache_bytes))
    return config, key, control, datastore


def _remote_control_host(control: str) -> str | None:
    """The host of a TCP control address beyond loopback (0.0.0.0 included), else None."""
    import ipaddress

    from .control.endpoint import parse_endpoint

    if not control:
        return None
    endpoint = parse_endpoint(control)
    if endpoint.kind != "tcp" or ipaddress.ip_address(endpoint.host).is_loopback:
        return None
    return endpoint.host


def check_control_exposure(control: str, config: Config) -> None:
    """A control socket beyond loopback gives whoever reaches it the node (its streams,
    its store, its identity's signatures): only with ``-allowRemoteControl``."""
    host = _remote_control_host(control)
    if host is not None and not config.allow_remote_control:
        raise ConfigError(
            f"control address {control} is not a loopback address: anyone who can reach "
            f"{host} would control this node; use /ip4/127.0.0.1/tcp/PORT or a /unix socket, "
            f"or pass -allowRemoteControl ([control] allow_remote = true) to listen there "
            f"anyway")


def _say_remote_control(control: str, config: Config) -> None:
    if _remote_control_host(control) is None:
        return
    message = (f"WARNING: the control socket listens on {control}, beyond this machine "
               f"(-allowRemoteControl): anyone who can reach it controls this node. "
               f"Firewall it.")
    print(f"p2pd: {message}", file=sys.stderr, flush=True)  # even with -q
    log.warning("%s", message)


def _json_config(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags the go daemon's JSON config (``-i``: stdin, else ``-f FILE``) stands for."""
    if flags.get("i"):
        return json_config_flags(sys.stdin.buffer.read(), "<stdin>")
    if flags.get("f"):
        path = flags["f"]
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        return json_config_flags(body, path)
    return {}


class _HomeLock:
    """An exclusive ``flock`` on ``$P2PD_HOME/p2pd.lock``, held for the daemon's life.

    The kernel drops the lock when the process dies, even with ``kill -9``, so a
    crash never leaves a home locked; the pid inside is only for the error message.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self.fd = -1

    def __enter__(self) -> _HomeLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(self.fd, 32, 0).decode().strip() or "unknown"
            except OSError:
                holder = "unknown"
            os.close(self.fd)
            raise HomeError(
                f"another p2pd (pid {holder}) is already running with $P2PD_HOME "
                f"{self.path.parent}; stop it first, or set P2PD_HOME to another directory"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)


async def _serve(
    config: Config, key: PrivateKeyRecord, control: str, datastore: Datastore | None = None
) -> int:
    from .control.endpoint import parse_endpoint
    from .control.server import ControlServer, bound_endpoint, open_listener
    from .node import Node
    from .runtime import trim_memory_every

    endpoint = parse_endpoint(control)
    if config.not_implemented:
        print("p2pd: accepted but not yet implemented (running without them): "
              + " ".join(config.not_implemented), file=sys.stderr, flush=True)
    node = Node(config, key, datastore)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            listener = await open_listener(endpoint)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on control address {control}: {exc.strerror or exc}"
            ) from None
        endpoint = bound_endpoint(listener, endpoint)
        if endpoint.kind == "unix":  # created 0600; a filesystem may have ignored that
            st = os.stat(endpoint.path)
            if st.st_mode & 0o077 or st.st_uid != os.geteuid():
                listener.socket.close()
                raise ConfigError(f"control socket {endpoint.path} is mode "
                                  f"{st.st_mode & 0o777:o} (owner uid {st.st_uid}), not 0600 "
                                  f"and ours: put it on a filesystem that keeps modes")
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(node.run)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot listen on swarm addresses {', '.join(config.host_addrs)}: "
                        f"{exc.strerror or exc}"
                    ) from None
                server = ControlServer(
                    node,
                    max_frame=config.max_control_frame,
                    idle_timeout=config.control_idle_timeout,
                    max_clients=config.max_control_clients,
                    persistent_max_msg_size=getattr(
                        config, "persistent_conn_max_msg_size", 4 << 20
                    ),
                    exit_when_idle=getattr(config, "idle_timeout", 0.0),
                    on_idle=nursery.cancel_scope.cancel,  # -idleTimeout: a clean exit, 0
                    on_shutdown=nursery.cancel_scope.cancel,  # p2pd shutdown: the same
                )
                await nursery.start(server.serve, [listener])
                nursery.start_soon(trim_memory_every)
                if config.http_listen or config.metrics_listen or config.pprof:
                    from .http.service import start_http

                    await start_http(nursery, node, config)
                log.debug("ready: control %s, swarm %s", endpoint.multiaddr(),
                          " ".join(node.listen_addrs()) or "none")
                if not config.quiet:
                    _print_ready(endpoint.multiaddr(), node)
                async for signum in signals:
                    log.info("received signal %d, shutting down", signum)
                    nursery.cancel_scope.cancel()
                    break
        except BaseExceptionGroup as group:
            # a start-up refusal (e.g. -b and no bootstrap peer answered) is one line
            _raise_start_error(group)
            raise
        finally:
            if endpoint.kind == "unix":
                try:
                    os.unlink(endpoint.path)
                except OSError:
                    pass
    return 0


def _raise_start_error(group: BaseExceptionGroup) -> None:
    """Raise the P2PDError inside ``group`` (nurseries wrap it) when it is the only error."""
    errors, rest = group.split(P2PDError)
    if errors is not None and rest is None:
        while isinstance(errors, BaseExceptionGroup):
            errors = errors.exceptions[0]
        raise errors from None


def _print_ready(control: str, node) -> None:
    """The go daemon's ready lines; flushed so launchers reading a pipe or file see them."""
    lines = [f"Control socket: {control}", f"Peer ID: {node.peer_id.to_base58()}", "Peer Addrs:"]
    lines += node.listen_addrs()
    if node.config.bootstrap_strict and node.config.bootstrap_peers:
        lines += ["Bootstrap peers:", *node.config.bootstrap_peers]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
