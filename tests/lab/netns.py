"""Thin helpers over iproute2 and Linux network namespaces (no third-party packages).

Everything the lab builds is named ``p2l<pid>-<serial>-<role>``: the pid of the process that
built it, so a later run can tell leftovers of a crashed run (owner gone) from a run that is
still going (owner alive), and never touches either kind of someone else's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

PREFIX = "p2l"
NAME_RE = re.compile(rf"^{PREFIX}(\d+)-(\d+)-")
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
CLONE_NEWNET = 0x40000000
TOOLS = ("ip", "tc", "nft")


class LabError(RuntimeError):
    """A lab command failed; the message holds the command and what it printed."""


def run(
    *argv: str,
    ns: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess:
    """Run a command, inside namespace ``ns`` when given (``ip netns exec``)."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and done.returncode:
        raise LabError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``ip -n ns ARGS`` (no fork into the namespace needed for iproute2 itself)."""
    return run("ip", *(["-n", ns] if ns else []), *args, check=check)


def ip_batch(ns: str, lines: list[str]) -> None:
    """Several ``ip`` commands in one process (``ip -n ns -batch -``)."""
    if lines:
        run("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces, nftables, tc)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (
            f"the network lab needs {', '.join(missing)}: apt-get install nftables iproute2 "
            "(scripts/test.sh does it when run as root)"
        )
    probe = f"{PREFIX}{os.getpid()}-0-probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode:
        return f"network namespaces are unavailable here: {done.stderr.strip()}"
    try:
        nft = run("nft", "list", "tables", ns=probe, check=False)
        if nft.returncode:
            return f"nftables does not work in a namespace here: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def delete_namespace(ns: str) -> None:
    """Kill whatever still runs in ``ns``, delete it and its /etc/netns directory.

    A namespace lives on while a process is in it, and its veth ends with it."""
    for pid in ns_pids(ns):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def remove_stale() -> list[str]:
    """Delete lab namespaces whose owning process is gone (crashed or killed earlier runs)."""
    removed = []
    names = set(namespaces())
    if NETNS_ETC.is_dir():
        names |= {p.name for p in NETNS_ETC.iterdir()}
    for name in sorted(names):
        m = NAME_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            delete_namespace(name)
            removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the block with the calling thread inside namespace ``ns``.

    Sockets created inside stay in ``ns`` after the block, so one test process can hold
    sockets in several namespaces. Only this thread moves; it always moves back."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        there = os.open(NETNS_RUN / ns, os.O_RDONLY)
        try:
            _setns(there)
        finally:
            os.close(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)
