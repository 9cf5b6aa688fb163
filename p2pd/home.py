"""``$P2PD_HOME``: where a node keeps its identity, config and datastore.

Resolution is separate from creation so that commands which store nothing
(``p2pd add --only-hash``, ``p2pd --help``) never create a directory. Every
problem with the directory surfaces as one :class:`HomeError` naming the path,
before RocksDB or key loading would fail with a less helpful message.

The home holds the node's private key, so a directory we create is mode 0700.
:func:`ensure_home` leaves an existing directory's mode as the user set it (``p2pd add``
uses it too); the daemon tightens the home, its key file and its control socket at start
with :func:`secure_path` (0700 / 0600, logged), and refuses what another user owns.
"""

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import HomeError

ENV_VAR = "P2PD_HOME"
DEFAULT_HOME = "~/.p2pd"


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    """The home directory path from ``env`` (default ``os.environ``); creates nothing.

    An unset or empty ``$P2PD_HOME`` means ``~/.p2pd``; ``~`` is expanded and a
    relative path is made absolute against the current directory, so the node
    keeps using the same directory if it later changes directory.
    """
    environ = os.environ if env is None else env
    raw = environ.get(ENV_VAR) or DEFAULT_HOME
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # no home directory to expand "~" against
        raise HomeError(
            f"cannot resolve {raw!r}: no user home directory is known; set ${ENV_VAR}"
        ) from None
    return path.absolute()


def ensure_home(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` is a usable home: create it (mode 0700, parents too) or check it.

    Returns the path. Raises :class:`HomeError` when it exists but is not a
    directory, is not readable, writable and searchable by us, or cannot be
    created.
    """
    home = Path(path)
    try:
        st = home.stat()
    except FileNotFoundError:
        _create(home)
        return home
    except NotADirectoryError:
        raise HomeError(f"{ENV_VAR} {home}: a parent of it is not a directory") from None
    except OSError as exc:
        raise HomeError(f"{ENV_VAR} {home}: cannot inspect it: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(
            f"{ENV_VAR} {home} exists but is not a directory; move it away or set {ENV_VAR}"
        )
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise HomeError(
            f"{ENV_VAR} {home} is not readable and writable by this user; "
            f"fix its permissions (chmod u+rwx) or set {ENV_VAR}"
        )
    return home


def secure_path(path: str | os.PathLike[str], mode: int, what: str) -> str | None:
    """Make ``path`` (the home: 0700; the key file, the control socket: 0600) closed to
    group and others. Returns what was changed (for the log), or None if nothing was.

    Raises :class:`HomeError` when ``path`` is owned by another user: changing its mode
    is not ours to do, and a key or socket someone else controls is not safe to use.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise HomeError(f"cannot inspect {what} {path}: {exc.strerror or exc}") from None
    uid = os.geteuid()
    current = stat.S_IMODE(st.st_mode)
    if st.st_uid != uid:
        raise HomeError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {uid}); "
            f"p2pd will not use it: chown it to this user (and chmod {mode:o}) or set "
            f"{ENV_VAR} to a directory of your own")
    if not current & 0o077 and current & mode == mode:
        return None
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise HomeError(f"{what} {path} is mode {current:o} and cannot be made {mode:o}: "
                        f"{exc.strerror or exc}") from None
    return f"{what} {path} was mode {current:04o}, made {mode:04o}"


def _create(home: Path) -> None:
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; make sure it is exactly 0700.
        os.chmod(home, 0o700)
    except NotADirectoryError:
        raise HomeError(
            f"cannot create {ENV_VAR} {home}: a parent of it is not a directory"
        ) from None
    except OSError as exc:
        raise HomeError(f"cannot create {ENV_VAR} {home}: {exc.strerror or exc}") from None
    if not home.is_dir():  # pragma: no cover - lost a race with another process
        raise HomeError(f"cannot create {ENV_VAR} {home}: something else appeared there")


def datastore_path(home: str | os.PathLike[str]) -> Path:
    """The RocksDB directory inside ``home``."""
    return Path(home) / "datastore"


def config_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "config.toml"


def identity_path(home: str | os.PathLike[str]) -> Path:
    """The node's private key file (protobuf-encoded libp2p key, mode 0600)."""
    return Path(home) / "identity.key"


def socket_path(home: str | os.PathLike[str]) -> Path:
    """The default control socket (mode 0600)."""
    return Path(home) / "p2pd.sock"
