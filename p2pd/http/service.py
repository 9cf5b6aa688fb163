"""Start the daemon's HTTP listeners: metrics (``-metricsAddr``) and the status page with
the gateway (``[http] listen`` / ``-httpAddr``), each its own :class:`HTTPServer` in the
daemon's nursery. A port that is taken is said in one line and the daemon runs on without
that listener (the control socket and the swarm are what it is for)."""

from __future__ import annotations

import ipaddress
import logging
import sys

import trio

from .. import __version__
from .server import HTTPServer, Response, text_response
from .source import NodeSource
from .wire import Request

log = logging.getLogger(__name__)


async def start_http(nursery: trio.Nursery, node, config) -> list[str]:
    """Listen where the config says; returns the base URLs (also said on stderr)."""
    source = NodeSource(node, __version__)
    urls = []
    if config.metrics_listen:
        from .metrics import CONTENT_TYPE, Metrics

        metrics = Metrics(source.counters)

        async def metrics_app(request: Request) -> Response:
            if request.path not in ("/metrics", "/debug/metrics/prometheus"):  # ours, kubo's
                return text_response(404, "only /metrics is served here")
            return Response(200, [("Content-Type", CONTENT_TYPE)], metrics.render())

        url = await _listen(nursery, HTTPServer(metrics_app, name="metrics", max_connections=16),
                            config.metrics_listen, "metrics", "-metricsAddr")
        if url:
            urls.append(url + "metrics")
            _say(config, f"metrics on {url}metrics")
    if config.http_listen:
        from .app import App

        loopback = ipaddress.ip_address(config.http_listen[0]).is_loopback
        app = App(source, block_timeout=config.http_block_timeout, check_host=loopback)
        url = await _listen(nursery, HTTPServer(app.handle, name="http"),
                            config.http_listen, "status page and gateway", "-httpAddr")
        if url:
            urls.append(url)
            _say(config, f"status page on {url} and gateway on {url}ipfs/")
    if config.pprof:
        from .pprof import Pprof

        url = await _listen(nursery, HTTPServer(Pprof().handle, name="pprof", max_connections=8,
                                                handler_timeout=70.0),
                            ("127.0.0.1", config.pprof_port), "pprof", "-pprofPort")
        if url:
            urls.append(url + "debug/pprof/")
            _say(config, f"registering pprof debug http handler at: {url}debug/pprof/")
    return urls


async def _listen(nursery, server: HTTPServer, where: tuple[str, int], what: str,
                  flag: str) -> str | None:
    host, port = where
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        print(f"p2pd: {what} not started: cannot listen on {host}:{port}: "
              f"{exc.strerror or exc} (choose another with {flag})", file=sys.stderr,
              flush=True)
        return None
    await nursery.start(server.serve, listeners)
    bound = listeners[0].socket.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{bound}/"


def _say(config, line: str) -> None:
    if not config.quiet:
        print(f"p2pd: {line}", file=sys.stderr, flush=True)
