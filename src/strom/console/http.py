"""The HTTP listener in the broker's own event loop (aiohttp): ``/metrics`` (Prometheus text),
``/healthz`` (the process is up) and ``/readyz`` (serving: logs loaded and, in cluster mode,
registered with a current metadata image). Every handler does bounded work."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from strom.console.metrics import BrokerMetrics


def application(metrics: BrokerMetrics, ready: Callable[[], str | None]) -> web.Application:
    """``ready()`` says why the broker is not ready, or None."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        why = ready()
        return web.Response(text="ready\n") if why is None else web.Response(status=503, text=f"not ready: {why}\n")

    async def scrape(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
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
