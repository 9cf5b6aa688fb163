"""AutoNAT v1 and v2, client and server: is this node reachable from the internet, and on
which addresses (libp2p specs autonat-v1.md and autonat-v2.md).

**Client.** Every ``probe_interval`` while the answer is unknown (``refresh_interval`` once
known) it asks a few connected peers that serve AutoNAT: a v2 server is asked to dial one
of our public candidate addresses (observed addresses past the threshold, public listen and
mapped addresses) and proves the dial by sending back our nonce on
``/libp2p/autonat/2/dial-back``; a v1-only server is asked to dial us at all (it dials only
our observed IP). Per address the latest answer of each server is kept; an address is
reachable once confirmations outnumber failures by :data:`CONFIDENCE`, unreachable the other
way round (the spec's "more than 3 servers"; each server counts once). The node is *public*
while any address is reachable, *private* once all tested are unreachable (or v1 servers say
so), else *unknown*. Reachable addresses are confirmed in the address manager (announced);
a change is told to the ``on_change`` callbacks (the DHT mode follows it).

**Server.** Dial-backs go out from a separate dialer (its own identity and ephemeral ports,
never a connection we already have, never from our listen port: no accidental hole
punch). v1 dials only addresses on the requester's observed IP, never over a relayed
connection. v2 dials exactly one address, the first public one; an address on another IP
than the requester's costs it 30-100 kB of dial data first (amplification rule). Both are
rate-limited per peer and globally; over a limit the request is refused with the
protocol's status (v1 ``E_DIAL_REFUSED``, v2 ``E_REQUEST_REJECTED``), and a malformed
message ends that stream with a reset, nothing else.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..framing import FrameDecoder, FramingError
from . import autonat_wire as w
from .addrs import classify, is_relayed, split_ip
from .ports import Host
from .streams import close_quietly, read_some, reset_quietly

log = logging.getLogger(__name__)

PUBLIC, PRIVATE, UNKNOWN = "public", "private", "unknown"
#: confirmations minus failures (from distinct servers) that settle an address
CONFIDENCE = 3
#: servers asked per probe round
PROBE_FANOUT = 3
DIAL_BACK_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0
DIAL_DATA_MIN, DIAL_DATA_MAX = 30_000, 100_000
#: dial data a client agrees to send for one request
CLIENT_MAX_DIAL_DATA = 100_000


class AutonatError(Exception):
    """A request that could not be answered (the stream is reset)."""


class DialBack(Protocol):
    """A connection made for one dial-back, closed after."""

    async def open_stream(self, protocols: Sequence[str], timeout: float): ...
    async def close(self) -> None: ...


class Dialer(Protocol):
    """Dials for the server: a fresh connection from a separate identity."""

    def can_dial(self, addr: bytes) -> bool: ...
    async def dial(self, peer: bytes, addr: bytes, timeout: float) -> DialBack: ...


class Addresses(Protocol):
    def candidates(self) -> list[bytes]: ...
    def public(self) -> list[bytes]: ...
    def confirm(self, addr: bytes, source: str = ...) -> None: ...
    def unconfirm(self, addr: bytes) -> None: ...


class RateLimit:
    """At most ``per_peer`` and ``total`` requests per ``window`` seconds (sliding)."""

    def __init__(self, total: int, per_peer: int, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.per_peer, self.window, self._clock = total, per_peer, window, clock
        self._all: deque[float] = deque()
        self._peers: dict[bytes, deque[float]] = {}

    def allow(self, peer: bytes) -> bool:
        now = self._clock()
        while self._all and now - self._all[0] > self.window:
            self._all.popleft()
        for key in [k for k, q in self._peers.items() if not q or now - q[-1] > self.window]:
            del self._peers[key]
        mine = self._peers.setdefault(peer, deque())
        while mine and now - mine[0] > self.window:
            mine.popleft()
        if len(self._all) >= self.total or len(mine) >= self.per_peer:
            return False
        self._all.append(now)
        mine.append(now)
        return True


async def _read_frame(stream, decoder: FrameDecoder) -> bytes:
    while (frame := decoder.next_frame()) is None:
        data = await read_some(stream)
        if not data:
            raise AutonatError("the stream ended before a whole message")
        decoder.receive_data(data)
    return frame


def _same_ip(a: bytes, b: bytes) -> bool:
    x, y = split_ip(a), split_ip(b)
    return x is not None and y is not None and x[0] == y[0]


class AutoNAT:
    def __init__(self, host: Host, addresses: Addresses, dialer: Dialer | None, *,
                 server: bool = False, client: bool = True, force: str | None = None,
                 probe_interval: float = 15.0, refresh_interval: float = 15 * 60.0,
                 confidence: int = CONFIDENCE) -> None:
        self.host = host
        self.addresses = addresses
        self.dialer = dialer
        self.server = server and dialer is not None
        self.client = client and force is None
        self.status = force or UNKNOWN
        self.forced = force is not None
        self.probe_interval, self.refresh_interval = probe_interval, refresh_interval
        self.confidence = confidence
        #: address (or b"" for v1's node-wide answers) -> server -> reachable?
        self.results: dict[bytes, dict[bytes, bool]] = {}
        self.on_change: list[Callable[[str], None]] = []
        self._nonces: dict[int, trio.Event] = {}
        self.v1_limit = RateLimit(total=30, per_peer=3)
        self.v2_limit = RateLimit(total=60, per_peer=12)
        self.dial_data_limit = RateLimit(total=12, per_peer=12)
        self.served = {"v1": 0, "v2": 0, "refused": 0, "bad": 0}
        #: what servers answered us: reachable, not reachable, refused, no answer
        self.answers = {"ok": 0, "error": 0, "refused": 0, "failed": 0}
        self._wake = trio.Event()

    # -- lifetime --------------------------------------------------------------------------
    def attach(self) -> None:
        if self.server:
            self.host.set_stream_handler(w.V1, self._serve_v1)
            self.host.set_stream_handler(w.V2_REQUEST, self._serve_v2)
        if self.client:
            self.host.set_stream_handler(w.V2_BACK, self._serve_dial_back)
            self.host.add_listener(self)

    # connection events: a new AutoNAT server while we do not know yet is asked at once
    def peer_connected(self, peer: bytes) -> None:
        pass

    def peer_disconnected(self, peer: bytes) -> None:
        pass

    def peer_identified(self, peer: bytes, protocols: list[str]) -> None:
        if self.status == UNKNOWN and (w.V2_REQUEST in protocols or w.V1 in protocols):
            self.kick()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.client:
            await trio.sleep_forever()
        while True:
            try:
                await self.probe()
            except Exception:  # one round's trouble never ends the client
                log.debug("autonat probe round failed", exc_info=True)
            wait = self.probe_interval if self.status == UNKNOWN else self.refresh_interval
            with trio.move_on_after(wait):
                await self._wake.wait()
            self._wake = trio.Event()

    def kick(self) -> None:
        """Probe now (new candidates, new servers connected)."""
        self._wake.set()

    # -- the client ------------------------------------------------------------------------
    def to_test(self) -> list[bytes]:
        """Our addresses worth testing: candidates first, then public ones, no relays."""
        out = [*self.addresses.candidates(), *self.addresses.public()]
        return [a for a in dict.fromkeys(out) if not is_relayed(a)
                and (ip := split_ip(a)) is not None and classify(ip[0]) == "public"]

    def _servers(self) -> list[tuple[bytes, bool]]:
        """Connected peers serving AutoNAT, ``(peer, speaks v2)``, in random order."""
        out = []
        for p in self.host.peers():
            protocols = self.host.peer_protocols(p.peer_id)
            if w.V2_REQUEST in protocols:
                out.append((p.peer_id, True))
            elif w.V1 in protocols:
                out.append((p.peer_id, False))
        random.shuffle(out)
        return out

    async def probe(self) -> None:
        """One round: ask up to :data:`PROBE_FANOUT` servers, then re-decide."""
        servers = self._servers()[:PROBE_FANOUT]
        addrs = self.to_test()
        async with trio.open_nursery() as nursery:
            for i, (peer, v2) in enumerate(servers):
                if v2 and addrs:
                    # spread the addresses over the servers: each tests one, in order
                    order = addrs[i % len(addrs):] + addrs[: i % len(addrs)]
                    nursery.start_soon(self._ask_v2, peer, order)
                else:
                    nursery.start_soon(self._ask_v1, peer, addrs)
        self._decide()

    def _record(self, addr: bytes, server: bytes, ok: bool) -> None:
        self.results.setdefault(addr, {})[server] = ok
        if len(self.results[addr]) > 16:  # the oldest server's word goes first
            del self.results[addr][next(iter(self.results[addr]))]

    def verdict(self, addr: bytes) -> str:
        answers = self.results.get(addr, {}).values()
        ok = sum(1 for a in answers if a)
        bad = len(answers) - ok
        if ok - bad >= self.confidence:
            return PUBLIC
        if bad - ok >= self.confidence:
            return PRIVATE
        return UNKNOWN

    def _decide(self) -> None:
        verdicts = {a: self.verdict(a) for a in self.results if a}
        for addr, v in verdicts.items():
            if v == PUBLIC:
                self.addresses.confirm(addr, "autonat")
            elif v == PRIVATE:
                self.addresses.unconfirm(addr)
        if self.forced:
            return
        node = self.verdict(b"")
        if any(v == PUBLIC for v in verdicts.values()) or node == PUBLIC:
            status = PUBLIC
        elif (verdicts and all(v == PRIVATE for v in verdicts.values())) or (
                not verdicts and node == PRIVATE):
            status = PRIVATE
        else:
            status = UNKNOWN if self.status == UNKNOWN else self.status
        if status != self.status:
            log.info("reachability: %s (was %s)", status, self.status)
            self.status = status
            for callback in list(self.on_change):
                callback(status)

    async def _ask_v1(self, peer: bytes, addrs: list[bytes]) -> None:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                stream, _proto, _addr = await self.host.open_stream(peer, [w.V1], 10.0)
                try:
                    msg = w.V1Message(w.DIAL, self.host.peer_id_bytes, addrs[: w.MAX_ADDRS])
                    await stream.write(w.framed(msg.encode()))
                    reply = w.decode_v1(await _read_frame(stream, FrameDecoder(w.MAX_MESSAGE)))
                finally:
                    await close_quietly(stream)
        except Exception as exc:
            log.debug("autonat v1 request to %s failed: %r", peer.hex()[:16], exc)
            self.answers["failed"] += 1
            return
        if reply.type != w.DIAL_RESPONSE:
            self.answers["failed"] += 1
            return
        kind = {w.OK: "ok", w.E_DIAL_ERROR: "error"}.get(reply.status, "refused")
        self.answers[kind] += 1
        if reply.status == w.OK:
            self._record(b"", peer, True)
            # the address it reached us at: one we asked about, or (nothing to ask about yet:
            # a home whose observed address has too few observers) the one it dialed, a
            # public IP; announced only once CONFIDENCE servers agree on it
            if reply.addr and (reply.addr in addrs or not addrs and not is_relayed(reply.addr)
                               and (ip := split_ip(reply.addr)) is not None
                               and classify(ip[0]) == "public"):
                self._record(reply.addr, peer, True)
        elif reply.status == w.E_DIAL_ERROR:
            self._record(b"", peer, False)
        else:
            log.debug("autonat v1 server %s: status %d %s", peer.hex()[:16], reply.status,
                      reply.status_text)

    async def _ask_v2(self, peer: bytes, addrs: list[bytes]) -> None:
        nonce = random.getrandbits(64)
        arrived = self._nonces[nonce] = trio.Event()
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                stream, _proto, _addr = await self.host.open_stream(peer, [w.V2_REQUEST], 10.0)
                try:
                    addrs = addrs[: w.MAX_ADDRS]
                    await stream.write(w.framed(w.encode_v2(w.DialRequest(addrs, nonce))))
                    decoder = FrameDecoder(w.MAX_MESSAGE)
                    msg = w.decode_v2(await _read_frame(stream, decoder))
                    if isinstance(msg, w.DialDataRequest):
                        if msg.num_bytes > CLIENT_MAX_DIAL_DATA or msg.addr_idx >= len(addrs):
                            raise AutonatError(f"the server asks {msg.num_bytes} bytes")
                        chunk = w.framed(w.encode_v2(w.DialDataResponse(
                            bytes(w.MAX_DIAL_DATA))))
                        for _ in range(-(-msg.num_bytes // w.MAX_DIAL_DATA)):
                            await stream.write(chunk)
                        msg = w.decode_v2(await _read_frame(stream, decoder))
                    if not isinstance(msg, w.DialResponse):
                        raise AutonatError(f"unexpected {type(msg).__name__}")
                finally:
                    await close_quietly(stream)
        except Exception as exc:
            log.debug("autonat v2 request to %s failed: %r", peer.hex()[:16], exc)
            self.answers["failed"] += 1
            return
        finally:
            self._nonces.pop(nonce, None)
        if msg.status != w.R_OK or msg.addr_idx >= len(addrs):
            self.answers["refused"] += 1
            return
        self.answers["ok" if msg.dial_status == w.D_OK else "error"] += 1
        addr = addrs[msg.addr_idx]
        if msg.dial_status == w.D_OK:
            if arrived.is_set():  # the dial back proved it; a bare claim does not count
                self._record(addr, peer, True)
        elif msg.dial_status == w.D_DIAL_ERROR:
            self._record(addr, peer, False)

    async def _serve_dial_back(self, stream) -> None:
        try:
            with trio.fail_after(10.0):
                frame = await _read_frame(stream, FrameDecoder(w.MAX_MESSAGE))
                nonce = w.decode_dial_back(frame)
                event = self._nonces.get(nonce)
                if event is not None:
                    event.set()
                await stream.write(w.framed(w.encode_dial_back_response()))
        except Exception as exc:
            log.debug("autonat dial-back refused: %r", exc)
            await reset_quietly(stream)
            return
        await close_quietly(stream)

    # -- the server ------------------------------------------------------------------------
    async def _serve_v1(self, stream) -> None:
        peer = self.host.stream_peer(stream)
        observed = self.host.stream_remote_addr(stream)
        try:
            with trio.fail_after(REQUEST_TIMEOUT + 5):
                msg = w.decode_v1(await _read_frame(stream, FrameDecoder(w.MAX_MESSAGE)))
                if msg.type != w.DIAL:
                    raise w.AutonatWireError("a v1 request that is not DIAL")
                reply = await self._answer_v1(peer, observed, msg)
                await stream.write(w.framed(reply.encode()))
        except (w.AutonatWireError, AutonatError, FramingError) as exc:
            self.served["bad"] += 1
            log.debug("autonat v1 request from %s refused: %s", peer.hex()[:16], exc)
            await reset_quietly(stream)
            return
        except Exception as exc:
            log.debug("autonat v1 request from %s failed: %r", peer.hex()[:16], exc)
            await reset_quietly(stream)
            return
        await close_quietly(stream)

    async def _answer_v1(self, peer: bytes, observed: bytes, msg: w.V1Message) -> w.V1Message:
        def answer(status: int, text: str, addr: bytes = b"") -> w.V1Message:
            return w.V1Message(w.DIAL_RESPONSE, status=status, status_text=text, addr=addr)

        if msg.peer_id and msg.peer_id != peer:
            return answer(w.E_BAD_REQUEST, "the peer id is not the requester's")
        if is_relayed(observed) or split_ip(observed) is None:
            return answer(w.E_DIAL_REFUSED, "no dial-backs over a relayed connection")
        if not self.v1_limit.allow(peer):
            self.served["refused"] += 1
            return answer(w.E_DIAL_REFUSED, "too many requests")
        mine = [a for a in msg.addrs if _same_ip(a, observed) and self._dialable(a)]
        if self._dialable(observed):
            mine.append(observed)  # the spec's MAY: the address we see it at
        mine = list(dict.fromkeys(mine))[:8]
        if not mine:
            return answer(w.E_DIAL_REFUSED, "no public address on the requester's IP")
        self.served["v1"] += 1
        for addr in mine:
            try:
                conn = await self.dialer.dial(peer, addr, DIAL_BACK_TIMEOUT)
            except Exception as exc:
                log.debug("autonat v1 dial-back to %s failed: %r", peer.hex()[:16], exc)
                continue
            await conn.close()
            return answer(w.OK, "", addr)
        return answer(w.E_DIAL_ERROR, "dial-back failed")

    async def _serve_v2(self, stream) -> None:
        peer = self.host.stream_peer(stream)
        observed = self.host.stream_remote_addr(stream)
        try:
            with trio.fail_after(REQUEST_TIMEOUT + 5):
                decoder = FrameDecoder(w.MAX_MESSAGE)
                msg = w.decode_v2(await _read_frame(stream, decoder))
                if not isinstance(msg, w.DialRequest):
                    raise w.AutonatWireError(f"a {type(msg).__name__} opening the stream")
                reply = await self._answer_v2(peer, observed, msg, stream, decoder)
                await stream.write(w.framed(w.encode_v2(reply)))
        except (w.AutonatWireError, AutonatError, FramingError) as exc:
            self.served["bad"] += 1
            log.debug("autonat v2 request from %s refused: %s", peer.hex()[:16], exc)
            await reset_quietly(stream)
            return
        except Exception as exc:
            log.debug("autonat v2 request from %s failed: %r", peer.hex()[:16], exc)
            await reset_quietly(stream)
            return
        await close_quietly(stream)

    async def _answer_v2(self, peer: bytes, observed: bytes, msg: w.DialRequest, stream,
                         decoder: FrameDecoder) -> w.DialResponse:
        if is_relayed(observed) or not self.v2_limit.allow(peer):
            self.served["refused"] += 1
            return w.DialResponse(w.R_REQUEST_REJECTED)
        pick = next((i for i, a in enumerate(msg.addrs) if self._dialable(a)), None)
        if pick is None:
            return w.DialResponse(w.R_DIAL_REFUSED)
        idx, addr = pick, msg.addrs[pick]
        if not _same_ip(addr, observed):
            if not self.dial_data_limit.allow(peer):
                self.served["refused"] += 1
                return w.DialResponse(w.R_REQUEST_REJECTED)
            need = random.randint(DIAL_DATA_MIN, DIAL_DATA_MAX)
            await stream.write(w.framed(w.encode_v2(w.DialDataRequest(idx, need))))
            got = 0
            while got < need:
                data = w.decode_v2(await _read_frame(stream, decoder))
                if not isinstance(data, w.DialDataResponse):
                    raise w.AutonatWireError("expected dial data")
                got += len(data.data)
        self.served["v2"] += 1
        return w.DialResponse(w.R_OK, idx, await self._dial_back(peer, addr, msg.nonce))

    def _dialable(self, addr: bytes) -> bool:
        ip = split_ip(addr)
        return ip is not None and classify(ip[0]) == "public" and self.dialer.can_dial(addr)

    async def _dial_back(self, peer: bytes, addr: bytes, nonce: int) -> int:
        try:
            conn = await self.dialer.dial(peer, addr, DIAL_BACK_TIMEOUT)
        except Exception as exc:
            log.debug("autonat v2 dial-back to %s failed: %r", peer.hex()[:16], exc)
            return w.D_DIAL_ERROR
        try:
            with trio.fail_after(DIAL_BACK_TIMEOUT):
                back = await conn.open_stream([w.V2_BACK], DIAL_BACK_TIMEOUT)
                await back.write(w.framed(w.encode_dial_back(nonce)))
                w.decode_dial_back_response(await _read_frame(back, FrameDecoder(64)))
                await close_quietly(back)
            return w.D_OK
        except Exception as exc:
            log.debug("autonat v2 dial-back stream to %s failed: %r", peer.hex()[:16], exc)
            return w.D_DIAL_BACK_ERROR
        finally:
            await conn.close()

    def summary(self) -> dict:
        """For status: whether the answer is forced, what servers answered us and what
        we served."""
        return {
            "forced": self.forced,
            "served": dict(self.served),
            "answers": dict(self.answers),
        }


__all__ = ["AutoNAT", "AutonatError", "Dialer", "PRIVATE", "PUBLIC", "RateLimit", "UNKNOWN"]
