"""Circuit relay v2 (libp2p spec relay/circuit-v2.md): the client transport, reservations
(with AutoRelay) and the relay service.

**Client.** A ``/p2p/RELAY/p2p-circuit/p2p/TARGET`` address is dialed by connecting to the
relay (any connection we have to it, else its address before ``/p2p-circuit``), opening a
``hop`` stream and sending CONNECT; after ``STATUS: OK`` the stream is the connection, and
it goes through the same upgrade as TCP (Noise, then a muxer) as a *limited* connection
(``transport="relay"``). A relay opening a ``stop`` stream to us with CONNECT from a peer is
answered OK and upgraded as an inbound connection the same way. Reservations: RESERVE on a
``hop`` stream; the relay's answer gives the expiry, its addresses (ours become those plus
``/p2p-circuit``, announced through the address manager) and a voucher, which is checked
when present (signed by the relay, for us). Each reservation is refreshed before it
expires and dropped when the connection to the relay goes.

**Relay service** (``-relayService``; off in the home config). RESERVE: at most
``max_reservations`` peers (and :data:`MAX_RESERVATIONS_PER_IP` per IP), never over a
relayed connection, for ``reservation_ttl``. CONNECT: the target must hold a live
reservation (``NO_RESERVATION``), neither side over ``max_circuits`` open circuits
(``RESOURCE_LIMIT_EXCEEDED``), the stop stream must be accepted (``CONNECTION_FAILED``);
then bytes are piped both ways, at most ``data_limit`` each way and ``time_limit`` long,
after which both streams are reset. Malformed messages get ``MALFORMED_MESSAGE``, a wrong
type ``UNEXPECTED_MESSAGE``, and the stream ends; nothing else is affected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..framing import FrameDecoder
from ..peerkeys import peer_id_from_public_key, verify_signature
from ..varint import decode_uvarint, encode_uvarint
from . import relay_wire as w
from .addrs import classify, split_ip
from .streams import close_quietly, read_some, reset_quietly

log = logging.getLogger(__name__)

P_P2P, P_CIRCUIT = 0x01A5, 0x0122
CIRCUIT = encode_uvarint(P_CIRCUIT)
MAX_RESERVATIONS_PER_IP = 8
STREAM_TIMEOUT = 10.0
#: refresh a reservation this long before it expires
REFRESH_MARGIN = 60.0


class RelayError(ConnectionError):
    """A relay refused (its status named) or broke the exchange."""


@dataclass(slots=True)
class RelayLimits:
    """The go daemon's relay flags and their defaults (``-relayMaxReservations``,
    ``-relayMaxCircuits``, ``-relayTimeLimit``, ``-relayDataLimit``, ``-relayBufferSize``)."""

    max_reservations: int = 128
    max_circuits: int = 16
    time_limit: float = 30 * 60.0
    data_limit: int = 1 << 32
    buffer_size: int = 16 << 20
    reservation_ttl: float = 3600.0


def p2p_component(peer: bytes) -> bytes:
    return encode_uvarint(P_P2P) + encode_uvarint(len(peer)) + peer


def split_circuit(addr: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(relay transport address, relay peer id, target peer id or b"")`` of a
    ``.../p2p/RELAY/p2p-circuit[/p2p/TARGET]`` address, else None."""
    pos, parts = 0, []
    try:
        while pos < len(addr):
            start = pos
            code, pos = decode_uvarint(addr, pos)
            if code == P_CIRCUIT:
                parts.append((code, start, pos, b""))
                continue
            size = {0x04: 4, 0x29: 16, 0x06: 2, 0x0111: 2}.get(code)
            if size is None:
                if code in (0x01CC, 0x01DD, 0x01DE, 0x01CD, 0x0114, 0x01D1, 0x0190):
                    size = 0
                else:
                    size, pos = decode_uvarint(addr, pos)
            value = addr[pos : pos + size]
            if len(value) != size:
                return None
            pos += size
            parts.append((code, start, pos, value))
    except ValueError:
        return None
    idx = next((i for i, p in enumerate(parts) if p[0] == P_CIRCUIT), None)
    if idx is None or idx == 0 or parts[idx - 1][0] != P_P2P:
        return None
    relay_peer = parts[idx - 1][3]
    relay_addr = addr[: parts[idx - 1][1]]
    rest = parts[idx + 1 :]
    target = rest[0][3] if rest and rest[0][0] == P_P2P else b""
    if len(rest) > 1 or (rest and rest[0][0] != P_P2P):
        return None  # a second circuit, or something after the target
    return relay_addr, relay_peer, target


