"""A small blocking client of the control socket, for the ``p2pd`` CLI subcommands.

The CLI does one or two requests and exits, so plain blocking sockets are the right
tool: no event loop, and no py-libp2p import (which alone costs ~0.6 s). Framing is the
same sans-IO codec the server uses.
"""

from __future__ import annotations

import os
import socket
import time

from ..control.codec import FrameDecoder, decode_response, encode_message
from ..control.endpoint import Endpoint, parse_endpoint
from ..errors import P2PDError
from ..proto import daemon_pb2 as pb

DEFAULT_TIMEOUT = 30.0
PING_PROTOCOL = "/ipfs/ping/1.0.0"
PING_SIZE = 32


class DaemonNotRunning(P2PDError):
    """Nothing listens on the control endpoint."""


class RequestFailed(P2PDError):
    """The daemon answered a request with an ERROR response."""


def default_endpoint() -> Endpoint:
    """``$P2PD_HOME/p2pd.sock`` (creates nothing)."""
    from ..home import resolve_home, socket_path

    return Endpoint("unix", path=str(socket_path(resolve_home())))


class ControlClient:
    """A client of the control socket (a plain class: see Endpoint on dataclasses)."""

    __slots__ = ("endpoint", "timeout")

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint, self.timeout = endpoint, timeout

    @classmethod
    def for_address(cls, address: str | None, timeout: float = DEFAULT_TIMEOUT) -> ControlClient:
        return cls(parse_endpoint(address) if address else default_endpoint(), timeout)

    def _connect(self) -> socket.socket:
        ep = self.endpoint
        try:
            if ep.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(ep.path)
            else:
                sock = socket.create_connection((ep.host, ep.port), timeout=self.timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(
                f"no daemon is running (nothing listens on {ep.multiaddr()}); "
                "start one with `p2pd`, or pass --api with its control address"
            ) from None
        except OSError as exc:
            raise DaemonNotRunning(
                f"cannot reach the daemon at {ep.multiaddr()}: {exc.strerror or exc}"
            ) from None
        return sock

    def _exchange(self, sock: socket.socket, request: pb.Request) -> tuple[pb.Response, bytes]:
        sock.sendall(encode_message(request))
        decoder = FrameDecoder()
        while (frame := decoder.next_frame()) is None:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise P2PDError(f"the daemon did not answer within {self.timeout:g} s") from None
            decoder.receive_data(data)
            if not data and decoder.next_frame() is None:
                raise P2PDError("the daemon closed the connection without answering")
        response = decode_response(frame)
        if response.type == pb.Response.ERROR:
            raise RequestFailed(response.error.msg or "the daemon reported an unspecified error")
        return response, decoder.take_unconsumed()

    def request(self, request: pb.Request) -> pb.Response:
        """Send one request and return the OK response (ERROR raises RequestFailed)."""
        with self._connect() as sock:
            return self._exchange(sock, request)[0]

    def request_stream(self, request: pb.Request) -> list[pb.DHTResponse]:
        """A DHT request answered as a stream (Response with BEGIN, bare DHTResponse VALUEs,
        a bare END): the VALUEs. A single answer comes back as a one-item list."""
        with self._connect() as sock:
            first, rest = self._exchange(sock, request)
            if not (first.HasField("dht") and first.dht.type == pb.DHTResponse.BEGIN):
                return [first.dht]
            decoder = FrameDecoder()
            decoder.receive_data(rest)
            out: list[pb.DHTResponse] = []
            while True:
                while (frame := decoder.next_frame()) is None:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        raise P2PDError(
                            f"the daemon did not finish within {self.timeout:g} s") from None
                    decoder.receive_data(data)
                    if not data and decoder.next_frame() is None:
                        raise P2PDError("the daemon closed the connection mid-answer")
                value = pb.DHTResponse()
                try:
                    value.ParseFromString(frame)
                except Exception:
                    raise P2PDError("the daemon sent a malformed DHT answer") from None
                if value.type == pb.DHTResponse.END:
                    return out
                out.append(value)

    def _next_response(self, sock: socket.socket, decoder: FrameDecoder) -> pb.Response:
        while (frame := decoder.next_frame()) is None:
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise P2PDError(f"the daemon did not answer within {self.timeout:g} s") from None
            decoder.receive_data(data)
            if not data and decoder.next_frame() is None:
                raise P2PDError("the daemon closed the connection mid-answer")
        response = decode_response(frame)
        if response.type == pb.Response.ERROR:
            raise RequestFailed(response.error.msg or "the daemon reported an unspecified error")
        return response

    def request_progress(self, request: pb.Request, on_progress) -> pb.BlocksResponse:
        """A BLOCKS request that may report progress first: ``on_progress(BlocksResponse)``
        for each report, then the final BlocksResponse is returned."""
        with self._connect() as sock:
            sock.sendall(encode_message(request))
            decoder = FrameDecoder()
            while True:
                response = self._next_response(sock, decoder)
                if response.blocks.progress:
                    on_progress(response.blocks)
                    continue
                return response.blocks

    def request_bytes(self, request: pb.Request):
        """A CAT-like request: yields the announced size (an int), then bytes pieces."""
        with self._connect() as sock:
            first, rest = self._exchange(sock, request)
            yield first.blocks.size
            if rest:
                yield rest
            while True:
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    raise P2PDError(f"the daemon stalled for {self.timeout:g} s") from None
                if not data:
                    return
                yield data

    def identify(self) -> tuple[bytes, list[bytes]]:
        r = self.request(pb.Request(type=pb.Request.IDENTIFY))
        return r.identify.id, list(r.identify.addrs)

    def status(self) -> dict:
        """The node's STATUS (p2pd extension): reachability, external addresses, DHT mode."""
        import json

        return json.loads(self.request(pb.Request(type=pb.Request.STATUS)).status)

    def shutdown(self, wait: float) -> None:
        """Ask the daemon to stop (SHUTDOWN, p2pd extension), then wait up to ``wait``
        seconds until its control endpoint no longer answers."""
        self.request(pb.Request(type=pb.Request.SHUTDOWN))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self._connect().close()
            except DaemonNotRunning:
                if self._home_unlocked():
                    return
            time.sleep(0.05)
        raise P2PDError(f"the daemon at {self.endpoint.multiaddr()} was asked to stop but "
                        f"still answers after {wait:g} s")

    def _home_unlocked(self) -> bool:
        """A home daemon's lock (``p2pd.lock`` beside its socket) is free: it has closed
        its datastore and exited, so ``p2pd`` may start again at once."""
        if self.endpoint.kind != "unix":
            return True
        import fcntl

        try:
            fd = os.open(os.path.join(os.path.dirname(self.endpoint.path), "p2pd.lock"),
                         os.O_RDONLY)
        except OSError:
            return True  # not a home daemon's socket
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # drops our shared lock too
        return True

    def bandwidth(self) -> dict:
        """BANDWIDTH (p2pd extension): totals and rates, per protocol and per peer."""
        import json

        return json.loads(self.request(pb.Request(type=pb.Request.BANDWIDTH)).bandwidth)

    def list_peers(self) -> list[pb.PeerInfo]:
        return list(self.request(pb.Request(type=pb.Request.LIST_PEERS)).peers)

    def connect(self, peer: bytes, addrs: list[bytes], timeout: int | None = None) -> None:
        req = pb.ConnectRequest(peer=peer, addrs=addrs)
        if timeout:
            req.timeout = timeout
        self.request(pb.Request(type=pb.Request.CONNECT, connect=req))

    def disconnect(self, peer: bytes) -> None:
        self.request(
            pb.Request(type=pb.Request.DISCONNECT, disconnect=pb.DisconnectRequest(peer=peer))
        )

    def ping(self, peer: bytes, count: int) -> list[float]:
        """Round-trip times (seconds) of ``count`` pings over one /ipfs/ping/1.0.0 stream.

        The daemon protocol has no ping request; a STREAM_OPEN to the ping protocol
        gives the same measurement with any daemon that speaks the standard protocol.
        """
        sock = self._connect()
        try:
            req = pb.StreamOpenRequest(peer=peer, proto=[PING_PROTOCOL])
            _, pending = self._exchange(
                sock, pb.Request(type=pb.Request.STREAM_OPEN, streamOpen=req)
            )
            rtts = []
            for _ in range(count):
                payload = os.urandom(PING_SIZE)
                started = time.perf_counter()
                sock.sendall(payload)
                echoed = bytearray(pending)
                pending = b""
                while len(echoed) < PING_SIZE:
                    data = sock.recv(PING_SIZE - len(echoed))
                    if not data:
                        raise P2PDError("the peer closed the ping stream")
                    echoed += data
                if bytes(echoed) != payload:
                    raise P2PDError("the peer answered the ping with different bytes")
                rtts.append(time.perf_counter() - started)
            return rtts
        finally:
            sock.close()
