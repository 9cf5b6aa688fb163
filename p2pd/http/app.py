"""The ``[http] listen`` routes: the status page (``/``), its JSON (``/api/status``) and
the gateway (``/ipfs/...``)."""

from __future__ import annotations

import json
from importlib import resources

from .gateway import Gateway
from .server import Response, text_response
from .wire import Request

#: A browser may not use the page's data from another origin; nothing may frame it.
PAGE_HEADERS = [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-store"),
                ("Content-Security-Policy",
                 "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                 "img-src 'self' data:")]


class App:
    def __init__(self, source, *, block_timeout: float | None = None) -> None:
        self.source = source
        self.gateway = (Gateway(source) if block_timeout is None
                        else Gateway(source, block_timeout=block_timeout))
        files = resources.files("p2pd.http") / "static"
        self.static = {name: (files / name).read_bytes()
                       for name in ("index.html", "status.js", "status.css")}

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/ipfs/"):
            return await self.gateway.handle(request)
        if path in ("/", "/index.html"):
            return self._static("index.html", "text/html; charset=utf-8")
        if path == "/status.js":
            return self._static("status.js", "text/javascript; charset=utf-8")
        if path == "/status.css":
            return self._static("status.css", "text/css; charset=utf-8")
        if path == "/api/status":
            body = json.dumps(await self.source.status()).encode()
            return Response(200, [("Content-Type", "application/json"), *PAGE_HEADERS], body)
        return text_response(404, f"nothing at {path[:200]} (see / and /ipfs/CID)")

    def _static(self, name: str, kind: str) -> Response:
        return Response(200, [("Content-Type", kind), *PAGE_HEADERS], self.static[name])