async def _read_msg(stream, decoder: FrameDecoder, *, stop: bool) -> w.Message:
    while (frame := decoder.next_frame()) is None:
        data = await read_some(stream)
        if not data:
            raise RelayError("the stream ended before a whole message")
        decoder.receive_data(data)
    return w.decode(frame, stop=stop)


def _push_back_rest(stream, decoder: FrameDecoder) -> None:
    rest = decoder.take_unconsumed()
    if rest:
        stream.push_back(rest)


class RelayTransport:
    """Dials circuit addresses and accepts relayed connections; holds our reservations."""

    def __init__(self, swarm, *, on_addrs: Callable[[list[bytes]], None] | None = None) -> None:
        self.swarm = swarm
        self.on_addrs = on_addrs
        #: relay peer -> (expiry (unix), our circuit addresses through it, its limit)
        self.reservations: dict[bytes, tuple[float, list[bytes], w.Limit | None]] = {}
        swarm.transports.append(self)
        swarm.set_stream_handler(w.STOP, self._serve_stop)
        swarm.listeners.append(self)

    def handles(self, addr: bytes) -> bool:
        return split_circuit(addr) is not None

    # -- dialing through a relay -------------------------------------------------------------
    async def dial(self, peer: bytes, addr: bytes):
        split = split_circuit(addr)
        if split is None:
            raise RelayError("not a circuit address")
        relay_addr, relay, target = split
        if target and target != peer:
            raise RelayError("the circuit address names another peer")
        if relay == peer:
            raise RelayError("a peer cannot relay to itself")
        conn = self.swarm.connection(relay)
        if conn is None:
            conn = await self.swarm.dial(relay, [relay_addr] if relay_addr else [])
        if conn.transport == "relay":
            raise RelayError("no relaying over a relayed connection")
        stream = await conn.open_stream([w.HOP], STREAM_TIMEOUT)
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                await stream.write(w.Message(w.CONNECT, peer_id=peer).framed())
                decoder = FrameDecoder(w.MAX_MESSAGE)
                reply = await _read_msg(stream, decoder, stop=False)
            if reply.type != w.STATUS or reply.status != w.OK:
                name = w.STATUS_NAMES.get(reply.status, str(reply.status))
                raise RelayError(f"relay {relay.hex()[:16]} refused the circuit: {name}")
            _push_back_rest(stream, decoder)
            remote = conn.remote_addr + p2p_component(relay) + CIRCUIT
            return await self.swarm.dial_stream(stream, peer, remote + p2p_component(peer),
                                                remote, "relay")
        except BaseException:
            with trio.CancelScope(shield=True):
                await reset_quietly(stream)
            raise

    async def _serve_stop(self, stream) -> None:
        relay = stream.conn.peer
        decoder = FrameDecoder(w.MAX_MESSAGE)
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                msg = await _read_msg(stream, decoder, stop=True)
            if msg.type != w.STOP_CONNECT or not msg.peer_id:
                await stream.write(w.Message(w.STOP_STATUS, status=w.UNEXPECTED_MESSAGE,
                                             stop=True).framed())
                await close_quietly(stream)
                return
            peer_id_ok = msg.peer_id != self.swarm.me and len(msg.peer_id) <= 128
            if not peer_id_ok:
                raise w.RelayWireError("a circuit from ourselves or from a malformed id")
            await stream.write(w.Message(w.STOP_STATUS, status=w.OK, stop=True).framed())
        except (w.RelayWireError, RelayError, trio.TooSlowError) as exc:
            log.debug("stop stream from relay %s refused: %s", relay.hex()[:16], exc)
            await reset_quietly(stream)
            return
        _push_back_rest(stream, decoder)
        remote = stream.conn.remote_addr + p2p_component(relay) + CIRCUIT
        await self.swarm.accept_stream(stream, remote + p2p_component(msg.peer_id), remote,
                                       "relay")

    # -- reservations -----------------------------------------------------------------------
    async def reserve(self, relay: bytes, addrs: list[bytes] = ()) -> float:
        """Reserve a slot at ``relay``; returns the expiry (unix time)."""
        conn = self.swarm.connection(relay)
        if conn is None:
            conn = await self.swarm.dial(relay, list(addrs))
        if conn.transport == "relay":
            raise RelayError("no reservation over a relayed connection")
        stream = await conn.open_stream([w.HOP], STREAM_TIMEOUT)
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                await stream.write(w.Message(w.RESERVE).framed())
                reply = await _read_msg(stream, FrameDecoder(w.MAX_MESSAGE), stop=False)
        finally:
            await close_quietly(stream)
        if reply.type != w.STATUS or reply.status != w.OK or reply.reservation is None:
            name = w.STATUS_NAMES.get(reply.status, str(reply.status))
            raise RelayError(f"relay {relay.hex()[:16]} refused the reservation: {name}")
        r = reply.reservation
        if r.voucher:
            got_relay, got_peer, _exp, key = w.open_voucher(r.voucher, verify_signature)
            if got_relay != relay or got_peer != self.swarm.me or \
                    peer_id_from_public_key(key) != relay:
                raise RelayError("the reservation voucher is not for us from this relay")
        if r.expire < time.time():
            raise RelayError("the reservation expired before it arrived")
        ours = []
        tail = p2p_component(relay)
        reached = conn.remote_addr.removesuffix(tail)
        # the address we reached the relay at, then those it gave that anyone could dial: a
        # relay's loopback or LAN address in a circuit address would send peers to themselves
        for a in [reached, *r.addrs]:
            a = a.removesuffix(tail)
            split = split_ip(a)
            if a != reached and split is not None and classify(split[0]) != "public":
                continue
            if a + tail + CIRCUIT not in ours:
                ours.append(a + tail + CIRCUIT)
        self.reservations[relay] = (float(r.expire), ours[: w.MAX_ADDRS], reply.limit)
        self._addrs_changed()
        return float(r.expire)

    def relay_addrs(self) -> list[bytes]:
        now = time.time()
        out = []
        for expire, addrs, _limit in self.reservations.values():
            if expire > now:
                out += addrs
        return out

    def _addrs_changed(self) -> None:
        if self.on_addrs is not None:
            self.on_addrs(self.relay_addrs())

    # the relay connection went: its reservation with it
    def peer_connected(self, peer: bytes) -> None:
        pass

    def peer_disconnected(self, peer: bytes) -> None:
        if self.reservations.pop(peer, None) is not None:
            self._addrs_changed()

    async def keep_reservations(self, relays: Callable[[], list[tuple[bytes, list[bytes]]]],
                                wanted: Callable[[], bool], count: int = 2,
                                check: float = 5.0) -> None:
        """AutoRelay: while ``wanted()``, hold ``count`` reservations among ``relays()``
        (``(peer, addrs)`` candidates, best first), each refreshed before it expires; a relay
        that refused is left alone for a while."""
        refused: dict[bytes, float] = {}
        while True:
            now = time.time()
            if not wanted():
                if self.reservations:
                    self.reservations.clear()
                    self._addrs_changed()
            else:
                for relay, (expire, _a, _l) in list(self.reservations.items()):
                    if expire - now < REFRESH_MARGIN:
                        try:
                            await self.reserve(relay)
                        except Exception as exc:
                            log.info("refreshing the reservation at %s failed: %s",
                                     relay.hex()[:16], exc)
                            del self.reservations[relay]
                            self._addrs_changed()
                for relay, addrs in relays():
                    if len(self.reservations) >= count:
                        break
                    if relay in self.reservations or refused.get(relay, 0) > now:
                        continue
                    try:
                        await self.reserve(relay, addrs)
                        log.info("reservation at relay %s", relay.hex()[:16])
                    except Exception as exc:
                        log.info("reservation at relay %s failed: %s", relay.hex()[:16], exc)
                        refused[relay] = now + 60.0
            await trio.sleep(check)


