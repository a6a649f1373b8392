"""The HTTP listener in the broker's own event loop (aiohttp): ``/metrics`` (Prometheus text),
``/healthz`` (the process is up), ``/readyz`` (serving: logs loaded and, in cluster mode,
registered with a current metadata image) and the web console (console.web) at ``/``.
Every handler does bounded work."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from strom.console.metrics import BrokerMetrics

if TYPE_CHECKING:
    from strom.console.web import Console


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def application(metrics: BrokerMetrics, ready: Callable[[], str | None], console: Console | None = None,
                bound_host: str = "") -> web.Application:
    """``ready()`` says why the broker is not ready, or None. With an authorizer on, /metrics
    asks for the console's login (HTTP Basic) and leaves out what the user may not describe.

    Bound to a loopback address, the listener answers only requests addressed to a loopback
    name: a web page the operator opens cannot reach it through DNS rebinding (a name of the
    attacker's that resolves to 127.0.0.1 would carry that name in its Host header)."""

    @web.middleware
    async def local_only(request: web.Request, handler: Any) -> web.StreamResponse:
        host = (request.url.host or "").strip("[]").lower()
        if not loopback(host):
            return web.Response(status=421, text="This listener answers only for localhost.\n")
        response: web.StreamResponse = await handler(request)
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        why = ready()
        return web.Response(text="ready\n") if why is None else web.Response(status=503, text=f"not ready: {why}\n")

    async def scrape(request: web.Request) -> web.Response:
        registry: Any = metrics.registry
        if console is not None and not console.attached:
            return web.Response(status=503, text="loading\n")
        if console is not None and console.logins.required:
            viewer = await console.viewer(request)
            if viewer is None:
                return web.Response(status=401, text="login needed\n",
                                    headers={"WWW-Authenticate": 'Basic realm="strom", charset="UTF-8"'})
            registry = console.visible_metrics(registry, viewer)
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=[local_only] if loopback(bound_host) else [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    if console is not None:
        console.add_routes(app)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; the runner (to clean up) and the port bound (for port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    # the port bound (port 0 picks one): aiohttp keeps the asyncio server on the site
    sockets = getattr(site._server, "sockets", None) or ()
    return runner, sockets[0].getsockname()[1] if sockets else port
