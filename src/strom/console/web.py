"""The web console's pages (aiohttp handlers, Jinja2 templates, htmx for the live parts) and
the sampler behind its charts. Pages read through console.data, so each does bounded work."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import cached_property
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from strom.console.auth import COOKIE, Logins
from strom.console.client import ConsoleClient, ConsoleError
from strom.console.data import PAGE_LIMIT, ConsoleData, Forbidden, NotFound, Viewer
from strom.console.history import History, Sample
from strom.console.render import human_bytes, sparkline
from strom.handlers.context import BrokerContext
from strom.security.acl import Operation, ResourceType
from strom.security.session import ListenerSecurity

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ts(ms: int) -> str:
    if ms < 0:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _parse_time(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 date and time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConsoleError(f"{name} must be a whole number, not {value!r}") from None


class Console:
    """Made when the HTTP listener binds (before the logs load); serves pages once
    ``attach`` gives it the broker's context (until then they answer 503)."""

    ctx: BrokerContext
    client: ConsoleClient
    data: ConsoleData
    logins: Logins

    def __init__(self, security: ListenerSecurity, sample_interval_s: float = 5.0) -> None:
        self.security = security
        self.attached = False
        self.history = History()
        self.sample_interval_s = sample_interval_s
        self._sampler: asyncio.Task[None] | None = None
        # Samples are taken only while someone looks (a page within the history's span): an
        # unwatched broker does no console work and sends other brokers nothing.
        self._viewed_at = -float("inf")

    @cached_property
    def templates(self) -> Any:  # jinja2.Environment
        """Made at the first page: jinja2 stays off the broker's start-up."""
        import jinja2

        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("strom.console", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        environment.filters.update(ts=_ts, bytes=human_bytes)
        return environment

    def attach(self, ctx: BrokerContext) -> None:
        """The broker is loaded: serve pages and start sampling."""
        self.ctx = ctx
        self.client = ConsoleClient(ctx, self.security)
        self.data = ConsoleData(ctx, self.client)
        self.logins = Logins(ctx)
        self.attached = True
        self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    # --- wiring -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        page = self._page
        app.router.add_get("/", page(self.index))
        app.router.add_get("/fragments/throughput", page(self.throughput))
        app.router.add_get("/topics/{name}", page(self.topic))
        app.router.add_post("/topics/{name}/produce", page(self.produce))
        app.router.add_get("/groups/{name}", page(self.group))
        app.router.add_get("/fragments/groups/{name}/lag", page(self.group_lag))
        app.router.add_post("/groups/{name}/reset", page(self.reset))
        app.router.add_get("/brokers/{id}", page(self.broker))
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        static = resources.files("strom.console") / "static"
        app.router.add_static("/static", str(static))
        app.on_cleanup.append(self._stop)

    async def _stop(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self.attached:
            self.client.close()

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        span = self.sample_interval_s * (self.history.samples.maxlen or 1)
        while True:
            try:
                if loop.time() - self._viewed_at < span:
                    await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker down or still loading: try again next time
                log.debug("console sample failed: %s", exc)
            await asyncio.sleep(self.sample_interval_s)

    async def sample(self) -> None:
        system = self.data.system
        ends = {t.name: t.end_offsets for t in await self.data.topics(system)}
        lags = {g.group_id: g.lag for g in await self.data.groups(system) if g.offsets}
        self.history.record(Sample(asyncio.get_running_loop().time(), ends, lags))

    async def viewer(self, request: web.Request) -> Viewer | None:
        principal = await self.logins.principal(request.cookies.get(COOKIE), request.headers.get("Authorization"))
        return None if principal is None else self.data.viewer(principal, request.remote or "")

    def _page(self, handler: Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]) -> Handler:
        """A page for a logged-in viewer; console errors become an error page."""

        async def serve(request: web.Request) -> web.StreamResponse:
            if not self.attached:
                return web.Response(status=503, text="strom is loading; try again in a moment\n")
            viewer = await self.viewer(request)
            if viewer is None:
                raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
            self._viewed_at = asyncio.get_running_loop().time()
            if request.method == "POST" and not _same_origin(request):
                return self.render("error.html", viewer, status=403, message="Cross-site form refused.")
            try:
                return await handler(request, viewer)
            except NotFound as exc:
                return self.render("error.html", viewer, status=404, message=str(exc))
            except Forbidden as exc:
                return self.render("error.html", viewer, status=403, message=str(exc))
            except ConsoleError as exc:
                return self.render("error.html", viewer, status=400, message=str(exc))

        return serve

    def render(self, template: str, viewer: Viewer | None, status: int = 200, **values: Any) -> web.Response:
        html = self.templates.get_template(template).render(
            viewer=viewer, login_required=self.logins.required, cluster=self.data.cluster_mode,
            node_id=self.ctx.node.node_id, **values)
        return web.Response(text=html, status=status, content_type="text/html")

    # --- pages --------------------------------------------------------------------------

    async def index(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        topics = [t for t in await self.data.topics(viewer) if not t.internal or "internal" in request.query]
        groups = await self.data.groups(viewer)
        rates = {t.name: self.history.rate(t.name) for t in topics}
        return self.render("index.html", viewer, brokers=self.data.brokers(), controller=self.ctx.image.controller_id,
                           topics=topics, rates=rates, groups=groups, chart=self._throughput(viewer))

    def _throughput(self, viewer: Viewer) -> dict[str, Any]:
        points = self.history.throughput(self.data.topic_names(viewer))
        return {"points": sparkline(points), "latest": points[-1][1] if points else 0.0,
                "peak": max((v for _, v in points), default=0.0), "seconds": self.sample_interval_s}

    async def throughput(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        return self.render("chart.html", viewer, chart=self._throughput(viewer), unit="messages in/s",
                           url="/fragments/throughput")

    async def topic(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        name = request.match_info["name"]
        info = await self.data.topic(viewer, name)
        partition, offset = _int(request, "partition"), _int(request, "offset")
        limit = _int(request, "limit") or 20
        when = request.query.get("time", "").strip()
        try:
            timestamp = _parse_time(when) if when else None
        except ValueError:
            raise ConsoleError(f"time must be epoch milliseconds or ISO 8601 (2026-12-07T10:00:00), not {when!r}") from None
        if offset is not None and partition is None and len(info.partitions) > 1:
            raise ConsoleError("an offset names a position in one partition: choose the partition too")
        query = request.query.get("q", "")
        readable = self.data.may(viewer, Operation.READ, ResourceType.TOPIC, name)
        messages = await self.data.messages(viewer, info, partition=partition, offset=offset, timestamp=timestamp,
                                            limit=limit, query=query) if readable else []
        return self.render(
            "topic.html", viewer, topic=info, configs=await self.data.configs(viewer, name), messages=messages,
            readable=readable, writable=self.data.may(viewer, Operation.WRITE, ResourceType.TOPIC, name),
            partition=partition, offset=offset, time=when, query=query, limit=min(limit, PAGE_LIMIT),
            produced=request.query.get("produced"))

    async def produce(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        name = request.match_info["name"]
        form = await request.post()
        text = {k: str(v) for k, v in form.items()}
        headers = []
        for line in text.get("headers", "").splitlines():
            if line.strip():
                key, sep, value = line.partition("=")
                if not sep:
                    raise ConsoleError(f"a header is KEY=VALUE, not {line!r}")
                headers.append((key.strip(), value.encode()))
        partition_text = text.get("partition", "").strip()
        try:
            chosen = int(partition_text) if partition_text else None
        except ValueError:
            raise ConsoleError(f"partition must be a number, not {partition_text!r}") from None
        key = text.get("key", "")
        partition, offset = await self.data.produce(viewer, name, chosen, key.encode() if key else None,
                                                    text.get("value", "").encode(), headers)
        raise web.HTTPSeeOther(f"/topics/{name}?partition={partition}&offset={offset}&produced={partition}:{offset}")

    async def group(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        name = request.match_info["name"]
        info = await self.data.group(viewer, name)
        return self.render("group.html", viewer, group=info, chart=self._lag(name), message=request.query.get("message"),
                           resettable=self.data.may(viewer, Operation.READ, ResourceType.GROUP, name))

    def _lag(self, group: str) -> dict[str, Any]:
        points = self.history.lag(group)
        return {"points": sparkline(points), "latest": points[-1][1] if points else 0.0,
                "peak": max((v for _, v in points), default=0.0), "seconds": self.sample_interval_s}

    async def group_lag(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        name = request.match_info["name"]
        await self.data.group(viewer, name)  # describable, existing
        return self.render("chart.html", viewer, chart=self._lag(name), unit="messages behind",
                           url=request.path)

    async def reset(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        name = request.match_info["name"]
        form = await request.post()
        to = str(form.get("to", ""))
        when = str(form.get("time", "")).strip()
        try:
            timestamp = _parse_time(when) if to == "time" else None
        except ValueError:
            raise ConsoleError(f"time must be epoch milliseconds or ISO 8601, not {when!r}") from None
        moved = await self.data.reset_offsets(viewer, name, to, timestamp)
        target = f"the time {when}" if to == "time" else f"the {to} offsets"
        raise web.HTTPSeeOther(f"/groups/{name}?message=" + _quote(f"Reset {moved} partitions to {target}."))

    async def broker(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        try:
            node_id = int(request.match_info["id"])
        except ValueError:
            raise NotFound(f"Broker {request.match_info['id']!r} does not exist.") from None
        brokers = {b[0]: b for b in self.data.brokers()}
        if node_id not in brokers:
            raise NotFound(f"Broker {node_id} is not in the cluster (or not registered now).")
        image = self.ctx.image
        registration = image.brokers.get(node_id)
        visible = set(self.data.topic_names(viewer))
        replicas = [(t, p, s) for (t, p), s in sorted(image.partitions.items()) if node_id in s.replicas and t in visible]
        return self.render("broker.html", viewer, broker=brokers[node_id], controller=image.controller_id,
                           endpoints=registration.endpoints if registration else (), replicas=replicas)

    # --- logins -------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.attached:
            return web.Response(status=503, text="strom is loading; try again in a moment\n")
        return self.render("login.html", None, next=request.query.get("next", "/"), failed=False)

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.attached:
            return web.Response(status=503, text="strom is loading; try again in a moment\n")
        if not _same_origin(request):
            return web.Response(status=403, text="Cross-site form refused.\n")
        form = await request.post()
        next_page = str(form.get("next", "/"))
        if not next_page.startswith("/") or next_page.startswith("//"):
            next_page = "/"
        token = await self.logins.login(str(form.get("username", "")), str(form.get("password", "")))
        if token is None:
            log.info("console login failed for %r from %s", form.get("username"), request.remote)
            return self.render("login.html", None, status=401, next=next_page, failed=True)
        response = web.HTTPSeeOther(next_page)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if self.attached:
            self.logins.logout(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response

    # --- /metrics -----------------------------------------------------------------------

    def visible_metrics(self, registry: CollectorRegistry, viewer: Viewer) -> Any:
        """The registry as ``viewer`` may see it: series of topics and groups it may not
        describe left out (only when an authorizer is on)."""
        if not self.logins.required:
            return registry
        data = self.data

        def allowed(labels: dict[str, str]) -> bool:
            topic, group = labels.get("topic"), labels.get("group")
            return ((topic is None or data.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, topic))
                    and (group is None or data.may(viewer, Operation.DESCRIBE, ResourceType.GROUP, group)))

        class Visible:
            def collect(self) -> Iterator[Metric]:
                for metric in registry.collect():
                    kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                    kept.samples = [s for s in metric.samples if allowed(s.labels)]
                    yield kept

        return Visible()


def _same_origin(request: web.Request) -> bool:
    """A form posted from the console's own pages (a browser sends Origin with a POST)."""
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text)
