"""A small internet in network namespaces: a switched segment, public hosts, NATed homes.

::

    with Lab() as lab:
        server = lab.add_host("srv")                       # 203.0.113.x on the internet segment
        home = lab.add_home("h1", Nat.SYMMETRIC, hosts=1,   # router 198.51.100.x, LAN 198.18.k.0/24
                            link=Link(rtt_ms=40, up_mbit=20))
        dns = lab.add_dns({"_dnsaddr.boot.lab": ["dnsaddr=/ip4/203.0.113.10/tcp/4001/p2p/..."]})
        proc = lab.run(home.hosts[0], ["python", "-m", "p2pd", ...], name="daemon")

Layout: one namespace ``<prefix>net`` holds the bridge ``br0`` (a switch with no address of
its own); every public host and every home router has a veth whose other end is a port of
that bridge. The three internet /24s are on-link everywhere on the segment; a public home's
LAN is routed through its router; NATed LANs are reachable from nowhere. Nothing is ever
created in, or linked to, the host's own namespace: every veth is created with both ends
already inside lab namespaces.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import nat as natmod
from . import shaping
from .nat import Nat
from .netns import (
    NETNS_ETC,
    PREFIX,
    LabError,
    delete_namespace,
    entered,
    ip,
    ip_batch,
    namespaces,
    remove_stale,
    run,
)
from .procs import Proc
from .shaping import Link

HERE = Path(__file__).resolve().parent
ALLOWED = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")
)
INTERNET = tuple(
    ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
)
HOST_POOL = ("203.0.113.0/24", "192.0.2.0/25")
ROUTER_POOL = ("198.51.100.0/24",)
HOME_LANS = ipaddress.ip_network("198.18.0.0/15")
#: LANs of homes with public addresses (``add_home(..., public_lan=True)``, no NAT): the
#: upper half of 192.0.2.0/24 in /28s, 8 homes of up to 13 hosts; public hosts stay below
PUBLIC_LANS = ipaddress.ip_network("192.0.2.128/25")
DNS_PORT = 53
STUN_PORT = 3478


def check_address(addr: str) -> str:
    """``addr`` if it is inside the lab's address plan, else ValueError."""
    a = ipaddress.ip_address(addr)
    if not any(a in n for n in ALLOWED):
        raise ValueError(
            f"{addr} is outside the lab address plan "
            "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15)"
        )
    return addr


def _pool(nets: tuple[str, ...]):
    for net in map(ipaddress.ip_network, nets):
        for n in range(10, min(251, net.num_addresses - 1)):
            yield str(net.network_address + n)


@dataclass(eq=False)
class Node:
    """A namespace and its uplink: ``dev`` in ``ns``, the other end ``peer_dev`` in ``peer_ns``."""

    name: str
    ns: str
    addr: str
    dev: str
    peer_ns: str
    peer_dev: str
    delay_line: Proc | None = None
    delay_config: Path | None = None


@dataclass(eq=False)
class Home:
    """A home network: a router namespace (``router.addr`` is its public address) and LAN hosts."""

    name: str
    nat: Nat
    router: Node
    lan_net: str
    gateway: str
    hosts: list[Node] = field(default_factory=list)
    upnp: Proc | None = None  # miniupnpd, for Nat.UPNP

    @property
    def public_addr(self) -> str:
        return self.router.addr


@dataclass(eq=False)
class DnsServer:
    node: Node
    proc: Proc
    records_path: Path
    records: dict

    @property
    def address(self) -> str:
        return f"{self.node.addr}:{DNS_PORT}"

    def set_txt(self, name: str, texts: list[str]) -> None:
        self.records.setdefault("txt", {})[name] = list(texts)
        self._write()

    def set_a(self, name: str, addrs: list[str]) -> None:
        self.records.setdefault("a", {})[name] = [check_address(a) for a in addrs]
        self._write()

    def _write(self) -> None:
        tmp = self.records_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.records))
        os.replace(tmp, self.records_path)


