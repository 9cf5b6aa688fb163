"""The Host port over our swarm: what :class:`p2pd.node.Node` offers the services and the
control socket about connections, streams and peers, with client-facing errors.

It adds to :class:`~p2pd.net.swarm.Swarm` the daemon's vocabulary: peer ids and
multiaddrs as bytes checked at the edge (a malformed one is a :class:`NodeError` naming
it), timeouts for dials and stream opens, the connection manager (tags, trim to the low
water mark, the high-water watchdog, the grace period), the per-connection stream cap, and
the peer store's entries for the persistent peerbook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import trio

from ..blocks.multibase import b58decode, b58encode
from ..errors import NodeError
from ..peerkeys import PeerKeyError, peer_id_from_public_key
from .addrs import dialable_from_here, quic_target
from .host import HostOptions
from .ports import ConnectionListener, InboundHandler, PeerSummary
from .swarm import (
    MPLEX,
    NOISE,
    TLS,
    YAMUX,
    DialError,
    Identity,
    Stream,
    StreamError,
    StreamReset,
    Swarm,
    SwarmOptions,
    dial_target,
    strip_p2p,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
CONN_CHECK_INTERVAL = 1.0
MAX_PEER_ID = 128


def show_peer(peer: bytes) -> str:
    return b58encode(peer)


def check_peer_id(raw: bytes) -> bytes:
    """Peer id bytes from a client or a peer: a multihash (identity or sha2-256)."""
    raw = bytes(raw or b"")
    if not raw:
        raise NodeError("missing peer id")
    ok = (len(raw) <= MAX_PEER_ID and len(raw) >= 2 and raw[0] in (0x00, 0x12)
          and raw[1] == len(raw) - 2 and (raw[0] == 0x00 or raw[1] == 32))
    if not ok:
        raise NodeError("malformed peer id")
    return raw


#: HKDF info of the QUIC stateless reset key (go-libp2p's string)
QUIC_RESET_KEY_INFO = b"libp2p quic stateless reset key"


def identity_of(key_pair) -> Identity:
    """Our swarm identity from a key pair (p2pd.keys, any key type it holds)."""
    public = key_pair.public_key.serialize()
    private = key_pair.private_key
    derive = getattr(private, "derive", None)
    return Identity(public, peer_id_from_public_key(public), private.sign,
                    derive(QUIC_RESET_KEY_INFO) if derive is not None else None)


class SwarmHost:
    """Connections, streams and peers for one node, over :class:`Swarm`."""

    def __init__(self, key_pair, options: HostOptions, agent_version: str) -> None:
        muxers = (YAMUX, MPLEX) if options.muxer != "mplex" else (MPLEX, YAMUX)
        self.options = options
        self.swarm = Swarm(identity_of(key_pair), SwarmOptions(
            muxers=muxers, agent_version=agent_version,
            dial_timeout=options.dial_timeout,
            max_conns_per_peer=options.max_conns_per_peer,
            max_streams_per_conn=options.max_streams_per_conn,
            limits=options.limits,
            security=[{"tls": TLS, "noise": NOISE}[name] for name in options.security]))
        self.me = self.swarm.me
        self.tags: dict[bytes, dict[str, int]] = {}
        self.protected: set[bytes] = set()
        self.last_seen: dict[bytes, float] = {}
        self.swarm.listeners.append(self)
        self._order_memo: tuple[tuple, list[bytes]] | None = None
        self._listen = [_swarm_addr(a) for a in options.listen_addrs]
        if options.quic:
            # aioquic and its TLS cost ~55 ms to import: a node that neither listens on nor
            # dials a quic-v1 address never pays it
            LazyQuic(self.swarm)
        else:
            skipped = [a for a in self._listen if quic_target(a) is not None]
            if skipped:
                log.warning("QUIC is off (-quic=false): not listening on %d quic-v1 address(es)",
                            len(skipped))
            self._listen = [a for a in self._listen if quic_target(a) is None]
        # Hole punching dials from the listen port (SO_REUSEPORT). Only for fixed ports: a
        # /tcp/0 listener with SO_REUSEPORT may be handed a port another process shares.
        tcp = [dial_target(a) for a in self._listen if dial_target(a) is not None]
        self.swarm.options.reuse_port = bool(tcp) and all(t[1] != 0 for t in tcp)
        if options.announce_addrs:
            self.swarm.addresses.announce = [_swarm_addr(a) for a in options.announce_addrs]

    # -- lifetime ------------------------------------------------------------------------
    async def run(self, *, conn_manager: bool = False,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.swarm.run, self._listen)
            if conn_manager:
                nursery.start_soon(self._keep_below_high_water)
            task_status.started()
            await trio.sleep_forever()

    # connection events: the peer store's "last seen"
    def peer_connected(self, peer: bytes) -> None:
        self.last_seen[peer] = time.time()

    def peer_disconnected(self, peer: bytes) -> None:
        self.last_seen[peer] = time.time()

    # -- identity and addresses ------------------------------------------------------------
    @property
    def peer_id_bytes(self) -> bytes:
        return self.me

    def listen_addrs(self) -> list[bytes]:
        """Our bound swarm addresses, plain TCP first, then WebSocket, then QUIC."""
        addrs = list(dict.fromkeys(self.swarm.listen_addrs))
        addrs.sort(key=_addr_order)
        return addrs

    def own_addrs(self, remote_addr: bytes | None = None) -> list[bytes]:
        addrs = self.swarm.addresses
        found = addrs.local() if remote_addr is None else addrs.for_peer(remote_addr)
        key = tuple(found)
        memo = self._order_memo
        if memo is None or memo[0] != key:  # the same addresses: the same order
            found.sort(key=_addr_order)  # TCP before WS before QUIC
            memo = self._order_memo = (key, found)
        return list(memo[1])

    def connection_info(self) -> list[dict]:
        """Each live connection: peer, remote address, direction, transport, security,
        muxer (the control protocol's STATUS and ``p2pd peers`` show them)."""
        out = []
        for peer, conns in self.swarm.conns.items():
            for c in conns:
                if c.closed:
                    continue
                security = {"/tls/1.0.0": "tls", "/noise": "noise"}.get(c.security, c.security)
                out.append({"Peer": show_peer(peer), "Addr": c.remote_addr,
                            "Direction": c.direction, "Transport": c.transport,
                            "Security": security,
                            "Muxer": "quic" if c.transport == "quic" else c.muxer})
        return out

    # -- handlers and streams ----------------------------------------------------------------
    def set_stream_handler(self, protocol: str, handler: InboundHandler) -> None:
        self.swarm.set_stream_handler(protocol, handler)

    def remove_stream_handler(self, protocol: str) -> None:
        self.swarm.remove_stream_handler(protocol)

    async def open_stream(self, peer_raw: bytes, protocols: Sequence[str],
                          timeout: float | None):
        peer = check_peer_id(peer_raw)
        if not protocols:
            raise NodeError("no protocol given for the stream")
        timeout = timeout or DEFAULT_TIMEOUT
        try:
            with trio.fail_after(timeout):
                conn = await self.swarm.dial(peer, timeout=timeout)
                # one protocol identify said the peer speaks: negotiated with the first write
                lazy = len(protocols) == 1 and \
                    protocols[0] in self.swarm.peerstore.protocols.get(peer, ())
                stream = await conn.open_stream(protocols, timeout, lazy=lazy)
        except trio.TooSlowError:
            raise NodeError(f"failed to open a stream to {show_peer(peer)}: timed out") from None
        except (DialError, StreamError, StreamReset, ConnectionError) as exc:
            raise NodeError(f"failed to open a stream to {show_peer(peer)}: {exc}") from None
        return stream, stream.protocol, stream.conn.remote_addr

    def stream_peer(self, stream: Stream) -> bytes:
        return stream.conn.peer

    def stream_remote_addr(self, stream: Stream) -> bytes:
        return stream.conn.remote_addr

    def stream_memory(self, stream: Stream):
        return self.swarm.rcmgr.memory.for_buffers(stream.conn.peer)

    # -- connections ---------------------------------------------------------------------------
    async def connect(self, peer_raw: bytes, addrs: Sequence[bytes], timeout: float | None) -> None:
        peer = check_peer_id(peer_raw)
        if peer == self.me:
            raise NodeError("cannot connect to ourselves")
        checked = [_client_addr(a) for a in addrs]
        if checked:  # addresses named by the caller are dialled even after a failure
            self.swarm.peerstore.add_addrs(peer, checked)
            for a in checked:
                self.swarm._backoff.pop(strip_p2p(a), None)
        timeout = timeout or DEFAULT_TIMEOUT
        try:
            conn = await self.swarm.dial(peer, timeout=timeout)
        except DialError as exc:
            raise NodeError(f"failed to connect to {show_peer(peer)}: {exc}") from None
        # as go's host.Connect: the call returns once the peer is identified (bounded)
        with trio.move_on_after(min(timeout, 10.0)):
            await conn.identified.wait()

    async def disconnect(self, peer_raw: bytes) -> None:
        await self.swarm.disconnect(check_peer_id(peer_raw))

    def peers(self) -> list[PeerSummary]:
        out = []
        for peer, conns in self.swarm.conns.items():
            addrs = list(dict.fromkeys(c.remote_addr for c in conns if not c.closed))
            out.append(PeerSummary(peer, addrs))
        return out

    def connections(self, peer: bytes):
        return [c for c in self.swarm.conns.get(peer, ()) if not c.closed]

    def peer_protocols(self, peer_raw: bytes) -> list[str]:
        return list(self.swarm.peerstore.protocols.get(check_peer_id(peer_raw), ()))

    def peer_addrs(self, peer_raw: bytes) -> list[bytes]:
        return self.swarm.peerstore.peer_addrs(check_peer_id(peer_raw))

    def live_addrs(self, peer_raw: bytes) -> list[bytes]:
        """Where a peer we are connected to can be dialled, on its own word: the listen
        addresses of its latest identify (push included) and the address an outbound
        connection of ours reached it at, those a dial from here could use; [] when we are
        not connected (then what the peer store holds may be stale)."""
        peer = check_peer_id(peer_raw)
        conns = self.connections(peer)
        if not conns:
            return []
        dialled = [c.remote_addr for c in conns if c.direction == "outbound"]
        own = self.swarm.peerstore.listen.get(peer, [])
        addrs = [a for a in dict.fromkeys([*own, *dialled]) if self.swarm._dialable(a)]
        return dialable_from_here(addrs, [c.remote_addr for c in conns])

    def peer_agent(self, peer_raw: bytes) -> str:
        return self.swarm.peerstore.agents.get(check_peer_id(peer_raw), "")

    def knows_peer(self, peer_raw: bytes) -> bool:
        peer = check_peer_id(peer_raw)
        store = self.swarm.peerstore
        return peer in store.addrs or peer in store.keys or peer in self.swarm.conns

    def remember_addrs(self, peer_raw: bytes, addrs: Sequence[bytes]) -> None:
        try:
            peer = check_peer_id(peer_raw)
        except NodeError:
            return
        self.swarm.peerstore.add_addrs(peer, [bytes(a) for a in addrs[:16]
                                              if self.swarm._dialable(bytes(a))])

    def add_listener(self, listener: ConnectionListener) -> None:
        self.swarm.listeners.append(listener)

    # -- the connection manager ------------------------------------------------------------------
    def tag_peer(self, peer_raw: bytes, tag: str, weight: int) -> None:
        peer = check_peer_id(peer_raw)
        if not tag:
            raise NodeError("missing tag")
        self.tags.setdefault(peer, {})[tag] = int(weight)

    def untag_peer(self, peer_raw: bytes, tag: str) -> None:
        peer = check_peer_id(peer_raw)
        if not tag:
            raise NodeError("missing tag")
        tags = self.tags.get(peer)
        if tags is not None:
            tags.pop(tag, None)
            if not tags:
                del self.tags[peer]

    def peer_tag_value(self, peer_raw: bytes) -> int:
        return sum(self.tags.get(check_peer_id(peer_raw), {}).values())

    def _newest(self, peer: bytes) -> float:
        return max((c.opened_at for c in self.connections(peer)), default=0.0)

    async def trim(self, low: int, grace: float, *, respect_grace: bool = False) -> int:
        """Close the least valuable peers down to ``low`` (untagged first, then the
        newest); protected peers never; the automatic trim spares peers younger than
        ``grace``. Returns how many peers were closed."""
        peers = list(self.swarm.conns)
        excess = len(peers) - low
        if excess <= 0:
            return 0
        fresh_after = time.time() - grace
        ranked = sorted(
            (p for p in peers if p not in self.protected
             and not (respect_grace and self._newest(p) > fresh_after)),
            key=lambda p: (sum(self.tags.get(p, {}).values()), -self._newest(p)),
        )
        closed = 0
        for peer in ranked[:excess]:
            await self.swarm.disconnect(peer)
            closed += 1
        return closed

    async def _keep_below_high_water(self) -> None:
        opts = self.options
        while True:
            await trio.sleep(CONN_CHECK_INTERVAL)
            if len(self.swarm.conns) > opts.conn_high:
                closed = await self.trim(opts.conn_low, opts.conn_grace, respect_grace=True)
                if closed:
                    log.info("connection manager: closed %d peers above the high water mark",
                             closed)

    # -- the peer store, for the peerbook ------------------------------------------------------
    def peer_entries(self):
        """``(peer, addrs, protocols, public key, last seen)`` of every peer we know."""
        store = self.swarm.peerstore
        now = time.time()
        peers = dict.fromkeys([*store.addrs, *store.keys])
        for peer in peers:
            if peer == self.me:
                continue
            addrs, key = store.peer_addrs(peer), store.keys.get(peer, b"")
            if not addrs and not key:
                continue
            if peer in self.swarm.conns or peer not in self.last_seen:
                self.last_seen[peer] = now
            yield peer, addrs, list(store.protocols.get(peer, ())), key, self.last_seen[peer]

    def restore_entry(self, peer: bytes, addrs, protocols, public_key: bytes,
                      last_seen: float) -> None:
        peer = check_peer_id(peer)
        if peer == self.me:
            return
        store = self.swarm.peerstore
        good = [bytes(a) for a in addrs if dial_target(a) is not None]
        if good:
            store.add_addrs(peer, good)
        if protocols:
            store.protocols[peer] = list(protocols)
        if public_key:
            try:
                if peer_id_from_public_key(public_key) != peer:
                    raise PeerKeyError("the key is not the peer's")
            except PeerKeyError as exc:
                raise NodeError(f"saved key of {show_peer(peer)} refused: {exc}") from None
            store.keys[peer] = public_key
        self.last_seen[peer] = last_seen


def _addr_order(addr: bytes) -> int:
    """Listen/announce order: TCP, WebSocket, then anything else (QUIC): the first address
    is the one every tool can dial."""
    target = dial_target(addr)
    if target is None:
        return 2
    return 1 if target[3] else 0


def _swarm_addr(text: str) -> bytes:
    from ..maddr import from_text

    raw = from_text(text)
    if raw is not None:
        return raw
    import multiaddr  # what maddr does not read, and the message for a bad address

    try:
        return multiaddr.Multiaddr(text).to_bytes()
    except Exception as exc:
        raise NodeError(f"invalid swarm address {text!r}: {exc}") from None


def _client_addr(raw: bytes) -> bytes:
    import multiaddr

    try:
        return multiaddr.Multiaddr(bytes(raw)).to_bytes()
    except Exception as exc:
        raise NodeError(f"malformed multiaddr {bytes(raw).hex()}: {exc}") from None





class PeerId:
    """A checked peer id with the two spellings clients see (bytes, base58)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = bytes(raw)

    def to_bytes(self) -> bytes:
        return self.raw

    def to_base58(self) -> str:
        return b58encode(self.raw)

    def __str__(self) -> str:
        return self.to_base58()

    def __eq__(self, other) -> bool:
        return isinstance(other, PeerId) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def peer_id_from_text(text: str) -> bytes:
    """A peer id from its text form: base58btc, or a CIDv1 (libp2p-key) in multibase."""
    if text[:1] in ("Q", "1"):
        try:
            return check_peer_id(b58decode(text))
        except ValueError:
            raise NodeError(f"malformed peer id {text!r}") from None
    from ..blocks.cid import CID

    try:
        return check_peer_id(CID.from_string(text).multihash)
    except ValueError:
        raise NodeError(f"malformed peer id {text!r}") from None
__all__ = ["PeerId", "SwarmHost", "check_peer_id", "identity_of", "peer_id_from_text", "show_peer"]


class DialBackDialer:
    """AutoNAT's dial-backs (:class:`p2pd.net.autonat.Dialer`): a swarm of its own with a
    fresh Ed25519 identity, no listener and ephemeral ports, so a dial-back is never an
    existing connection of the node's and never leaves from its listen port (the spec: no
    accidental hole punch)."""

    def __init__(self, agent_version: str) -> None:
        import os

        from ..keys import ED25519, load_private_key

        key = load_private_key(ED25519, os.urandom(32))
        public = key.public_key.serialize()
        self.swarm = Swarm(Identity(public, peer_id_from_public_key(public), key.sign),
                           SwarmOptions(agent_version=agent_version, dial_stagger=0.0,
                                        backoff_base=0.0))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.swarm.run((), task_status=task_status)

    def can_dial(self, addr: bytes) -> bool:
        return dial_target(addr) is not None

    async def dial(self, peer: bytes, addr: bytes, timeout: float):
        self.swarm.clear_backoff(peer)
        self.swarm.peerstore.forget(peer)
        return await self.swarm.dial(peer, [addr], timeout=timeout)


class LazyQuic:
    """The QUIC transport's place in ``swarm.transports`` until a quic-v1 address is first
    listened on or dialed; then the real :class:`~p2pd.net.quic.QuicTransport` is made and
    takes this place."""

    def __init__(self, swarm) -> None:
        self.swarm = swarm
        self._transport = None
        swarm.transports.append(self)

    def handles(self, addr: bytes) -> bool:
        return quic_target(addr) is not None

    listens = handles

    def _real(self):
        if self._transport is None:
            from .quic import QuicTransport

            transports = self.swarm.transports
            at = transports.index(self)
            self._transport = QuicTransport(self.swarm)  # appends itself
            transports.remove(self._transport)
            transports[at] = self._transport
        return self._transport

    async def listen(self, addr: bytes, nursery: trio.Nursery) -> bytes:
        return await self._real().listen(addr, nursery)

    async def dial(self, peer: bytes, addr: bytes):
        return await self._real().dial(peer, addr)
