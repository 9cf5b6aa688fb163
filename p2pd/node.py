"""One node: config -> identity -> host -> services, all inside one trio nursery.

:class:`Node` is the face the control socket and the CLI see. It speaks in peer-id
bytes and multiaddrs, hides py-libp2p's host behind a few coroutines, and turns
py-libp2p's assorted exceptions into :class:`NodeError` with a message a client can
show. Its lifetime is :meth:`Node.run`: the host listens while it runs, and
cancelling it closes every connection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import trio

from . import runtime
from .config import Config
from .errors import NodeError, P2PDError
from .identity import PrivateKeyRecord, to_key_pair
from .maddr import text as maddr_text
from .net import perf
from .net.host import AGENT_VERSION, HostOptions, separate_ephemeral_ports
from .net.ports import ConnectionListener, InboundHandler, PeerSummary
from .net.swarmhost import PeerId, SwarmHost, check_peer_id, peer_id_from_text
from .peerbook import PeerBook, PeerEntry

log = logging.getLogger(__name__)

#: Dials and stream opens that give no timeout get this one (the go daemon's default).
DEFAULT_TIMEOUT = 60.0
#: How often the peerstore is written to the datastore (and once more at shutdown).
PEERSTORE_SAVE_INTERVAL = 30.0
#: How often the connection manager compares the connection count with the high water mark.
CONN_CHECK_INTERVAL = 1.0
#: Handler changes within this window are announced with one identify push.
IDENTIFY_PUSH_DELAY = 0.1
#: The upstream go daemon's echo protocol (-echo).
ECHO_PROTOCOL = "/echo/1.0.0"
#: What one echo stream may carry before it is reset.
ECHO_MAX_BYTES = 16 << 20
#: go's -b: how many bootstrap peers to connect before the ready lines, within how long,
#: and how often to top the connections up again.
BOOTSTRAP_CONNECTIONS = 4
BOOTSTRAP_TIMEOUT = 60.0
BOOTSTRAP_RECHECK = 15 * 60.0


class Node:
    """A running libp2p host plus the services configured for it."""

    def __init__(self, config: Config, key: PrivateKeyRecord, datastore=None) -> None:
        """``datastore`` (home mode) keeps the peerstore across restarts; None: memory only."""
        import multiaddr

        self.config = config
        self._multiaddr = multiaddr
        self.key_pair = to_key_pair(key)
        # -noListenAddrs: no listener at all, outbound connections only (as go's NoListenAddrs)
        self.swarm_addrs = [] if config.no_listen else separate_ephemeral_ports(config.host_addrs)
        from .net.host import check_swarm_ports_free

        try:
            check_swarm_ports_free(self.swarm_addrs)
        except OSError as exc:
            raise NodeError(str(exc)) from None
        self.net = SwarmHost(
            self.key_pair,
            HostOptions(
                listen_addrs=self.swarm_addrs,
                announce_addrs=config.announce_addrs,
                conn_low=config.conn_low,
                conn_high=config.conn_high,
                conn_grace=config.conn_grace,
                max_conns_per_peer=config.max_conns_per_peer,
                max_streams_per_conn=config.max_streams_per_conn,
                muxer=config.muxer,
                security=config.security,
                quic=config.quic,
                limits=replace(config.limits, max_conns_per_peer=config.max_conns_per_peer,
                               max_streams_per_conn=config.max_streams_per_conn),
            ),
            AGENT_VERSION,
        )
        if config.no_announce:
            self.net.swarm.addresses.filter_out = self._no_announce
        from .net.bandwidth import BandwidthStats, TokenBucket

        traffic = self.net.swarm.traffic
        if config.max_upload_rate:
            traffic.upload = TokenBucket(config.max_upload_rate)
        if config.max_download_rate:
            traffic.download = TokenBucket(config.max_download_rate)
        self.bandwidth = BandwidthStats(traffic)
        self.peer_id = PeerId(self.net.me)
        self._nursery: trio.Nursery | None = None
        self.agent_version = AGENT_VERSION
        self.started_at: float | None = None
        self.datastore = datastore
        self.peerbook = PeerBook(datastore) if datastore is not None else None
        if config.perf:
            self.set_stream_handler(perf.PERF_PROTOCOL, self._serve_perf)
        if config.echo:
            self.set_stream_handler(ECHO_PROTOCOL, _serve_echo)
        self.dht = None
        self.repo = None
        self._own_datastore = None
        self._bootstrap_warned: set[str] = set()  # each bootstrap problem is said once
        if (config.dht or config.bitswap) and datastore is None:
            # Harness mode: a private RocksDB, removed at exit.
            import tempfile

            from .store import Datastore

            self._own_datastore = tempfile.mkdtemp(prefix="p2pd-node-")
            datastore = Datastore.open(self._own_datastore)
            self.datastore = datastore
        self.autonat = None
        if config.autonat_client or config.autonat_service or config.force_reachability:
            from .net.autonat import AutoNAT
            from .net.swarmhost import DialBackDialer

            self._dialer = DialBackDialer(AGENT_VERSION) if config.autonat_service else None
            self.autonat = AutoNAT(self, self.net.swarm.addresses, self._dialer,
                                   server=config.autonat_service,
                                   client=config.autonat_client,
                                   force=config.force_reachability or None,
                                   probe_interval=config.autonat_probe_interval,
                                   confidence=config.autonat_confidence)
            self.autonat.on_change.append(self._reachability_changed)
            self.autonat.attach()
        self.portmap = None
        if config.nat_port_map and not config.no_listen:
            from .net.portmap import PortMapper

            self.portmap = PortMapper(self._mappable_ports, self._mapped)
        self.relay = self.relay_service = self.hole_puncher = None
        if config.relay:
            from .net.dcutr import HolePuncher
            from .net.relay import RelayLimits, RelayService, RelayTransport

            addresses = self.net.swarm.addresses
            self.relay = RelayTransport(self.net.swarm, on_addrs=addresses.set_relay)
            self.hole_puncher = HolePuncher(self.net.swarm, self._punch_addrs)
            if config.relay_service:
                self.relay_service = RelayService(
                    self.net.swarm,
                    RelayLimits(max_reservations=config.relay_max_reservations,
                                max_circuits=config.relay_max_circuits,
                                time_limit=config.relay_time_limit,
                                data_limit=config.relay_data_limit,
                                buffer_size=config.relay_buffer_size),
                    own_addrs=addresses.for_peer)
        if config.dht:
            from .kad.service import DHTService

            self.dht = DHTService(self, datastore, server=self._dht_server_wanted())
            self.dht.attach()
        self.pubsub = None
        if config.pubsub:
            from .gossip.service import PubsubService

            # as the go daemon: -pubsubSign=false neither signs nor requires signatures
            self.pubsub = PubsubService(self, self.key_pair, mode=config.pubsub_router,
                                        sign=config.pubsub_sign,
                                        strict=config.pubsub_sign and config.pubsub_strict,
                                        params=pubsub_params(config))
            self.pubsub.attach()
        if config.bitswap:
            from .repo import Repo

            self.repo = Repo(self, datastore, cache_bytes=config.blockstore_cache_bytes,
                             provide=config.provide)
            self.repo.attach()

    def _dht_server_wanted(self) -> bool:
        """Server or client: as configured; "auto" follows AutoNAT when it runs (a server
        only while reachable from the internet), else is a server."""
        if self.config.dht_mode != "auto":
            return self.config.dht_mode == "server"
        if self.autonat is None or not (self.autonat.client or self.autonat.forced):
            return True
        return self.autonat.status == "public"

    def _reachability_changed(self, status: str) -> None:
        log.info("reachability is %s", status)
        if self.dht is not None:
            self.dht.set_server(self._dht_server_wanted())

    def _mappable_ports(self) -> list[int]:
        """TCP ports we listen on beyond loopback (what the router may forward)."""
        from .net.addrs import classify, split_ip, transport_port

        out = []
        for addr in self.net.swarm.listen_addrs:
            split = split_ip(addr)
            port = transport_port(split[1]) if split else None
            if split and port and port[0] == 0x06 and classify(split[0]) != "loopback" \
                    and len(split[1]) == 3 and split[0].version == 4:  # plain /tcp/PORT
                out.append(port[1])
        return list(dict.fromkeys(out))

    def _mapped(self, mappings: list[tuple[str, int, int]]) -> None:
        from .net.swarm import tcp_multiaddr

        self.net.swarm.addresses.set_mapped([tcp_multiaddr(ip, ext) for ip, ext, _ in mappings])
        if self.autonat is not None:
            self.autonat.kick()

    def _punch_addrs(self) -> list[bytes]:
        """What DCUtR offers: confirmed and candidate external addresses, public listen
        addresses, and what peers saw our connections from the listen port as."""
        from .net.addrs import split_ip, transport_port

        addrs = self.net.swarm.addresses
        ports = set()  # (tcp|udp, port) we listen on: TCP dials and QUIC leave from them
        for listen in self.net.swarm.listen_addrs:
            split = split_ip(listen)
            if split and (port := transport_port(split[1])):
                ports.add(port)
        seen = []
        for conns in self.net.swarm.conns.values():
            for c in conns:
                if c.transport == "relay" or not c.observed_addr or c.closed:
                    continue
                local = split_ip(c.local_addr)
                if local and transport_port(local[1]) in ports:
                    seen.append(c.observed_addr)
        return [*addrs.confirmed, *addrs.candidates(), *addrs.public(), *seen]

    def _relay_wanted(self) -> bool:
        """AutoRelay holds reservations while we are not reachable from the internet."""
        return self.autonat is not None and self.autonat.status == "private"

    def _relay_candidates(self) -> list[tuple[bytes, list[bytes]]]:
        """Trusted relays (``-trustedRelays``) if any, else connected peers serving hop."""
        from .net.relay_wire import HOP

        if self.config.trusted_relays:
            from .net.swarmhost import peer_id_from_text

            out = []
            for text in self.config.trusted_relays:
                ma = self._multiaddr.Multiaddr(text)
                out.append((peer_id_from_text(ma.value_for_protocol("p2p")), [ma.to_bytes()]))
            return out
        return [(p.peer_id, []) for p in self.net.peers()
                if HOP in self.net.peer_protocols(p.peer_id)]

    def reachability(self) -> dict:
        """Reachability, the addresses AutoNAT confirmed and the DHT mode, for status."""
        from .net.addrs import AddressManager

        addrs: AddressManager = self.net.swarm.addresses
        text = self._multiaddr.Multiaddr
        return {
            "Reachability": self.autonat.status if self.autonat is not None else "unknown",
            "External": [str(text(a)) for a in addrs.confirmed],
            "Candidates": [str(text(a)) for a in addrs.candidates()],
            "DHTMode": ("server" if self.dht.server else "client") if self.dht else "off",
            "DHTTable": len(self.dht.table) if self.dht else 0,  # peers in the routing table
            "AutoNAT": self.autonat.summary() if self.autonat is not None else None,
            "Reservations": [str(text(a)) for a in (self.relay.relay_addrs() if self.relay
                                                    else [])],
            "Relay": self.relay_service.summary() if self.relay_service is not None else None,
            "PortMap": self.portmap.summary() if self.portmap is not None else None,
            "HolePunch": self.hole_puncher.stats if self.hole_puncher is not None else None,
            "Connections": [{**c, "Addr": str(text(c["Addr"]))}
                            for c in self.net.connection_info()],
            "Limits": self.net.swarm.rcmgr.summary(),
            "Runtime": runtime.summary(),
            "Datastore": self._datastore_status(),
        }

    def _datastore_status(self) -> dict | None:
        """Damage the datastore met and mended online (Datastore.salvage), for status."""
        ds = self.datastore
        if ds is None:
            return None
        return {"Salvages": [{"Reason": r.get("reason"), "KeptAside": r.get("kept_aside"),
                              "Dropped": {k: v for k, v in r["dropped"].items() if v}}
                             for r in ds.salvages],
                "DroppedBlocks": ([str(c) for c in self.repo.store.salvage_dropped]
                                  if self.repo is not None else [])}

    async def _serve_perf(self, stream) -> None:
        try:
            await perf.serve(stream, self.config.perf_max_bytes)
        except Exception as exc:  # one peer's failure is logged, never raised further
            log.debug("perf request failed: %s", exc)

    # -- lifetime ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started()`` once listening."""
        if self.peerbook is not None:
            self.restore_peers(self.peerbook.load())
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(partial(self.net.run,
                                            conn_manager=self.config.conn_manager))
                if self.autonat is not None:
                    if self._dialer is not None:
                        await nursery.start(self._dialer.run)
                    await nursery.start(self.autonat.run)
                if self.portmap is not None:
                    await nursery.start(self.portmap.run)
                if self.hole_puncher is not None:
                    await nursery.start(self.hole_puncher.run)
                if self.relay is not None and self.config.auto_relay:
                    nursery.start_soon(self.relay.keep_reservations, self._relay_candidates,
                                       self._relay_wanted)
                self.started_at = trio.current_time()
                nursery.start_soon(self._sample_bandwidth)
                if self.peerbook is not None:
                    nursery.start_soon(self._save_peers_every, PEERSTORE_SAVE_INTERVAL)
                if self.repo is not None:
                    await nursery.start(self.repo.run)
                if self.pubsub is not None:
                    await nursery.start(self.pubsub.run)
                if self.config.bootstrap_strict:
                    await self._bootstrap_or_refuse(nursery)
                if self.dht is not None:
                    await nursery.start(self.dht.run, self._bootstrap_peers)
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self.peerbook is not None:
                self.save_peers()
            if self._own_datastore is not None:
                import shutil

                self.datastore.close()
                shutil.rmtree(self._own_datastore, ignore_errors=True)

    def _no_announce(self, addrs: list[bytes]) -> list[bytes]:
        """``addrs`` without what ``no_announce`` names (everything we tell anyone goes
        through it: ready lines, IDENTIFY, identify, provider records)."""
        from .net.host import filter_announced

        text = {str(self._multiaddr.Multiaddr(a)): a for a in addrs}
        return [text[t] for t in filter_announced(list(text), self.config.no_announce)]

    async def _bootstrap_peers(self) -> list[tuple[bytes, list[bytes]]]:
        """``(peer id, [addrs])`` for the bootstrap list (the public IPFS peers unless one is
        configured), ``/dnsaddr`` entries resolved through ``_dnsaddr`` TXT records."""
        from .net import dnsaddr

        if not self.config.bootstrap:
            return []
        texts = self.config.bootstrap_peers or list(dnsaddr.DEFAULT_BOOTSTRAP)
        found: dict[bytes, list[bytes]] = {}
        for text in texts:
            try:
                resolved = [text]
                if text.startswith("/dnsaddr/"):
                    resolver = dnsaddr.resolver_address(self.config.dns_resolver or None)
                    with trio.fail_after(15):
                        resolved = await dnsaddr.resolve(text, resolver)
                    if not resolved:
                        self._bootstrap_warning(
                            f"bootstrap: {text} resolved to no addresses (no _dnsaddr TXT "
                            f"records through DNS server {resolver[0]}:{resolver[1]}); check the "
                            "network or set [bootstrap] peers")
                for one in resolved:
                    ma = self._multiaddr.Multiaddr(one)
                    peer = peer_id_from_text(ma.value_for_protocol("p2p"))
                    bare = ma.decapsulate_code(self._multiaddr.protocols.P_P2P)
                    found.setdefault(peer, []).append(bare.to_bytes())
            except trio.TooSlowError:
                self._bootstrap_warning(f"bootstrap: resolving {text} timed out (15 s)")
            except Exception as exc:
                self._bootstrap_warning(f"bootstrap address {text} skipped: {exc}")
        return list(found.items())

    def _bootstrap_warning(self, text: str) -> None:
        """Warn once per distinct problem; a re-bootstrap that meets it again says so
        only at info level."""
        if text in self._bootstrap_warned:
            log.info("%s", text)
        else:
            self._bootstrap_warned.add(text)
            log.warning("%s", text)

    async def _bootstrap_or_refuse(self, nursery: trio.Nursery) -> None:
        """go's ``-b``: connect to up to four bootstrap peers (shuffled, one after another,
        60 s in all) before the node counts as started; none answering is a start-up error.
        Connected ones are tagged ``bootstrap``; every 15 minutes the count is topped up."""
        import random

        peers = await self._bootstrap_peers()
        random.shuffle(peers)
        connected = await self._connect_bootstrap(peers, BOOTSTRAP_CONNECTIONS)
        if connected == 0:
            raise NodeError(f"failed to connect to bootstrap peers (none of {len(peers)} "
                            "answered)" if peers else
                            "failed to connect to bootstrap peers (no usable entry in the "
                            "bootstrap list: each needs /p2p/ID, see the warnings above)")
        nursery.start_soon(self._keep_bootstrap_connections, peers)

    async def _connect_bootstrap(self, peers: list[tuple[bytes, list[bytes]]], want: int) -> int:
        connected = 0
        with trio.move_on_after(BOOTSTRAP_TIMEOUT):
            for peer, addrs in peers:
                if connected >= want:
                    break
                if self.net.connections(peer):
                    continue
                try:
                    await self.connect(peer, addrs, BOOTSTRAP_TIMEOUT)
                except NodeError as exc:
                    log.info("bootstrap peer not connected: %s", exc)
                    continue
                self.tag_peer(peer, "bootstrap", 1)
                connected += 1
        return connected

    async def _keep_bootstrap_connections(self, peers: list[tuple[bytes, list[bytes]]]) -> None:
        while True:
            await trio.sleep(BOOTSTRAP_RECHECK)
            have = len(self.net.swarm.conns)
            if have < BOOTSTRAP_CONNECTIONS:
                await self._connect_bootstrap(peers, BOOTSTRAP_CONNECTIONS - have)

    def remember_addrs(self, peer_raw: bytes, addrs: Sequence[bytes]) -> None:
        """Learned addresses of a peer (from the DHT) go into the peerstore."""
        self.net.remember_addrs(peer_raw, addrs)

    def own_addrs(self, remote_addr: bytes | None = None) -> list[bytes]:
        return self.net.own_addrs(remote_addr)

    # -- the persistent peerstore --------------------------------------------------------

    def snapshot_peers(self) -> list[PeerEntry]:
        """What the peerstore knows about other peers (addresses, protocols, keys)."""
        return [PeerEntry(peer, addrs, protocols, key, seen)
                for peer, addrs, protocols, key, seen in self.net.peer_entries()]

    def restore_peers(self, entries: Sequence[PeerEntry]) -> int:
        """Put saved entries back into the peerstore; returns how many were taken."""
        taken = 0
        for entry in entries:
            try:
                self.net.restore_entry(entry.peer_id, entry.addrs, entry.protocols,
                                       entry.public_key, entry.last_seen)
            except NodeError as exc:  # one bad entry never stops the start
                log.warning("peerstore entry %s not restored: %s", entry.peer_id.hex()[:16], exc)
                continue
            taken += 1
        return taken

    def save_peers(self) -> None:
        try:
            self.peerbook.save(self.snapshot_peers())
        except P2PDError as exc:
            log.warning("saving the peerstore failed: %s", exc)

    async def _sample_bandwidth(self) -> None:
        while True:
            self.bandwidth.sample(trio.current_time())
            await trio.sleep(1.0)

    def bandwidth_report(self) -> dict:
        """Bytes and rates in and out: in all, per protocol, per peer (base58 ids; peers
        past the counters' bound under "other"), and the caps; ``p2pd stats bw``."""
        from .blocks.multibase import b58encode

        report = self.bandwidth.report()
        report["Peers"] = {b58encode(p) if p else "other": v
                           for p, v in sorted(report["Peers"].items())}
        return report

    async def _save_peers_every(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.save_peers()

    # -- identity and addresses --------------------------------------------------------

    @property
    def peer_id_bytes(self) -> bytes:
        return self.net.me

    def listen_addr_bytes(self) -> list[bytes]:
        """Our swarm addresses (plain TCP first, then WebSocket), binary, as IDENTIFY
        answers: the ``-announceAddrs`` ones instead when given (go's AddrsFactory)."""
        return self.net.own_addrs()

    def listen_addrs(self) -> list[str]:
        """The same as text, as the go daemon prints them."""
        return [maddr_text(a) for a in self.net.own_addrs()]

    # -- peers -------------------------------------------------------------------------

    def parse_peer_id(self, raw: bytes) -> PeerId:
        """Peer id bytes (a multihash) from a client, validated."""
        return PeerId(check_peer_id(raw))

    def parse_multiaddr(self, raw: bytes | str):
        try:
            return self._multiaddr.Multiaddr(raw)
        except Exception as exc:
            shown = raw if isinstance(raw, str) else raw.hex()
            raise NodeError(f"malformed multiaddr {shown}: {exc}") from None

    async def connect(self, peer_raw: bytes, addrs: Sequence[bytes], timeout: float | None) -> None:
        """Connect to a peer at ``addrs`` (or at addresses the peerstore knows)."""
        await self.net.connect(peer_raw, addrs, timeout or DEFAULT_TIMEOUT)
        if self.dht is not None:  # the event may not have run yet: a lookup waits for it
            self.dht.peer_connected(bytes(peer_raw))

    async def disconnect(self, peer_raw: bytes) -> None:
        await self.net.disconnect(peer_raw)

    def peers(self) -> list[PeerSummary]:
        """Connected peers with the remote address of each live connection."""
        return self.net.peers()

    def peer_protocols(self, peer_raw: bytes) -> list[str]:
        return self.net.peer_protocols(peer_raw)

    def peer_addrs(self, peer_raw: bytes) -> list[bytes]:
        return self.net.peer_addrs(peer_raw)

    def live_addrs(self, peer_raw: bytes) -> list[bytes]:
        return self.net.live_addrs(peer_raw)

    def knows_peer(self, peer_raw: bytes) -> bool:
        return self.net.knows_peer(peer_raw)

    # -- streams -----------------------------------------------------------------------

    async def open_stream(self, peer_raw: bytes, protocols: Sequence[str], timeout: float | None):
        """Open a stream to a connected (or dialable) peer; return ``(stream, proto, addr)``."""
        return await self.net.open_stream(peer_raw, protocols, timeout or DEFAULT_TIMEOUT)

    def stream_peer(self, stream) -> bytes:
        """The remote peer of a stream."""
        return self.net.stream_peer(stream)

    def add_listener(self, listener: ConnectionListener) -> None:
        """``listener`` hears of every connection from now on (the Host port's events)."""
        self.net.add_listener(listener)

    def stream_remote_addr(self, stream) -> bytes:
        """The remote multiaddr of the connection a stream runs on."""
        return self.net.stream_remote_addr(stream)

    def stream_memory(self, stream):
        """The stream's peer's memory share (p2pd/net/rcmgr.py) framed readers count in."""
        return self.net.stream_memory(stream)

    def set_stream_handler(self, protocol: str, handler: InboundHandler) -> None:
        self.net.set_stream_handler(protocol, handler)  # identify push follows by itself

    def remove_stream_handler(self, protocol: str) -> None:
        self.net.remove_stream_handler(protocol)

    # -- connection manager ------------------------------------------------------------

    def tag_peer(self, peer_raw: bytes, tag: str, weight: int) -> None:
        self.net.tag_peer(peer_raw, tag, weight)

    def untag_peer(self, peer_raw: bytes, tag: str) -> None:
        self.net.untag_peer(peer_raw, tag)

    def peer_tag_value(self, peer_raw: bytes) -> int:
        return self.net.peer_tag_value(peer_raw)

    async def trim(self, *, respect_grace: bool = False) -> int:
        """Close the least valuable connections down to the low water mark (untagged and
        newest first; the automatic trim spares peers within the grace period, an explicit
        TRIM request does not). Returns how many peers were closed."""
        return await self.net.trim(self.config.conn_low, self.config.conn_grace,
                                   respect_grace=respect_grace)

def pubsub_params(config: Config):
    """The gossipsub parameters the config asks for (``-gossipsubHeartbeat*``; 0 keeps
    go-libp2p-pubsub's 1 s interval and 100 ms initial delay)."""
    from .gossip.router import Params

    params = Params()
    if config.gossipsub_heartbeat_interval > 0:
        params.heartbeat_interval = config.gossipsub_heartbeat_interval
    if config.gossipsub_heartbeat_initial_delay > 0:
        params.heartbeat_initial_delay = config.gossipsub_heartbeat_initial_delay
    return params


async def _serve_echo(stream) -> None:
    """/echo/1.0.0: write back what is read until the remote closes (bounded)."""
    from .net.streams import close_quietly, read_some, reset_quietly

    echoed = 0
    try:
        while echoed < ECHO_MAX_BYTES:
            data = await read_some(stream)
            if not data:
                break
            await stream.write(data)
            echoed += len(data)
        else:
            await reset_quietly(stream)
            return
        await close_quietly(stream)
    except Exception as exc:
        log.debug("echo stream ended: %r", exc)
        await reset_quietly(stream)
