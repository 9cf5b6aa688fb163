"""The control socket server: the libp2p daemon protocol over Unix or TCP sockets, on trio.

Each client connection carries requests until it closes; a STREAM_OPEN turns it into a
pipe to the opened libp2p stream, as the spec says. Every byte is untrusted: frames are
bounded (:class:`~p2pd.control.codec.FrameDecoder`), a client that stays silent longer
than the idle timeout is disconnected, a malformed request gets an ERROR response and
the connection is closed, and none of that touches any other client.

A PERSISTENT_CONN_UPGRADE (the hivemind fork) hands the connection to
:class:`~p2pd.control.unary.PersistentConnection`: no idle timeout there, its own message
size limit. With an idle-exit timeout the server ends the daemon once no persistent
connection has been open for that long (from the start, or since the last one closed).

Tasks: the accept loop, the idle-exit watch and one task per client live in the nursery
:meth:`serve` runs in (the node's). Inbound streams for registered handlers are piped
inside the task py-libp2p runs the protocol handler in.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as pysocket
from collections.abc import Callable

import trio

from ..errors import NodeError
from ..net.streams import read_some
from ..proto import daemon_pb2 as pb
from .codec import (
    ControlProtocolError,
    FrameDecoder,
    decode_remove_stream_handler,
    decode_request,
    encode_message,
    error_response,
    is_persistent_upgrade,
    ok_response,
)
from .endpoint import Endpoint, endpoint_listening, parse_endpoint
from .persistent import DEFAULT_MAX_MSG_SIZE, RoundRobin
from .ports import ControlNode
from .unary import PersistentConnection, UnaryHub

log = logging.getLogger(__name__)

#: Largest read from a client socket: a bigger read is fewer, larger stream writes
#: (a 256 MiB STREAM_OPEN download went from ~120 to ~200 MiB/s going from 64 KiB to 1 MiB).
PIPE_CHUNK = 1 << 20
#: Read size for requests (small; a recv allocates its whole buffer first).
REQUEST_CHUNK = 64 << 10
HANDLER_DIAL_TIMEOUT = 10.0


async def open_listener(endpoint: Endpoint) -> trio.SocketListener:
    """Bind the control endpoint. A Unix socket is created with mode 0600.

    A stale socket file left by a crashed daemon is replaced; a live one (something
    accepts connections on it) is an error, so two daemons never share a socket.
    """
    if endpoint.kind == "unix":
        path = endpoint.path
        if os.path.exists(path):
            if await _unix_socket_is_live(path):
                raise OSError(errno.EADDRINUSE, f"a daemon is already listening on {path}")
            os.unlink(path)
        sock = trio.socket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window for others
        try:
            await sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
    else:
        family = pysocket.AF_INET6 if ":" in endpoint.host else pysocket.AF_INET
        sock = trio.socket.socket(family, pysocket.SOCK_STREAM)
        sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
        await sock.bind((endpoint.host, endpoint.port))
    sock.listen(128)
    return trio.SocketListener(sock)


async def _unix_socket_is_live(path: str) -> bool:
    probe = trio.socket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    try:
        with trio.move_on_after(2):
            await probe.connect(path)
            return True
        return True  # connect hung: someone owns it
    except OSError:
        return False
    finally:
        probe.close()


def bound_endpoint(listener: trio.SocketListener, endpoint: Endpoint) -> Endpoint:
    """The endpoint actually bound (a TCP port 0 becomes the real port)."""
    if endpoint.kind == "tcp":
        host, port = listener.socket.getsockname()[:2]
        return Endpoint("tcp", host=host, port=port)
    return endpoint


async def connect_endpoint(endpoint: Endpoint) -> trio.SocketStream:
    if endpoint.kind == "unix":
        return await trio.open_unix_socket(endpoint.path)
    return await trio.open_tcp_stream(endpoint.host, endpoint.port)


class ControlServer:
    """Serves the daemon protocol for one node."""

    def __init__(
        self,
        node: ControlNode,
        *,
        max_frame: int,
        idle_timeout: float,
        max_clients: int,
        persistent_max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
        exit_when_idle: float = 0.0,
        on_idle: Callable[[], None] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        """``exit_when_idle`` > 0 (seconds, the fork's ``-idleTimeout``): call ``on_idle``
        once no persistent connection has been open for that long. ``on_shutdown``: what
        a SHUTDOWN request (``p2pd shutdown``) calls once it is answered."""
        self.node = node
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self._clients = trio.CapacityLimiter(max_clients)
        #: protocol -> handler endpoints registered by clients (STREAM_HANDLER), in turn
        self.handlers: dict[str, RoundRobin[Endpoint]] = {}
        self.unary = UnaryHub(node, persistent_max_msg_size, self.handlers.__contains__)
        self.exit_when_idle = exit_when_idle
        self.on_idle = on_idle
        self.on_shutdown = on_shutdown
        self._persistent_open = 0
        self._persistent_changed = trio.Event()
        self._dispatch: dict[int, Callable] = {
            pb.Request.IDENTIFY: self._identify,
            pb.Request.CONNECT: self._connect,
            pb.Request.DISCONNECT: self._disconnect,
            pb.Request.LIST_PEERS: self._list_peers,
            pb.Request.STREAM_HANDLER: self._stream_handler,
            pb.Request.CONNMANAGER: self._connmanager,
            pb.Request.PEERSTORE: self._peerstore,
            pb.Request.DHT: self._dht,
            pb.Request.PUBSUB: self._pubsub,
            pb.Request.STATUS: self._status,
            pb.Request.SHUTDOWN: self._shutdown_refused,  # answered above when it can be
            pb.Request.BANDWIDTH: self._bandwidth,
        }

    async def serve(
        self, listeners: list[trio.SocketListener], *, task_status=trio.TASK_STATUS_IGNORED
    ):
        """Accept clients until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self.handle_client, listeners)
            if self.exit_when_idle > 0 and self.on_idle is not None:
                nursery.start_soon(self._watch_idle)
            task_status.started()

    async def _watch_idle(self) -> None:
        """Call ``on_idle`` once no persistent connection was open for ``exit_when_idle``."""
        while True:
            if self._persistent_open:
                await self._persistent_changed.wait()
                continue
            with trio.move_on_after(self.exit_when_idle):
                await self._persistent_changed.wait()
                continue
            log.info("no persistent control connection for %g s (-idleTimeout): exiting",
                     self.exit_when_idle)
            self.on_idle()
            return

    def _persistent_count(self, delta: int) -> None:
        self._persistent_open += delta
        self._persistent_changed.set()
        self._persistent_changed = trio.Event()

    # -- one client ---------------------------------------------------------------------

    async def handle_client(self, stream: trio.SocketStream) -> None:
        try:
            self._clients.acquire_nowait()
        except trio.WouldBlock:
            await _send_quietly(stream, error_response("too many control clients; retry later"))
            await trio.aclose_forcefully(stream)
            return
        try:
            await self._serve_client(stream)
        except Exception:  # one client's bug must never stop the server for the others
            log.exception("control client failed")
            await trio.aclose_forcefully(stream)
        finally:
            self._clients.release()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        decoder = FrameDecoder(self.max_frame)
        handed_off = False
        try:
            while True:
                try:
                    frame = await self._read_frame(stream, decoder)
                    if frame is None:
                        return
                    request = decode_request(frame)
                except ControlProtocolError as exc:
                    await _send_quietly(stream, error_response(str(exc)))
                    return
                except trio.TooSlowError:
                    await _send_quietly(
                        stream,
                        error_response(f"no request within {self.idle_timeout:g} s; closing"),
                    )
                    return
                if (request.type == pb.Request.PUBSUB and request.HasField("pubsub")
                        and request.pubsub.type == pb.PSRequest.SUBSCRIBE):
                    from .pubsub import serve_subscribe

                    await serve_subscribe(self.node, request, stream)
                    return
                if request.type == pb.Request.BLOCKS:
                    from .blocks import serve_blocks

                    if not await serve_blocks(self.node, request, stream):
                        return
                    continue
                if request.type == pb.Request.STREAM_OPEN:
                    handed_off = True
                    await self._stream_open(request, stream, decoder)
                    return
                if is_persistent_upgrade(request):
                    await self._persistent(stream, decoder)
                    return
                if request.type == pb.Request.SHUTDOWN and self.on_shutdown is not None:
                    await stream.send_all(encode_message(ok_response()))
                    log.info("shutting down: asked by a control client")
                    self.on_shutdown()
                    return
                try:
                    if request.type == pb.Request.REMOVE_STREAM_HANDLER:
                        removal = decode_remove_stream_handler(frame)
                        response = await self._remove_stream_handler(removal)
                    else:
                        response = await self._dispatch[request.type](request)
                except ControlProtocolError as exc:
                    response = error_response(str(exc))
                except NodeError as exc:
                    response = error_response(str(exc))
                # Streaming requests (DHT FIND_PROVIDERS, ...) answer with several messages.
                for one in response if isinstance(response, list) else [response]:
                    await stream.send_all(encode_message(one))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            if not handed_off:
                _close_now(stream)

    async def _read_frame(self, stream: trio.SocketStream, decoder: FrameDecoder) -> bytes | None:
        """Next frame, ``None`` at a clean end of stream; TooSlowError if the client idles."""
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            with trio.CancelScope(deadline=trio.current_time() + self.idle_timeout) as timer:
                data = await stream.receive_some(REQUEST_CHUNK)
            if timer.cancelled_caught:  # (a plain scope: fail_after costs more per request)
                raise trio.TooSlowError
            decoder.receive_data(data)
            if not data:
                frame = decoder.next_frame()  # raises if the stream ended mid-frame
                return frame

    async def _persistent(self, stream: trio.SocketStream, decoder: FrameDecoder) -> None:
        """Serve an upgraded connection until it closes; it counts for the idle exit."""
        self._persistent_count(+1)
        try:
            await PersistentConnection(self.unary, stream).serve(decoder.take_unconsumed())
        finally:
            self._persistent_count(-1)

    # -- requests -----------------------------------------------------------------------

    async def _identify(self, request: pb.Request) -> pb.Response:
        return ok_response(
            identify=pb.IdentifyResponse(
                id=self.node.peer_id_bytes,
                addrs=self.node.listen_addr_bytes(),
            )
        )

    async def _shutdown_refused(self, request: pb.Request) -> pb.Response:
        raise NodeError("this control server cannot stop its daemon")

    async def _bandwidth(self, request: pb.Request) -> pb.Response:
        import json

        return ok_response(bandwidth=json.dumps(self.node.bandwidth_report()))

    async def _status(self, request: pb.Request) -> pb.Response:
        import json

        return ok_response(status=json.dumps(self.node.reachability()))

    async def _connect(self, request: pb.Request) -> pb.Response:
        if not request.HasField("connect"):
            raise NodeError("CONNECT request without a ConnectRequest")
        c = request.connect
        addrs = list(c.addrs)
        if not addrs and self.node.dht is not None and not self.node.peer_addrs(c.peer):
            # As go's routed host: a peer id alone is looked up in the DHT first (hivemind
            # asks this to learn whether an identity is already in use on the network).
            peer = self.node.parse_peer_id(c.peer).to_bytes()
            with trio.move_on_after(_timeout(c) or 60.0):
                addrs = list(await self.node.dht.find_peer(peer) or [])
            if not addrs:
                raise NodeError(f"failed to connect to {self.node.parse_peer_id(c.peer)}: "
                                "no addresses given and the DHT does not know the peer")
        await self.node.connect(c.peer, addrs, _timeout(c))
        return ok_response()

    async def _disconnect(self, request: pb.Request) -> pb.Response:
        if not request.HasField("disconnect"):
            raise NodeError("DISCONNECT request without a DisconnectRequest")
        await self.node.disconnect(request.disconnect.peer)
        return ok_response()

    async def _list_peers(self, request: pb.Request) -> pb.Response:
        return ok_response(
            peers=[pb.PeerInfo(id=p.peer_id, addrs=p.addrs) for p in self.node.peers()]
        )

    async def _stream_open(
        self, request: pb.Request, client: trio.SocketStream, decoder: FrameDecoder
    ) -> None:
        """Open the stream, answer, then pipe bytes both ways until both sides close."""
        try:
            if not request.HasField("streamOpen"):
                raise NodeError("STREAM_OPEN request without a StreamOpenRequest")
            so = request.streamOpen
            stream, proto, addr = await self.node.open_stream(so.peer, list(so.proto), _timeout(so))
        except NodeError as exc:
            await _send_quietly(client, error_response(str(exc)))
            await trio.aclose_forcefully(client)
            return
        info = pb.StreamInfo(peer=bytes(so.peer), addr=addr, proto=proto)
        try:
            await client.send_all(encode_message(ok_response(streamInfo=info)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await _reset_quietly(stream)
            await trio.aclose_forcefully(client)
            return
        await pipe(client, stream, decoder.take_unconsumed())

    async def _stream_handler(self, request: pb.Request) -> pb.Response:
        """Register a handler endpoint; with ``balanced`` it joins the protocol's others.

        As in the hivemind fork, a second non-balanced handler for a protocol is refused
        ("handler for protocol P already set"), unless the one holding it no longer
        listens (a client that went away without REMOVE_STREAM_HANDLER, as upstream
        p2pclient users do): then the newcomer takes over. The same endpoint registered
        again is refused too while it listens (hivemind's tests expect it); with
        ``balanced`` it is kept once.
        """
        if not request.HasField("streamHandler"):
            raise NodeError("STREAM_HANDLER request without a StreamHandlerRequest")
        sh = request.streamHandler
        protos = [p for p in sh.proto if p]
        if not protos:
            raise NodeError("STREAM_HANDLER request names no protocol")
        try:
            endpoint = parse_endpoint(str(self.node.parse_multiaddr(sh.addr)))
        except Exception as exc:
            raise NodeError(f"bad handler address: {exc}") from None
        for proto in protos:
            if proto in self.unary.handlers:
                raise NodeError(f"handler for protocol {proto} already set")
            serving = self.handlers.get(proto)
            if serving is not None and not sh.balanced:
                if self._any_live(serving):
                    raise NodeError(f"handler for protocol {proto} already set")
                serving = None
            if serving is None:
                self.handlers[proto] = RoundRobin(endpoint)
                self.node.set_stream_handler(proto, self._inbound_handler(proto))
            elif endpoint not in serving:
                serving.append(endpoint)
        return ok_response()

    @staticmethod
    def _any_live(endpoints: RoundRobin[Endpoint]) -> bool:
        return any(endpoint_listening(e) is not False for e in endpoints)

    async def _remove_stream_handler(self, request: pb.RemoveStreamHandlerRequest) -> pb.Response:
        """The fork's REMOVE_STREAM_HANDLER: drop one endpoint from each protocol named."""
        try:
            endpoint = parse_endpoint(str(self.node.parse_multiaddr(request.addr)))
        except Exception as exc:
            raise NodeError(f"bad handler address: {exc}") from None
        protos = [p for p in request.proto if p]
        if not protos:
            raise NodeError("REMOVE_STREAM_HANDLER request names no protocol")
        for proto in protos:
            serving = self.handlers.get(proto)
            if serving is None:
                raise NodeError(f"handler for protocol {proto} does not exist")
            if not serving.remove(endpoint):
                raise NodeError(
                    f"handler for protocol {proto} with maddr {endpoint.multiaddr()} does not exist"
                )
            if not len(serving):
                del self.handlers[proto]
                self.node.remove_stream_handler(proto)
        return ok_response()

    def _inbound_handler(self, proto: str):
        async def handle(stream) -> None:
            client = None
            for endpoint in (self.handlers.get(proto) or RoundRobin()).take():
                try:
                    with trio.fail_after(HANDLER_DIAL_TIMEOUT):
                        client = await connect_endpoint(endpoint)
                    break
                except (OSError, trio.TooSlowError) as exc:
                    log.info("handler for %s at %s unreachable: %s", proto, endpoint, exc)
            if client is None:
                # Ended, not reset: the go daemon resets, but its callers negotiate
                # lazily and so see an open stream that ends at once (hivemind's tests
                # expect exactly that); a reset right behind our multistream answer can
                # make an eager opener fail the negotiation instead.
                try:
                    await stream.close()
                except Exception:
                    await _reset_quietly(stream)
                return
            info = pb.StreamInfo(
                peer=self.node.stream_peer(stream),
                addr=self.node.stream_remote_addr(stream),
                proto=str(stream.get_protocol() or proto),
            )
            try:
                await client.send_all(encode_message(info))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await _reset_quietly(stream)
                await trio.aclose_forcefully(client)
                return
            await pipe(client, stream, b"")

        return handle

    async def _connmanager(self, request: pb.Request) -> pb.Response:
        if not request.HasField("connManager"):
            raise NodeError("CONNMANAGER request without a ConnManagerRequest")
        cm = request.connManager
        if cm.type == pb.ConnManagerRequest.TAG_PEER:
            self.node.tag_peer(cm.peer, cm.tag, cm.weight)
        elif cm.type == pb.ConnManagerRequest.UNTAG_PEER:
            self.node.untag_peer(cm.peer, cm.tag)
        elif cm.type == pb.ConnManagerRequest.TRIM:
            await self.node.trim()
        else:
            raise NodeError(f"unknown CONNMANAGER request type {cm.type}")
        return ok_response()

    async def _peerstore(self, request: pb.Request) -> pb.Response:
        if not request.HasField("peerStore"):
            raise NodeError("PEERSTORE request without a PeerstoreRequest")
        ps = request.peerStore
        if ps.type == pb.PeerstoreRequest.GET_PROTOCOLS:
            protos = self.node.peer_protocols(ps.id)
            return ok_response(peerStore=pb.PeerstoreResponse(protos=protos))
        if ps.type == pb.PeerstoreRequest.GET_PEER_INFO:
            if not self.node.knows_peer(ps.id):
                raise NodeError("peer not found in the peerstore")
            info = pb.PeerInfo(id=bytes(ps.id), addrs=self.node.peer_addrs(ps.id))
            return ok_response(peerStore=pb.PeerstoreResponse(peer=info))
        raise NodeError(f"unsupported PEERSTORE request type {ps.type}")

    async def _dht(self, request: pb.Request) -> pb.Response | list:
        if self.node.dht is None:
            raise NodeError("DHT not enabled: start the daemon with -dht (or [dht] enabled)")
        if not request.HasField("dht"):
            raise NodeError("DHT request without a DHTRequest")
        from .dht import handle_dht

        return await handle_dht(self.node, request.dht)

    async def _pubsub(self, request: pb.Request) -> pb.Response:
        from .pubsub import handle_pubsub

        return await handle_pubsub(self.node, request)


def _timeout(message) -> float | None:
    if message.HasField("timeout") and message.timeout > 0:
        return float(min(message.timeout, 3600))
    return None


def _close_now(stream: trio.SocketStream) -> None:
    """Close a client's socket at once: what ``aclose_forcefully`` does without its cancel
    scope and scheduling round, a large part of a one-request client's cost (a profile of
    50 clients at once); trio's socket close wakes any task still waiting on it."""
    stream.socket.close()


async def _send_quietly(stream: trio.abc.SendStream, response: pb.Response) -> None:
    """Best effort: the client may already be gone."""
    with trio.move_on_after(5):
        try:
            await stream.send_all(encode_message(response))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def _reset_quietly(stream) -> None:
    try:
        await stream.reset()
    except Exception:
        pass


async def pipe(client: trio.SocketStream, stream, leftover: bytes) -> None:
    """Copy bytes between a control-socket client and a libp2p stream, both ways.

    Half-closes are passed through (client EOF -> stream write-close; stream EOF ->
    socket ``send_eof``). A failure on either side resets the stream and closes the
    socket, and the other direction is cancelled.
    """
    failed = False

    async def upstream() -> None:
        if leftover:
            await stream.write(leftover)
        while True:
            data = await client.receive_some(PIPE_CHUNK)
            if not data:
                break
            await stream.write(data)
        await stream.close_write()

    async def downstream() -> None:
        while True:
            # Everything buffered at once (n=None): one write per arrival on the
            # client's socket, whatever the muxer (docs/decisions.md).
            data = await read_some(stream)
            if not data:
                break
            await client.send_all(data)
        try:
            await client.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def guarded(fn, cancel_scope: trio.CancelScope) -> None:
        nonlocal failed
        try:
            await fn()
        except trio.Cancelled:
            raise
        except Exception as exc:
            log.debug("pipe %s ended: %r", fn.__name__, exc)
            failed = True
            cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, upstream, nursery.cancel_scope)
            nursery.start_soon(guarded, downstream, nursery.cancel_scope)
    finally:
        with trio.CancelScope(shield=True):
            if failed:
                await _reset_quietly(stream)
            else:
                try:
                    await stream.close()
                except Exception:
                    await _reset_quietly(stream)
            await trio.aclose_forcefully(client)
