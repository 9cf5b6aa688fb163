"""The HTTP server's bounds over real sockets on 127.0.0.1 (short timeouts, so the test is
quick): a client that stops reading is dropped, a slow handler is a 504, keep-alive works."""

from __future__ import annotations

import trio

from p2pd.http.server import HTTPServer, Response, text_response


async def _serve(nursery, handler, **limits) -> tuple[HTTPServer, int]:
    server = HTTPServer(handler, **limits)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await nursery.start(server.serve, listeners)
    return server, listeners[0].socket.getsockname()[1]


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout():
    sent = []

    async def big(_request):
        async def chunks():
            for _ in range(256):
                sent.append(1)
                yield b"x" * (1 << 20)
        return Response(200, [], chunks(), length=256 << 20)

    async with trio.open_nursery() as nursery:
        server, port = await _serve(nursery, big, send_timeout=0.5)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(10):
            while server._slots.value != server.max_connections or not sent:
                await trio.sleep(0.05)  # the connection's slot is free again: it was dropped
        assert len(sent) < 64  # what sat in socket buffers, never the whole body
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_handler_that_takes_too_long_is_answered_504_and_keep_alive_serves_on():
    async def handler(request):
        if request.path == "/slow":
            await trio.sleep(30)
        return text_response(200, "fine")

    async with trio.open_nursery() as nursery:
        _server, port = await _serve(nursery, handler, handler_timeout=0.3)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        with trio.fail_after(10):
            while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b"\n"):
                got += await client.receive_some(65536)
        first, second = got.split(b"HTTP/1.1 ")[1:3]
        assert first.startswith(b"200 ") and first.endswith(b"fine\n")
        assert second.startswith(b"504 ")
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_an_idle_keep_alive_connection_is_closed():
    async def handler(_request):
        return text_response(200, "ok")

    async with trio.open_nursery() as nursery:
        _server, port = await _serve(nursery, handler, idle_timeout=0.3)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        with trio.fail_after(10):
            while True:
                data = await client.receive_some(65536)
                if not data:
                    break
                got += data
        assert got.startswith(b"HTTP/1.1 200 ")
        nursery.cancel_scope.cancel()