class RelayService:
    """The hop side: reservations and circuits for others, within :class:`RelayLimits`."""

    def __init__(self, swarm, limits: RelayLimits | None = None,
                 own_addrs: Callable[[bytes], list[bytes]] | None = None) -> None:
        self.swarm = swarm
        self.limits = limits or RelayLimits()
        self.own_addrs = own_addrs or (lambda remote: [])
        #: peer -> (expiry, the IP it reserved from)
        self.reservations: dict[bytes, tuple[float, bytes]] = {}
        self.circuits: dict[bytes, int] = {}
        #: totals since start: reservations granted (renewals too), circuits bridged, ...
        self.stats = {"reserved": 0, "refused": 0, "relayed": 0, "bytes": 0,
                      "limited": 0, "malformed": 0}
        swarm.set_stream_handler(w.HOP, self._serve_hop)

    def _live(self, peer: bytes) -> bool:
        held = self.reservations.get(peer)
        if held is None:
            return False
        if held[0] < time.time() or self.swarm.connection(peer) is None:
            del self.reservations[peer]
            return False
        return True

    async def _answer(self, stream, status: int, **fields) -> None:
        await stream.write(w.Message(w.STATUS, status=status, **fields).framed())

    async def _serve_hop(self, stream) -> None:
        decoder = FrameDecoder(w.MAX_MESSAGE)
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                msg = await _read_msg(stream, decoder, stop=False)
        except w.RelayWireError as exc:
            self.stats["malformed"] += 1
            log.debug("hop message from %s refused: %s", stream.conn.peer.hex()[:16], exc)
            try:
                await self._answer(stream, w.MALFORMED_MESSAGE)
            finally:
                await close_quietly(stream)
            return
        except (RelayError, trio.TooSlowError):
            await reset_quietly(stream)
            return
        if msg.type == w.RESERVE:
            try:
                await self._reserve(stream)
            finally:
                await close_quietly(stream)
        elif msg.type == w.CONNECT:
            await self._connect(stream, msg, decoder)
        else:
            await self._answer(stream, w.UNEXPECTED_MESSAGE)
            await close_quietly(stream)

    async def _reserve(self, stream) -> None:
        peer, conn = stream.conn.peer, stream.conn
        if conn.transport == "relay":
            self.stats["refused"] += 1
            await self._answer(stream, w.PERMISSION_DENIED)
            return
        ip = (split_ip(conn.remote_addr) or (b"", b""))[0]
        ip_key = ip.packed if ip else b""
        for other in list(self.reservations):
            self._live(other)
        renewing = peer in self.reservations
        same_ip = sum(1 for p, (_e, i) in self.reservations.items() if i == ip_key and p != peer)
        if not renewing and (len(self.reservations) >= self.limits.max_reservations
                             or same_ip >= MAX_RESERVATIONS_PER_IP):
            self.stats["refused"] += 1
            await self._answer(stream, w.RESERVATION_REFUSED)
            return
        expire = int(time.time() + self.limits.reservation_ttl)
        self.reservations[peer] = (float(expire), ip_key)
        self.stats["reserved"] += 1
        me = self.swarm.me
        addrs = [a + p2p_component(me) for a in self.own_addrs(conn.remote_addr)
                 if CIRCUIT not in a][: w.MAX_ADDRS]
        ident = self.swarm.identity
        voucher = w.make_voucher(ident.public_key, ident.sign, me, peer, expire)
        await self._answer(stream, w.OK, reservation=w.Reservation(expire, addrs, voucher),
                           limit=self._limit())

    def _limit(self) -> w.Limit:
        return w.Limit(int(self.limits.time_limit), self.limits.data_limit)

    async def _connect(self, stream, msg: w.Message, decoder: FrameDecoder) -> None:
        src, target = stream.conn.peer, msg.peer_id
        if stream.conn.transport == "relay":
            await self._answer(stream, w.PERMISSION_DENIED)
            await close_quietly(stream)
            return
        if not target or not self._live(target):
            await self._answer(stream, w.NO_RESERVATION)
            await close_quietly(stream)
            return
        if (self.circuits.get(src, 0) >= self.limits.max_circuits
                or self.circuits.get(target, 0) >= self.limits.max_circuits):
            self.stats["refused"] += 1
            await self._answer(stream, w.RESOURCE_LIMIT_EXCEEDED)
            await close_quietly(stream)
            return
        for p in (src, target):
            self.circuits[p] = self.circuits.get(p, 0) + 1
        try:
            await self._bridge(stream, src, target, decoder)
        finally:
            for p in (src, target):
                self.circuits[p] -= 1
                if not self.circuits[p]:
                    del self.circuits[p]

    async def _bridge(self, stream, src: bytes, target: bytes, decoder: FrameDecoder) -> None:
        conn = self.swarm.connection(target)
        try:
            if conn is None:
                raise RelayError("the target is gone")
            with trio.fail_after(STREAM_TIMEOUT):
                stop = await conn.open_stream([w.STOP], STREAM_TIMEOUT)
                await stop.write(w.Message(w.STOP_CONNECT, peer_id=src, limit=self._limit(),
                                           stop=True).framed())
                stop_decoder = FrameDecoder(w.MAX_MESSAGE)
                reply = await _read_msg(stop, stop_decoder, stop=True)
            if reply.type != w.STOP_STATUS or reply.status != w.OK:
                await reset_quietly(stop)
                raise RelayError(f"the target answered {reply.status}")
        except Exception as exc:
            log.debug("circuit %s -> %s failed: %r", src.hex()[:16], target.hex()[:16], exc)
            await self._answer(stream, w.CONNECTION_FAILED)
            await close_quietly(stream)
            return
        await self._answer(stream, w.OK, limit=self._limit())
        self.stats["relayed"] += 1
        early_src, early_dst = decoder.take_unconsumed(), stop_decoder.take_unconsumed()
        limited = broken = False
        with trio.move_on_after(self.limits.time_limit) as scope:
            async with trio.open_nursery() as nursery:
                ends = []

                async def pipe(a, b, early: bytes) -> None:
                    nonlocal limited, broken
                    sent = 0
                    try:
                        data = early
                        while True:
                            if data:
                                sent += len(data)
                                if sent > self.limits.data_limit:
                                    limited = True
                                    nursery.cancel_scope.cancel()
                                    return
                                await b.write(data)
                                self.stats["bytes"] += len(data)
                            data = await read_some(a)
                            if not data:
                                await close_quietly(b)
                                break
                    except Exception:
                        broken = True
                        nursery.cancel_scope.cancel()
                        return
                    ends.append(a)
                    if len(ends) == 2:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(pipe, stream, stop, early_src)
                nursery.start_soon(pipe, stop, stream, early_dst)
        if limited or scope.cancelled_caught:
            self.stats["limited"] += 1
        if limited or broken or scope.cancelled_caught:  # both ends learn it at once
            with trio.CancelScope(shield=True):
                await reset_quietly(stream)
                await reset_quietly(stop)

    def summary(self) -> dict:
        """Live ``reservations`` and open ``circuits``, then the totals of :attr:`stats`."""
        return {"reservations": len([p for p in list(self.reservations) if self._live(p)]),
                "circuits": sum(self.circuits.values()) // 2, **self.stats}
