"""``$P2PD_HOME``: where a node keeps its identity, config and datastore.

Resolution is separate from creation so that commands which store nothing
(``p2pd add --only-hash``, ``p2pd --help``) never create a directory. Every
problem with the directory surfaces as one :class:`HomeError` naming the path,
before RocksDB or key loading would fail with a less helpful message.

The home holds the node's private key, so a directory we create is mode 0700.
An existing directory's mode is left as the user set it.
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
