"""A small HTTP/1.1 server on trio sockets for the local listeners.

Bounded everywhere, since any local program may connect: at most ``max_connections``
at once (one more is told 503 and closed), a request head must arrive within
``head_timeout``, a keep-alive connection idle for ``idle_timeout`` is closed, every
chunk of a response must be taken by the client within ``send_timeout`` (a slow reader
holds one chunk, never a growing buffer), and a handler that takes longer than
``handler_timeout`` to produce its response head is answered 504.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import trio

from .wire import BadRequest, HTTPConnection, Request

log = logging.getLogger(__name__)

READ_SIZE = 16 * 1024


class BodyAborted(Exception):
    """A body that cannot go on after its head was sent (a block that did not arrive or did
    not verify): the connection is closed so the client sees the response cut short."""


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: the whole body, or chunks (each written under the send timeout)
    body: bytes | AsyncIterator[bytes] = b""
    length: int | None = None  # Content-Length for a chunked body (None: chunked encoding)
    #: runs beside the body and is cancelled when it ends (a prefetch, say)
    background: Callable[[], Awaitable[None]] | None = None


Handler = Callable[[Request], Awaitable[Response]]


def text_response(status: int, text: str, headers: list[tuple[str, str]] | None = None
                  ) -> Response:
    body = (text.rstrip("\n") + "\n").encode()
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])],
                    body)


class HTTPServer:
    def __init__(self, handler: Handler, *, name: str = "http", max_connections: int = 64,
                 head_timeout: float = 10.0, idle_timeout: float = 30.0,
                 send_timeout: float = 30.0, handler_timeout: float = 60.0) -> None:
        self.handler = handler
        self.name = name
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.handler_timeout = handler_timeout
        self._slots = trio.Semaphore(max_connections)
        self.requests = 0
        self.refused = 0

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._client, listeners)
            task_status.started()

    async def _client(self, stream: trio.SocketStream) -> None:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.refused += 1
            with trio.move_on_after(1):
                try:
                    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: "
                                          b"0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            await trio.aclose_forcefully(stream)
            return
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("%s client went away: %r", self.name, exc)
        except trio.TooSlowError:
            log.debug("%s client too slow; closed", self.name)
        except BodyAborted as exc:
            log.info("%s response cut short: %s", self.name, exc)
        except Exception:  # one request's bug never stops the listener
            log.exception("%s request failed", self.name)
        finally:
            self._slots.release()
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = HTTPConnection()
        first = True
        while True:
            try:
                request = await self._read_head(stream, conn,
                                                self.head_timeout if first else self.idle_timeout)
            except EOFError:
                return
            except BadRequest as exc:
                await self._send(stream, conn, _error(exc.status, str(exc)), head=False,
                                 close=True)
                return
            if request is None:
                return  # no complete head in time
            first = False
            self.requests += 1
            clean = conn.body_finished()
            with trio.move_on_after(self.handler_timeout) as scope:
                response = await self.handler(request)
            if scope.cancelled_caught:
                response = _error(504, "the answer took too long")
            keep = clean and request.header("connection").lower() != "close"
            try:
                async with trio.open_nursery() as nursery:
                    if response.background is not None and request.method != "HEAD":
                        nursery.start_soon(_quietly, response.background, self.name)
                    await self._send(stream, conn, response, head=request.method == "HEAD",
                                     close=not keep)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:  # the send's own error, as if unwrapped
                leaves = _leaves(group)
                if len(leaves) == 1 and isinstance(leaves[0], Exception):
                    raise leaves[0] from None
                raise
            if not keep or not conn.next_cycle():
                return

    async def _read_head(self, stream, conn: HTTPConnection, timeout: float) -> Request | None:
        with trio.move_on_after(timeout):
            while True:
                request = conn.next_request()
                if request is not None:
                    return request
                data = await stream.receive_some(READ_SIZE)
                conn.receive_data(data)
        return None

    async def _send(self, stream, conn: HTTPConnection, response: Response, *, head: bool,
                    close: bool) -> None:
        headers = list(response.headers)
        body = original = response.body
        if response.status in (204, 304):
            body = b""  # no body, and no Content-Length claiming one
        elif isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        elif response.length is not None:
            headers.append(("Content-Length", str(response.length)))
        if close:
            headers.append(("Connection", "close"))
        try:
            await self._write(stream, conn.respond(response.status, headers, head=head))
            if head:
                if not isinstance(body, bytes):
                    await _aclose(body)
                # h11 counts a HEAD response's body as empty
                await self._write(stream, conn.end())
                return
            if isinstance(body, bytes):
                if body:
                    await self._write(stream, conn.data(body))
            else:
                async for chunk in body:
                    if chunk:
                        await self._write(stream, conn.data(chunk))
            await self._write(stream, conn.end())
        finally:
            if not isinstance(original, bytes):
                await _aclose(original)

    async def _write(self, stream, data: bytes) -> None:
        if data:
            with trio.fail_after(self.send_timeout):
                await stream.send_all(data)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def _quietly(task: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        await task()
    except Exception as exc:  # a helper's failure never ends the response
        log.debug("%s background task failed: %r", name, exc)


async def _aclose(body) -> None:
    close = getattr(body, "aclose", None)
    if close is not None:
        await close()


def _error(status: int, message: str) -> Response:
    return text_response(status, message)


async def open_tcp_listeners(host: str, port: int) -> list[trio.SocketListener]:
    return await trio.open_tcp_listeners(port, host=host)
