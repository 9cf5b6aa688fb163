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
    def __init__(self, source, *, block_timeout: float | None = None,
                 check_host: bool = True) -> None:
        """``check_host``: answer only requests whose Host is an IP literal or localhost
        (a listener on loopback: a web page that rebinds its own name to 127.0.0.1 must
        not read the node's status or its blocks)."""
        self.source = source
        self.check_host = check_host
        self.gateway = (Gateway(source) if block_timeout is None
                        else Gateway(source, block_timeout=block_timeout))
        files = resources.files("p2pd.http") / "static"
        self.static = {name: (files / name).read_bytes()
                       for name in ("index.html", "status.js", "status.css")}

    async def handle(self, request: Request) -> Response:
        if self.check_host and not local_host(request.header("host")):
            return text_response(403, "this listener answers requests for 127.0.0.1, [::1] or "
                                      "localhost only (a Host header naming another site)")
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


def local_host(host: str) -> bool:
    """Is the Host header (``name[:port]``) an IP literal or localhost?"""
    import ipaddress

    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
