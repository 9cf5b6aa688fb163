"""Network lab: namespaces, NAT routers, shaped links, a DNS server (see topology.py).

Tests import it as ``lab`` (pytest puts ``tests/`` on ``sys.path``), bench as ``tests.lab``.
"""

from .nat import Nat
from .netns import LabError, remove_stale, unavailable_reason
from .procs import Proc
from .shaping import Link
from .topology import DnsServer, Home, Lab, Node, check_address

__all__ = [
    "DnsServer",
    "Home",
    "Lab",
    "LabError",
    "Link",
    "Nat",
    "Node",
    "Proc",
    "check_address",
    "remove_stale",
    "unavailable_reason",
]