class Lab:
    """Builds the namespaces, links, routes, NAT and shapes; :meth:`close` removes all of it."""

    _serial = itertools.count(1)

    def __init__(self, logdir: str | Path | None = None) -> None:
        self.prefix = f"{PREFIX}{os.getpid()}-{next(Lab._serial)}-"
        self.logdir = Path(logdir) if logdir else Path(tempfile.mkdtemp(prefix="p2plab-"))
        self.net_ns = self.prefix + "net"
        self.switch = Node("net", self.net_ns, "", "br0", "", "")  # holds bridge and delay lines
        self.nodes: dict[str, Node] = {}
        self.homes: dict[str, Home] = {}
        self.procs: list[Proc] = []
        self._cleanups: list[Callable[[], object]] = []
        self.dns: DnsServer | None = None
        self.stun: str | None = None  # host:port of the STUN server (made for miniupnpd)
        self.removed_stale: list[str] = []
        self._namespaces: list[str] = []
        self._uplinks: list[Node] = []  # namespaces attached to the segment
        self._public_lans: list[tuple[str, str]] = []  # (lan net, router address)
        self._hosts = _pool(HOST_POOL)
        self._routers = _pool(ROUTER_POOL)
        self._lans = HOME_LANS.subnets(new_prefix=24)
        self._public_lan_pool = PUBLIC_LANS.subnets(new_prefix=28)
        self._ports = itertools.count(1)
        self._started = False
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        """Remove leftovers of dead earlier runs, then make the internet segment."""
        if self._started:
            return self
        self._started = True
        self.logdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        self.removed_stale = remove_stale()
        self._namespace(self.net_ns)
        ip_batch(self.net_ns, ["link add br0 type bridge", "link set br0 up"])
        return self

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), delete every namespace. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        for ns in reversed(self._namespaces):
            delete_namespace(ns)
        self._namespaces.clear()
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()

    def on_close(self, cleanup: Callable[[], object]) -> None:
        """Call ``cleanup`` at :meth:`close`, after every process is stopped."""
        self._cleanups.append(cleanup)

    def leftovers(self) -> list[str]:
        """Namespaces or /etc/netns entries of this lab that still exist (empty after close)."""
        found = [ns for ns in namespaces() if ns.startswith(self.prefix)]
        if NETNS_ETC.is_dir():
            found += [str(p) for p in NETNS_ETC.iterdir() if p.name.startswith(self.prefix)]
        return found

    # --- building --------------------------------------------------------------------------

    def _namespace(self, ns: str) -> str:
        if self._closed:
            raise LabError("this lab is closed")
        if len(ns) > 64:
            raise ValueError(f"namespace name too long: {ns!r}")
        run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        ip(ns, "link", "set", "lo", "up")
        if self.dns is not None:
            self._resolv_conf(ns)
        return ns

    def _role(self, name: str) -> str:
        if not name or not all(c.isalnum() or c == "-" for c in name) or len(name) > 24:
            raise ValueError(f"lab names are 1-24 letters, digits or '-': {name!r}")
        if name in self.nodes or name in self.homes:
            raise ValueError(f"{name!r} is already in this lab")
        return name

    def _attach(self, name: str, ns: str, addr: str, dev: str, link: Link | None) -> Node:
        """A link from ``ns`` to a port of the segment's bridge, addressed and routed: a veth
        pair, or with delay, jitter or loss two TAPs joined by a delay line (linkd.py)."""
        check_address(addr)
        port = f"p{next(self._ports)}"
        node = Node(name, ns, addr, dev, self.net_ns, port)
        if link is not None and link.needs_delay_line:
            node.delay_config = self.logdir / f"link-{name}.json"
            self._write_delay_config(node, link)
            node.delay_line = self.run(
                self.switch,
                [sys.executable, str(HERE / "linkd.py"), str(node.delay_config)],
                name=f"link-{name}",
            )
            node.delay_line.wait_for("^linkd ready", timeout=15)
        else:
            ip(ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", self.net_ns)
        ip_batch(self.net_ns, [f"link set {port} master br0", f"link set {port} up"])
        net = next(n for n in INTERNET if ipaddress.ip_address(addr) in n)
        lines = [f"addr add {addr}/{net.prefixlen} dev {dev}", f"link set {dev} up"]
        lines += [f"route add {n} dev {dev}" for n in INTERNET if n != net]
        lines += [f"route add {lan} via {via}" for lan, via in self._public_lans if via != addr]
        ip_batch(ns, lines)
        self._uplinks.append(node)
        if link is not None:
            self._set_rates(node, link)
        return node

    def _write_delay_config(self, node: Node, link: Link) -> None:
        assert node.delay_config is not None
        config = {
            "a": {"ns": node.ns, "dev": node.dev},
            "b": {"ns": node.peer_ns, "dev": node.peer_dev},
            "ab": link.direction(),
            "ba": link.direction(),
        }
        tmp = node.delay_config.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, node.delay_config)

    def _set_rates(self, node: Node, link: Link | None) -> None:
        rtt = link.rtt_ms if link else 0.0
        shaping.set_rate(node.ns, node.dev, link.up_mbit if link else None, rtt)
        shaping.set_rate(node.peer_ns, node.peer_dev, link.down if link else None, rtt)

    def add_host(self, name: str, link: Link | None = None, addr: str | None = None) -> Node:
        """A public host on the internet segment (its own namespace, address 203.0.113.x)."""
        self._role(name)
        ns = self._namespace(self.prefix + name)
        node = self._attach(name, ns, addr or next(self._hosts), "eth0", link)
        self.nodes[name] = node
        return node

    def add_home(
        self,
        name: str,
        nat: Nat | str = Nat.PORT_RESTRICTED,
        hosts: int = 1,
        link: Link | None = None,
        upnp_igd: bool = True,
        public_lan: bool = False,
    ) -> Home:
        """A home: router ``name`` (public address 198.51.100.x) and ``hosts`` LAN hosts
        ``name-0``... on 198.18.k.0/24, the router doing ``nat``; ``link`` shapes its uplink.
        A ``Nat.UPNP`` router offers UPnP IGD and NAT-PMP, or NAT-PMP only (``upnp_igd``).
        ``public_lan`` (``Nat.NONE`` only): the LAN is a routed public /28 of 192.0.2.0/24
        (an ISP's routed prefix; up to 13 hosts, 8 such homes), so the hosts' addresses are
        public ones, not 198.18/15, which peers treat as a private LAN's."""
        nat = Nat(nat)
        self._role(name)
        if public_lan and (nat is not Nat.NONE or hosts > 13):
            raise ValueError("a public LAN is for a home without NAT, of up to 13 hosts")
        if not 0 <= hosts <= 200:
            raise ValueError("a home has 0-200 hosts")
        try:
            lan = next(self._public_lan_pool if public_lan else self._lans)
        except StopIteration:
            raise LabError("no home LAN left in the address plan") from None
        first_host = 2 if public_lan else 10
        router_ns = self._namespace(self.prefix + name)
        router = self._attach(name, router_ns, next(self._routers), "wan0", link)
        gateway = str(lan.network_address + 1)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=router_ns)
        ip_batch(
            router_ns,
            [
                "link add lan0 type bridge",
                "link set lan0 up",
                f"addr add {gateway}/{lan.prefixlen} dev lan0",
            ],
        )
        home = Home(name, nat, router, str(lan), gateway)
        for i in range(hosts):
            host_name = f"{name}-{i}"
            self._role(host_name)
            ns = self._namespace(self.prefix + host_name)
            addr = check_address(str(lan.network_address + first_host + i))
            ip(
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"l{i}",
                "netns",
                router_ns,
            )
            ip_batch(router_ns, [f"link set l{i} master lan0", f"link set l{i} up"])
            ip_batch(
                ns,
                [
                    f"addr add {addr}/{lan.prefixlen} dev eth0",
                    "link set eth0 up",
                    f"route add default via {gateway}",
                ],
            )
            host = Node(host_name, ns, addr, "eth0", router_ns, f"l{i}")
            home.hosts.append(host)
            self.nodes[host_name] = host
        run("nft", "-f", "-", ns=router_ns, input=natmod.ruleset(nat, str(lan)))
        if nat is Nat.NONE:
            self._public_lans.append((str(lan), router.addr))
            for other in self._uplinks:
                if other is not router:
                    ip(other.ns, "route", "add", str(lan), "via", router.addr)
        if nat is Nat.UPNP:
            self._start_miniupnpd(home, upnp_igd)
        self.nodes[name] = router
        self.homes[name] = home
        return home

    def _start_miniupnpd(self, home: Home, upnp_igd: bool = True) -> None:
        if shutil.which("miniupnpd") is None:
            raise LabError("miniupnpd not installed: apt-get install miniupnpd-nftables")
        if self.stun is None:
            node = self.add_host("stun")
            proc = self.run(
                node,
                [sys.executable, str(HERE / "stunserver.py"), node.addr, str(STUN_PORT)],
                name="stun",
            )
            proc.wait_for("^stun ready", timeout=15)
            self.stun = f"{node.addr}:{STUN_PORT}"
        conf = self.logdir / f"{home.name}-miniupnpd.conf"
        uuid = "3f2b7a4c-0000-4000-8000-" + os.urandom(6).hex()
        conf.write_text(natmod.miniupnpd_conf("wan0", self.stun, "lan0", home.lan_net, uuid,
                                             upnp_igd))
        pidfile = self.logdir / f"{home.name}-miniupnpd.pid"
        proc = self.run(
            home.router,
            ["miniupnpd", "-d", "-f", str(conf), "-P", str(pidfile)],
            name=f"{home.name}-miniupnpd",
        )
        proc.wait_for("Listening for NAT-PMP", timeout=15, stream="stderr")
        home.upnp = proc

    def shape(self, target: Node | Home, link: Link | None) -> None:
        """Reshape ``target``'s uplink both ways (a Home: its router's); None: unshaped.

        Delay, jitter and loss need the delay line, so a link that gets them later must have
        been made with some (``Link(rtt_ms=...)`` when the node was added)."""
        node = target.router if isinstance(target, Home) else target
        if node not in self._uplinks:
            raise LabError(f"{node.name} has no uplink to the internet segment")
        wants_delay = link is not None and link.needs_delay_line
        if node.delay_line is None and wants_delay:
            raise LabError(
                f"{node.name}'s link has no delay line: pass a Link with delay, "
                "jitter or loss when adding it"
            )
        if node.delay_line is not None:
            self._write_delay_config(node, link or Link())
            node.delay_line.popen.send_signal(signal.SIGHUP)
        self._set_rates(node, link)

    def add_dns(self, txt: dict[str, list[str]] | None = None, name: str = "dns") -> DnsServer:
        """A DNS server on the segment; every lab namespace's resolv.conf points at it
        (``ip netns exec`` mounts ``/etc/netns/NS/resolv.conf`` over ``/etc/resolv.conf``)."""
        if self.dns is not None:
            raise LabError("this lab already has a DNS server")
        node = self.add_host(name)
        path = self.logdir / "dns-records.json"
        records: dict = {"txt": dict(txt or {}), "a": {}}
        path.write_text(json.dumps(records))
        proc = self.run(
            node,
            [sys.executable, str(HERE / "dnsserver.py"), node.addr, str(DNS_PORT), str(path)],
            name=name,
        )
        self.dns = DnsServer(node, proc, path, records)
        proc.wait_for(r"^dns ready", timeout=15)
        for ns in self._namespaces:
            self._resolv_conf(ns)
        return self.dns

    def _resolv_conf(self, ns: str) -> None:
        assert self.dns is not None
        d = NETNS_ETC / ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {self.dns.node.addr}\n")

    # --- using -----------------------------------------------------------------------------

    def run(
        self,
        node: Node,
        argv: list[str],
        name: str | None = None,
        env: dict[str, str] | None = None,
        pipe: bool = False,
        cwd: str | Path | None = None,
    ) -> Proc:
        """Start ``argv`` inside ``node``'s namespace; it is stopped at :meth:`close`."""
        if self._closed:
            raise LabError("this lab is closed")
        proc = Proc(
            node.ns,
            argv,
            name or f"{node.name}-{len(self.procs)}",
            self.logdir,
            env=env,
            pipe=pipe,
            cwd=cwd,
        )
        self.procs.append(proc)
        return proc

    def exec(self, node: Node, *argv: str, check: bool = True, timeout: float = 30):
        """Run a command inside ``node``'s namespace and wait for it."""
        return run(*argv, ns=node.ns, check=check, timeout=timeout)

    def socket(
        self, node: Node, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM
    ) -> socket.socket:
        """A socket living in ``node``'s namespace, usable from this process."""
        with entered(node.ns):
            return socket.socket(family, type)
