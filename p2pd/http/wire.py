"""HTTP/1.1 for the local listeners, sans-IO, over h11.

:class:`HTTPConnection` is fed bytes and yields :class:`Request` values (head only: the
listeners take GET and HEAD, a request body is refused), and turns responses into
bytes. h11 does the parsing; this module bounds it (head size, header count, target
length) and turns every way a request can be malformed into :class:`BadRequest` with
the status to answer, so the server never sees an h11 exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import h11

#: Most bytes a request head may take (request line and headers).
MAX_HEAD = 16 * 1024
MAX_HEADERS = 64
MAX_TARGET = 8 * 1024


class BadRequest(Exception):
    """The request cannot be answered normally; ``status`` says how to refuse it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    path: str  # the raw path of the target, percent-encoded as sent
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # names lowercased; repeats joined

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


class HTTPConnection:
    """One server-side HTTP/1.1 connection's state: bytes in, requests out."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (``b""`` when it closed its side)."""
        self._h11.receive_data(data)

    def next_request(self) -> Request | None:
        """The next complete request head, or None when more bytes are needed.

        Raises :class:`BadRequest` for anything malformed, oversized or not GET/HEAD,
        and :class:`EOFError` when the client closed without a request.
        """
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint or 400
            raise BadRequest(status if status in (400, 414, 431) else 400,
                             f"malformed request: {exc}") from None
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.ConnectionClosed):
            raise EOFError("the client closed the connection")
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 starts with a Request
            raise BadRequest(400, "malformed request")
        return _request(event)

    def body_finished(self) -> bool:
        """Take what follows a GET/HEAD head: True once its (empty) body has ended."""
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if isinstance(event, h11.Data):
                return False  # a body on GET: not taken, the connection closes after
            return False

    @property
    def their_state(self):
        return self._h11.their_state

    def respond(self, status: int, headers: list[tuple[str, str]], *, head: bool = False) -> bytes:
        """The bytes of a response head."""
        try:
            return self._h11.send(h11.Response(status_code=status, headers=headers,
                                               reason=_reason(status)))
        except h11.LocalProtocolError:
            # The request could not be read (h11 then refuses to answer it): answer
            # outside h11's state machine; the connection closes after this response.
            lines = [b"HTTP/1.1 %d %s" % (status, _reason(status))]
            lines += [k.encode() + b": " + v.encode() for k, v in headers]
            return b"\r\n".join(lines) + b"\r\n\r\n"

    def data(self, chunk: bytes) -> bytes:
        try:
            return self._h11.send(h11.Data(data=chunk))
        except h11.LocalProtocolError:
            return chunk

    def end(self) -> bytes:
        try:
            return self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return b""

    def next_cycle(self) -> bool:
        """Ready for the next request on this connection (keep-alive)?"""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            try:
                self._h11.start_next_cycle()
            except h11.LocalProtocolError:
                return False
            return True
        return False


def _reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _request(event: h11.Request) -> Request:
    method = event.method.decode("ascii", "replace")
    target = event.target
    if len(target) > MAX_TARGET:
        raise BadRequest(414, f"request target of {len(target)} bytes is too long")
    if len(event.headers) > MAX_HEADERS:
        raise BadRequest(431, f"{len(event.headers)} header fields; at most {MAX_HEADERS}")
    # h11 bounds only a head still incomplete; one that arrived whole is bounded here
    if sum(len(n) + len(v) + 4 for n, v in event.headers) > MAX_HEAD:
        raise BadRequest(431, f"request header fields over {MAX_HEAD} bytes")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("ascii", "replace").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "the request target is not ASCII") from None
    if not text.startswith("/"):
        raise BadRequest(400, "only origin-form targets (/path) are served")
    path, _, qs = text.partition("?")
    path = path.partition("#")[0]
    try:
        query = dict(parse_qsl(qs, keep_blank_values=True, max_num_fields=32)) if qs else {}
    except ValueError:
        raise BadRequest(400, "too many query parameters") from None
    if method not in ("GET", "HEAD"):
        raise BadRequest(405, f"method {method} is not allowed here (GET and HEAD only)")
    return Request(method, path, query, headers)
