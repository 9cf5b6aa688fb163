"""One node: config -> identity -> host -> services, all inside one trio nursery.

:class:`Node` is the face the control socket and the CLI see. It speaks in peer-id
bytes and multiaddrs, hides py-libp2p's host behind a few coroutines, and turns
py-libp2p's assorted exceptions into :class:`NodeError` with a message a client can
show. Its lifetime is :meth:`Node.run`: the host listens while it runs, and
cancelling it closes every connection.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import trio

from .config import Config
from .errors import P2PDError
from .identity import PrivateKeyRecord, to_key_pair
from .net import perf
from .net.events import SwarmNotifee
from .net.host import AGENT_VERSION, HostOptions, build_host, separate_ephemeral_ports
from .net.ports import ConnectionListener, InboundHandler, PeerSummary
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


class NodeError(P2PDError):
    """A node operation failed; the message is meant for the control client."""


class Node:
    """A running libp2p host plus the services configured for it."""

    def __init__(self, config: Config, key: PrivateKeyRecord, datastore=None) -> None:
        """``datastore`` (home mode) keeps the peerstore across restarts; None: memory only."""
        import multiaddr

        self.config = config
        self._multiaddr = multiaddr
        self.key_pair = to_key_pair(key)
        self.swarm_addrs = separate_ephemeral_ports(config.host_addrs)
        from .net.host import check_swarm_ports_free

        try:
            check_swarm_ports_free(self.swarm_addrs)
        except OSError as exc:
            raise NodeError(str(exc)) from None
        self.host = build_host(
            self.key_pair,
            HostOptions(
                listen_addrs=self.swarm_addrs,
                announce_addrs=config.announce_addrs,
                conn_low=config.conn_low,
                conn_high=config.conn_high,
                conn_grace=config.conn_grace,
                max_conns_per_peer=config.max_conns_per_peer,
                max_streams_per_conn=config.max_streams_per_conn,
            ),
        )
        self.peer_id = self.host.get_id()
        self._nursery: trio.Nursery | None = None
        self._push_pending = False
        self.agent_version = AGENT_VERSION
        self.started_at: float | None = None
        self.datastore = datastore
        self.peerbook = PeerBook(datastore) if datastore is not None else None
        self._last_seen: dict[bytes, float] = {}
        if config.perf:
            self.set_stream_handler(perf.PERF_PROTOCOL, self._serve_perf)
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
        if config.dht:
            from .kad.service import DHTService

            self.dht = DHTService(self, datastore, server=config.dht_mode != "client")
            self.dht.attach()
        self.pubsub = None
        if config.pubsub:
            from .gossip.service import PubsubService

            self.pubsub = PubsubService(self, self.key_pair, mode=config.pubsub_router,
                                        sign=config.pubsub_sign, strict=config.pubsub_strict)
            self.pubsub.attach()
        if config.bitswap:
            from .repo import Repo

            self.repo = Repo(self, datastore, cache_bytes=config.blockstore_cache_bytes,
                             provide=config.provide)
            self.repo.attach()

    async def _serve_perf(self, stream) -> None:
        try:
            await perf.serve(stream, self.config.perf_max_bytes)
        except Exception as exc:  # one peer's failure is logged, never raised further
            log.debug("perf request failed: %s", exc)

    # -- lifetime ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started()`` once listening."""
        listen = [self._multiaddr.Multiaddr(a) for a in self.swarm_addrs]
        if self.peerbook is not None:
            self.restore_peers(self.peerbook.load())
        async with self.host.run(listen_addrs=listen):
            self.started_at = trio.current_time()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.peerbook is not None:
                        nursery.start_soon(self._save_peers_every, PEERSTORE_SAVE_INTERVAL)
                    if self.config.conn_manager:
                        nursery.start_soon(self._keep_below_high_water)
                    if self.repo is not None:
                        await nursery.start(self.repo.run)
                    if self.pubsub is not None:
                        await nursery.start(self.pubsub.run)
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
                    peer = self.parse_peer_id(_peer_from_multiaddr(ma)).to_bytes()
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

    def remember_addrs(self, peer_raw: bytes, addrs: Sequence[bytes]) -> None:
        """Learned addresses of a peer (from the DHT) go into the peerstore."""
        try:
            peer = self.parse_peer_id(peer_raw)
            maddrs = [self._multiaddr.Multiaddr(a) for a in addrs[:16]]
            self.host.get_peerstore().add_addrs(peer, maddrs, 0)
        except Exception as exc:
            log.debug("addresses for %s not kept: %s", peer_raw.hex()[:16], exc)

    def own_addrs(self) -> list[bytes]:
        return [a.to_bytes() for a in self.listen_addrs()]

    # -- the persistent peerstore --------------------------------------------------------

    def snapshot_peers(self) -> list[PeerEntry]:
        """What the peerstore knows about other peers (addresses, protocols, keys)."""
        store = self.host.get_peerstore()
        connected = {p.to_bytes() for p in self.host.get_network().get_connections_map()}
        now = time.time()
        out = []
        for peer in store.peer_ids():
            if peer == self.peer_id:
                continue
            raw = peer.to_bytes()
            addrs = self.peer_addrs(raw)
            try:
                protocols = [str(p) for p in store.get_protocols(peer)]
            except Exception:
                protocols = []
            try:
                key = store.pubkey(peer).serialize()
            except Exception:
                key = b""
            if not addrs and not key:
                continue
            if raw in connected or raw not in self._last_seen:
                self._last_seen[raw] = now
            out.append(PeerEntry(raw, addrs, protocols, key, self._last_seen[raw]))
        return out

    def restore_peers(self, entries: Sequence[PeerEntry]) -> int:
        """Put saved entries back into the peerstore; returns how many were taken."""
        from libp2p.crypto.serialization import deserialize_public_key
        from libp2p.peer.id import ID

        store = self.host.get_peerstore()
        taken = 0
        for entry in entries:
            try:
                peer = ID(entry.peer_id)
                if peer == self.peer_id:
                    continue
                addrs = []
                for raw in entry.addrs:
                    try:
                        addrs.append(self._multiaddr.Multiaddr(raw))
                    except Exception:
                        continue
                if addrs:
                    store.add_addrs(peer, addrs, 0)
                if entry.protocols:
                    store.add_protocols(peer, entry.protocols)
                if entry.public_key:
                    store.add_pubkey(peer, deserialize_public_key(entry.public_key))
            except Exception as exc:  # one bad entry never stops the start
                log.warning("peerstore entry %s not restored: %s", entry.peer_id.hex()[:16], exc)
                continue
            self._last_seen[entry.peer_id] = entry.last_seen
            taken += 1
        return taken

    def save_peers(self) -> None:
        try:
            self.peerbook.save(self.snapshot_peers())
        except P2PDError as exc:
            log.warning("saving the peerstore failed: %s", exc)

    async def _save_peers_every(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.save_peers()

    # -- identity and addresses --------------------------------------------------------

    @property
    def peer_id_bytes(self) -> bytes:
        return self.peer_id.to_bytes()

    def listen_addrs(self) -> list:
        """Our swarm addresses without the ``/p2p/<id>`` suffix, as the go daemon prints."""
        out, seen = [], set()
        for addr in self.host.get_addrs():
            try:
                addr = addr.decapsulate_code(self._multiaddr.protocols.P_P2P)
            except Exception:  # no /p2p component
                pass
            if str(addr) not in seen:
                seen.add(str(addr))
                out.append(addr)
        # Plain TCP first, then WebSocket: a stable order launchers can rely on.
        out.sort(key=lambda a: "/ws" in str(a))
        return out

    # -- peers -------------------------------------------------------------------------

    def parse_peer_id(self, raw: bytes):
        """Peer id bytes (a multihash) from a client, validated."""
        from libp2p.peer.id import ID

        if not raw:
            raise NodeError("missing peer id")
        try:
            peer = ID(bytes(raw))
            peer.to_base58()
        except Exception:
            raise NodeError("malformed peer id") from None
        return peer

    def parse_multiaddr(self, raw: bytes | str):
        try:
            return self._multiaddr.Multiaddr(raw)
        except Exception as exc:
            shown = raw if isinstance(raw, str) else raw.hex()
            raise NodeError(f"malformed multiaddr {shown}: {exc}") from None

    async def connect(self, peer_raw: bytes, addrs: Sequence[bytes], timeout: float | None) -> None:
        """Connect to a peer at ``addrs`` (or at addresses the peerstore knows)."""
        from libp2p.peer.peerinfo import PeerInfo

        peer = self.parse_peer_id(peer_raw)
        if peer == self.peer_id:
            raise NodeError("cannot connect to ourselves")
        maddrs = [self.parse_multiaddr(a) for a in addrs]
        if maddrs:
            # Addresses named by the caller (the user, a bootstrap retry) are dialled even
            # if the peer failed a minute ago: py-libp2p's swarm would refuse the dial for
            # 60 s from its negative cache, so a re-bootstrap could never succeed sooner.
            unblock = getattr(self.host.get_network(), "unblock_peer", None)
            if unblock is not None:
                unblock(peer)
        with trio.move_on_after(timeout or DEFAULT_TIMEOUT) as scope:
            try:
                await self.host.connect(PeerInfo(peer, maddrs))
            except Exception as exc:
                raise NodeError(f"failed to connect to {peer}: {_describe(exc)}") from None
        if scope.cancelled_caught:
            raise NodeError(f"failed to connect to {peer}: timed out")
        if self.dht is not None:  # the notifee may not have run yet: a lookup waits for it
            self.dht.peer_connected(peer_raw)

    async def disconnect(self, peer_raw: bytes) -> None:
        peer = self.parse_peer_id(peer_raw)
        try:
            await self.host.disconnect(peer)
        except Exception as exc:
            raise NodeError(f"failed to disconnect from {peer}: {_describe(exc)}") from None

    def peers(self) -> list[PeerSummary]:
        """Connected peers with the remote address of each live connection."""
        out = []
        for peer, conns in self.host.get_network().get_connections_map().items():
            addrs: list[bytes] = []
            for conn in conns:
                if getattr(conn, "is_closed", False):
                    continue
                for addr in _remote_addrs(conn):
                    if addr.to_bytes() not in addrs:
                        addrs.append(addr.to_bytes())
            if addrs or conns:
                out.append(PeerSummary(peer.to_bytes(), addrs))
        return out

    def peer_protocols(self, peer_raw: bytes) -> list[str]:
        peer = self.parse_peer_id(peer_raw)
        try:
            return [str(p) for p in self.host.get_peerstore().get_protocols(peer)]
        except Exception:
            return []

    def peer_addrs(self, peer_raw: bytes) -> list[bytes]:
        peer = self.parse_peer_id(peer_raw)
        try:
            addrs = self.host.get_peerstore().addrs(peer)
        except Exception:
            addrs = []
        out = []
        for addr in addrs:
            try:
                addr = addr.decapsulate_code(self._multiaddr.protocols.P_P2P)
            except Exception:
                pass
            if addr.to_bytes() not in out:
                out.append(addr.to_bytes())
        return out

    def knows_peer(self, peer_raw: bytes) -> bool:
        peer = self.parse_peer_id(peer_raw)
        return peer in self.host.get_peerstore().peer_ids()

    # -- streams -----------------------------------------------------------------------

    async def open_stream(self, peer_raw: bytes, protocols: Sequence[str], timeout: float | None):
        """Open a stream to a connected (or dialable) peer; return ``(stream, proto, addr)``."""
        from libp2p.custom_types import TProtocol

        peer = self.parse_peer_id(peer_raw)
        if not protocols:
            raise NodeError("no protocol given for the stream")
        with trio.move_on_after(timeout or DEFAULT_TIMEOUT) as scope:
            try:
                stream = await self.host.new_stream(peer, [TProtocol(p) for p in protocols])
            except Exception as exc:
                raise NodeError(f"failed to open a stream to {peer}: {_describe(exc)}") from None
        if scope.cancelled_caught:
            raise NodeError(f"failed to open a stream to {peer}: timed out")
        proto = str(stream.get_protocol() or protocols[0])
        return stream, proto, self.stream_remote_addr(stream)

    def stream_peer(self, stream) -> bytes:
        """The remote peer of a stream (empty if unknown)."""
        try:
            return stream.muxed_conn.peer_id.to_bytes()
        except Exception:
            return b""

    def add_listener(self, listener: ConnectionListener) -> None:
        """``listener`` hears of every connection from now on (the Host port's events)."""
        self.host.get_network().register_notifee(_ListenerNotifee(listener))

    def stream_remote_addr(self, stream) -> bytes:
        """The remote multiaddr of the connection a stream runs on (empty if unknown)."""
        conn = getattr(stream, "muxed_conn", None)
        swarm_conn = getattr(stream, "swarm_conn", None)
        for candidate in (swarm_conn, conn):
            if candidate is None:
                continue
            addrs = _remote_addrs(candidate)
            if addrs:
                return addrs[0].to_bytes()
        return b""

    def set_stream_handler(self, protocol: str, handler: InboundHandler) -> None:
        from libp2p.custom_types import TProtocol

        self.host.set_stream_handler(TProtocol(protocol), handler)
        self._protocols_changed()

    def remove_stream_handler(self, protocol: str) -> None:
        from libp2p.custom_types import TProtocol

        self.host.remove_stream_handler(TProtocol(protocol))
        self._protocols_changed()

    def _protocols_changed(self) -> None:
        """Tell connected peers (identify push) once the node runs; a burst of handler
        changes is one push."""
        if self._nursery is None or self._push_pending:
            return
        self._push_pending = True
        self._nursery.start_soon(self._push_identify)

    async def _push_identify(self) -> None:
        from libp2p.identity.identify_push.identify_push import push_identify_to_peers

        await trio.sleep(IDENTIFY_PUSH_DELAY)
        self._push_pending = False
        with trio.move_on_after(30):
            try:
                await push_identify_to_peers(self.host)
            except Exception as exc:  # a peer without push support is not our problem
                log.debug("identify push failed: %s", exc)

    # -- connection manager ------------------------------------------------------------

    async def _keep_below_high_water(self) -> None:
        """The connection manager's automatic side: above the high water mark, trim to
        the low one (sparing fresh and protected peers), checked every second."""
        while True:
            await trio.sleep(CONN_CHECK_INTERVAL)
            if len(self.host.get_network().get_connections_map()) > self.config.conn_high:
                closed = await self.trim(respect_grace=True)
                if closed:
                    log.info("connection manager: closed %d peers above the high water mark",
                             closed)

    def tag_peer(self, peer_raw: bytes, tag: str, weight: int) -> None:
        peer = self.parse_peer_id(peer_raw)
        if not tag:
            raise NodeError("missing tag")
        self.host.conn_manager.tag_peer(peer, tag, int(weight))

    def untag_peer(self, peer_raw: bytes, tag: str) -> None:
        peer = self.parse_peer_id(peer_raw)
        if not tag:
            raise NodeError("missing tag")
        self.host.conn_manager.untag_peer(peer, tag)

    def peer_tag_value(self, peer_raw: bytes) -> int:
        return self.host.conn_manager.get_tag_value(self.parse_peer_id(peer_raw))

    async def trim(self, *, respect_grace: bool = False) -> int:
        """Close the least valuable connections down to the low water mark.

        Peers are ranked by the sum of their tag weights (untagged first, then the
        newest); protected peers are never closed. The automatic trim (above the high
        water mark) also spares peers connected within the grace period; an explicit
        TRIM request does not. Returns how many peers were closed.
        """
        network = self.host.get_network()
        conns = network.get_connections_map()
        excess = len(conns) - self.config.conn_low
        if excess <= 0:
            return 0
        tags = self.host.conn_manager
        fresh_after = time.time() - self.config.conn_grace
        ranked = sorted(
            (p for p in conns if not tags.is_protected(p)
             and not (respect_grace and _newest(conns[p]) > fresh_after)),
            key=lambda p: (tags.get_tag_value(p), -_newest(conns[p])),
        )
        closed = 0
        for peer in ranked[:excess]:
            try:
                await network.close_peer(peer)
                closed += 1
            except Exception as exc:  # keep trimming the others
                log.debug("trim: closing %s failed: %s", peer, exc)
        return closed


class _ListenerNotifee(SwarmNotifee):
    """py-libp2p's swarm events, as the Host port's connection events."""

    def __init__(self, listener: ConnectionListener) -> None:
        self.listener = listener

    async def connected(self, network, conn) -> None:
        try:
            peer = conn.muxed_conn.peer_id.to_bytes()
        except Exception:
            return
        self.listener.peer_connected(peer)

    async def disconnected(self, network, conn) -> None:
        try:
            peer_id = conn.muxed_conn.peer_id
            left = [c for c in network.get_connections_map().get(peer_id, ())
                    if c is not conn and not getattr(c, "is_closed", False)]
        except Exception:
            return
        if not left:  # the peer's last connection went
            self.listener.peer_disconnected(peer_id.to_bytes())


def _peer_from_multiaddr(ma) -> bytes:
    from libp2p.peer.id import ID

    return ID.from_base58(ma.value_for_protocol("p2p")).to_bytes()


def _newest(conns) -> float:
    """Wall-clock time the newest live connection was made (py-libp2p's SwarmConn keeps it
    as ``_created_at``); 0 when unknown."""
    stamps = []
    for c in conns:
        stamp = getattr(c, "_created_at", None)
        stamps.append(float(stamp) if isinstance(stamp, (int, float)) else 0.0)
    return max(stamps, default=0.0) if all(math.isfinite(s) for s in stamps) else 0.0


def _remote_addrs(conn) -> list:
    try:
        return list(conn.get_transport_addresses())
    except Exception:
        return []


def _describe(exc: BaseException) -> str:
    """A one-line description of a py-libp2p failure, innermost cause included."""
    parts = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip() or type(exc).__name__
        if text not in parts:
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    return ": ".join(parts)[:500]
