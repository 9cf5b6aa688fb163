"""DCUtR (``/libp2p/dcutr``, libp2p spec relay/DCUtR.md): turn a relayed connection into a
direct one by a TCP simultaneous open.

The peer that *accepted* the relayed connection (B, the one behind a NAT holding a
reservation) opens the stream, sends ``CONNECT`` with its observed addresses and times the
round trip; A answers ``CONNECT`` with its own; B sends ``SYNC`` and dials A's addresses
after half the round trip, while A dials B's at once on ``SYNC``. Both dial from their listen
port (the swarm's ``reuse_port``), so each NAT sees an outgoing SYN first and lets the
other's in. B is the client of the new connection's security handshake and A the server,
whichever SYN won (as go-libp2p's hole puncher: the side that sent SYNC dials as client).
Up to :data:`ATTEMPTS` rounds; then the relayed connection stays. Once a direct
connection is up, new streams use it (the swarm prefers direct connections) and the relayed
one is closed after :data:`GRACE` seconds.

``HolePunch{type 1 (CONNECT=100, SYNC=300), ObsAddrs 2*}``; the decoder bounds the message
and the address count, and refuses unknown types (:class:`DcutrWireError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..errors import P2PDError
from ..framing import FrameDecoder
from ..protobuf import field_bytes, field_varint, iter_fields
from ..varint import encode_uvarint
from .addrs import classify, is_relayed, split_ip
from .streams import close_quietly, read_some, reset_quietly

log = logging.getLogger(__name__)

PROTOCOL = "/libp2p/dcutr"
CONNECT, SYNC = 100, 300
MAX_MESSAGE = 4096
MAX_ADDRS = 32
ATTEMPTS = 3
STREAM_TIMEOUT = 10.0
DIAL_TIMEOUT = 5.0
GRACE = 5.0


class DcutrWireError(P2PDError):
    """A hole-punch message we refuse."""


@dataclass(slots=True)
class HolePunch:
    type: int
    addrs: list[bytes] = field(default_factory=list)

    def framed(self) -> bytes:
        body = field_varint(1, self.type) + b"".join(field_bytes(2, a) for a in self.addrs)
        return encode_uvarint(len(body)) + body


def decode(data: bytes) -> HolePunch:
    if len(data) > MAX_MESSAGE:
        raise DcutrWireError(f"hole-punch message of {len(data)} bytes (limit {MAX_MESSAGE})")
    msg = HolePunch(-1)
    try:
        for num, wire, value in iter_fields(data):
            if num == 1 and wire == 0:
                msg.type = value
            elif num == 2 and wire == 2:
                if len(msg.addrs) >= MAX_ADDRS:
                    raise DcutrWireError(f"more than {MAX_ADDRS} addresses")
                msg.addrs.append(value)
    except ValueError as exc:
        raise DcutrWireError(f"malformed hole-punch message: {exc}") from None
    if msg.type not in (CONNECT, SYNC):
        raise DcutrWireError(f"unknown hole-punch message type {msg.type}")
    return msg


async def _read(stream, decoder: FrameDecoder) -> HolePunch:
    while (frame := decoder.next_frame()) is None:
        data = await read_some(stream)
        if not data:
            raise DcutrWireError("the stream ended before a whole message")
        decoder.receive_data(data)
    return decode(frame)


def _direct_public(addrs: list[bytes]) -> list[bytes]:
    """Addresses worth a hole punch: public IPs, TCP, not relayed."""
    out = []
    for a in addrs:
        split = split_ip(a)
        if split is not None and classify(split[0]) == "public" and not is_relayed(a):
            out.append(a)
    return list(dict.fromkeys(out))[:MAX_ADDRS]


class HolePuncher:
    """Both roles over the swarm: ``our_addrs()`` gives what to send (observed and public);
    ``usable`` picks from an address list what is worth punching to (public TCP/IP
    addresses; a test on one machine passes one that keeps loopback)."""

    def __init__(self, swarm, our_addrs: Callable[[], list[bytes]], *,
                 usable: Callable[[list[bytes]], list[bytes]] | None = None) -> None:
        self.swarm = swarm
        self.our_addrs = our_addrs
        self.usable = usable or _direct_public
        #: rounds: CONNECT/SYNC exchanges that led to dials (either role); direct: rounds
        #: that ended on a direct connection; failed: rounds that did not; gave_up: peers we
        #: started with (B) and left relayed after ATTEMPTS rounds; refused: streams reset
        #: (malformed, out of order, or past ATTEMPTS on one relayed connection)
        self.stats: dict = {"rounds": 0, "direct": 0, "failed": 0, "gave_up": 0,
                            "refused": 0, "last_failure": None}
        self._served: dict = {}  # relayed connection -> rounds served on it
        self._busy: set[bytes] = set()
        self._nursery: trio.Nursery | None = None
        swarm.set_stream_handler(PROTOCOL, self._serve)
        swarm.listeners.append(self)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the hole punches' tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # connection events: B starts when a relayed connection comes in
    def peer_connected(self, peer: bytes) -> None:
        pass

    def peer_disconnected(self, peer: bytes) -> None:
        pass

    def peer_identified(self, peer: bytes, protocols: list[str]) -> None:
        conns = [c for c in self.swarm.conns.get(peer, ()) if not c.closed]
        if PROTOCOL not in protocols or peer in self._busy or not conns:
            return
        if all(c.transport == "relay" for c in conns) and \
                any(c.direction == "inbound" for c in conns) and self._nursery is not None:
            self._busy.add(peer)
            self._nursery.start_soon(self._initiate, peer)

    def _mine(self) -> list[bytes]:
        return self.usable(self.our_addrs())

    async def _initiate(self, peer: bytes) -> None:
        """B: CONNECT, time the answer, SYNC, dial after half the round trip."""
        try:
            for _round in range(ATTEMPTS):
                relayed = self.swarm.connection(peer)
                if relayed is None or relayed.transport != "relay":
                    return  # gone, or direct already
                try:
                    theirs, rtt = await self._exchange(relayed)
                except Exception as exc:
                    self._failed(peer, f"the exchange failed: {exc or type(exc).__name__}")
                    self.stats["gave_up"] += 1
                    return
                if not theirs:
                    self._failed(peer, "it offers no public address")
                    self.stats["gave_up"] += 1
                    return
                await trio.sleep(rtt / 2)
                if await self._punch(peer, theirs, initiator=True, relayed=relayed):
                    return
            self.stats["gave_up"] += 1
            log.info("hole punch with %s: no direct connection after %d rounds; staying relayed",
                     peer.hex()[:16], ATTEMPTS)
        finally:
            self._busy.discard(peer)

    async def _exchange(self, relayed) -> tuple[list[bytes], float]:
        stream = await relayed.open_stream([PROTOCOL], STREAM_TIMEOUT)
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                decoder = FrameDecoder(MAX_MESSAGE)
                started = trio.current_time()
                await stream.write(HolePunch(CONNECT, self._mine()).framed())
                reply = await _read(stream, decoder)
                rtt = trio.current_time() - started
                if reply.type != CONNECT:
                    raise DcutrWireError("expected CONNECT")
                await stream.write(HolePunch(SYNC).framed())
        finally:
            await close_quietly(stream)
        return self.usable(reply.addrs), rtt

    async def _serve(self, stream) -> None:
        """A: answer CONNECT with our addresses; on SYNC dial at once."""
        conn = stream.conn
        peer = conn.peer
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                decoder = FrameDecoder(MAX_MESSAGE)
                msg = await _read(stream, decoder)
                if msg.type != CONNECT:
                    raise DcutrWireError("expected CONNECT first")
                theirs = self.usable(msg.addrs)
                await stream.write(HolePunch(CONNECT, self._mine()).framed())
                sync = await _read(stream, decoder)
                if sync.type != SYNC:
                    raise DcutrWireError("expected SYNC")
        except Exception as exc:
            log.debug("hole punch from %s refused: %r", peer.hex()[:16], exc)
            self.stats["refused"] += 1
            await reset_quietly(stream)
            return
        await close_quietly(stream)
        if conn.transport != "relay" or not theirs or peer in self._busy:
            return  # one punch per peer at a time: a peer cannot make us dial in a loop
        served = self._served.get(conn, 0)
        if served >= ATTEMPTS:  # endless CONNECTs on one relayed connection: no more dials
            self.stats["refused"] += 1
            return
        if len(self._served) > 256:
            self._served = {c: n for c, n in self._served.items() if not c.closed}
        self._served[conn] = served + 1
        self._busy.add(peer)
        try:
            await self._punch(peer, theirs, initiator=False, relayed=conn)
        finally:
            self._busy.discard(peer)

    def _failed(self, peer: bytes, why: str) -> None:
        self.stats["failed"] += 1
        self.stats["last_failure"] = f"{peer.hex()[:16]}: {why}"
        log.info("hole punch with %s: %s", peer.hex()[:16], why)

    def _direct(self, peer: bytes):
        return next((c for c in self.swarm.conns.get(peer, ())
                     if not c.closed and c.transport != "relay"), None)

    async def _punch(self, peer: bytes, addrs: list[bytes], *, initiator: bool,
                     relayed) -> bool:
        """One round of dials. B (``initiator``) dials every address, QUIC ones as the QUIC
        client; A dials the TCP ones (the simultaneous open) and, for QUIC ones, sends
        random UDP packets from its listening socket so B's Initial gets through its router
        (go-libp2p's roles: the side that sent SYNC dials)."""
        self.stats["rounds"] += 1
        quic = [t for t in self.swarm.transports if hasattr(t, "punch")]
        udp = [] if initiator else [a for a in addrs if quic and quic[0].handles(a)]
        dial = [a for a in addrs if a not in udp]
        error = "no address to dial"
        async with trio.open_nursery() as nursery:
            for a in udp:
                nursery.start_soon(quic[0].punch, a, lambda: self._direct(peer), DIAL_TIMEOUT)
            if dial:
                try:
                    await self.swarm.dial_direct(peer, dial, initiator=initiator,
                                                 timeout=DIAL_TIMEOUT)
                except Exception as exc:
                    error = str(exc) or type(exc).__name__
            if udp:  # B's QUIC dial comes in as an inbound connection
                with trio.move_on_after(DIAL_TIMEOUT):
                    while self._direct(peer) is None:
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        # the other side's SYN may have won: a direct connection arrived inbound
        direct = self._direct(peer)
        if direct is None:
            self._failed(peer, error)
            return False
        self.stats["direct"] += 1
        log.info("hole punch with %s: direct at %s", peer.hex()[:16], direct.remote_addr.hex())
        if self._nursery is not None:
            self._nursery.start_soon(self._retire, relayed)
        return True

    async def _retire(self, relayed) -> None:
        await trio.sleep(GRACE)
        await relayed.close()
