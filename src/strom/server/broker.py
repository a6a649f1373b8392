"""The composition root: config, metadata, logs, the replica manager, the group and
transaction coordinator runtimes, handlers and the listener, plus the background tasks
(retention, flush.ms, checkpoints, compaction, ISR shrinks) and clean shutdown. The
coordinators load their partitions of __consumer_offsets and __transaction_state in the
background as this broker comes to lead them (requests for a loading partition get
COORDINATOR_LOAD_IN_PROGRESS).

Single node (the default): metadata in a local file, every partition led here. Cluster mode
(``etcd.endpoints``): metadata in etcd (the broker registers on a lease and follows the
image), follower fetchers replicate partitions led elsewhere, and the broker runs the
controller while it holds the controller lease.

``Broker.start()`` returns once the port is open; ``Broker.stop()`` closes the listener and
connections, flushes every log and writes the clean-shutdown marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from strom.console.metrics import BrokerMetrics
from strom.handlers.context import BrokerContext, Node
from strom.handlers.registry import Registration, registrations
from strom.log import cleaner
from strom.log.config import LogConfig
from strom.log.manager import LogManager
from strom.metadata.broker_config import BrokerConfig, BrokerConfigError
from strom.metadata.image import BrokerRegistration
from strom.metadata.store import LocalMetadataStore, MetadataStore
from strom.security.acl import parse_super_users
from strom.security.client import ClientSecurity, inter_broker_security
from strom.security.quotas import QuotaManager
from strom.security.session import ListenerSecurity
from strom.security.tls import listener_setting, parse_mapping_rules, server_context
from strom.server.connection import CloseReason, KafkaConnection
from strom.server.controller_runtime import ControllerRuntime
from strom.server.coordinator_runtime import GroupCoordinatorRuntime, group_config
from strom.server.producer_ids import ProducerIdBlocks
from strom.server.replicas import ReplicaManager
from strom.server.share_manager import SharePartitionManager
from strom.server.share_persister import RuntimePersister
from strom.server.share_state_runtime import ShareStateRuntime
from strom.server.txn_runtime import TransactionCoordinatorRuntime, transaction_config

log = logging.getLogger(__name__)

FLUSH_CHECK_INTERVAL_S = 1.0  # flush.ms and post-roll flushes are checked this often


def listener_securities(config: BrokerConfig, cluster: bool) -> list[ListenerSecurity]:
    """Each listener's security settings (its TLS context built: a bad key store fails the
    start with a sentence)."""
    out = []
    for listener in config.listeners():
        setting = listener_setting(config.values, listener.name)
        try:
            tls = server_context(setting) if listener.tls else None
            rules = parse_mapping_rules(setting("ssl.principal.mapping.rules"))
        except ValueError as exc:
            raise BrokerConfigError(f"Listener {listener.name}: {exc}.") from None
        mechanisms = tuple(m.strip() for m in (setting("sasl.enabled.mechanisms") or "SCRAM-SHA-256,SCRAM-SHA-512").split(",") if m.strip())
        out.append(ListenerSecurity(
            listener, mechanisms, rules,
            reauth_ms=int(setting("connections.max.reauth.ms") or 0),
            failed_auth_delay_ms=int(config.values.get("connection.failed.authentication.delay.ms", 100)),
            max_receive_before_auth=int(setting("sasl.server.max.receive.size") or 524288),
            tls=tls,
        ))
    return out


def inter_broker(config: BrokerConfig, securities: list[ListenerSecurity]) -> ClientSecurity:
    """How this broker reaches the others. With an authorizer, the principal it does so as
    must be a super user: followers' fetches and transaction markers need CLUSTER_ACTION."""
    name = config.inter_broker_listener()
    security = next(s for s in securities if s.listener.name == name)
    try:
        client = inter_broker_security(config.values, security.listener, security.mechanisms)
    except (ValueError, OSError, ssl.SSLError) as exc:
        raise BrokerConfigError(f"Inter-broker listener {name}: {exc}.") from None
    if config.values.get("authorizer.class.name") and client.principal not in parse_super_users(config.values.get("super.users")):
        raise BrokerConfigError(
            f"With authorizer.class.name set in a cluster, super.users must include {client.principal}: brokers "
            f"replicate and write transaction markers over the inter-broker listener {name} as that principal"
            + (" (PLAINTEXT: keep that listener on a private network)" if security.listener.protocol == "PLAINTEXT" else "") + "."
        )
    return client


class Broker:
    def __init__(self, config: BrokerConfig, *, http_required: bool = True) -> None:
        self.config = config
        self.ctx: BrokerContext | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._inter_broker: ClientSecurity | None = None
        self.connections_by_listener: dict[str, int] = {}
        self.metrics = BrokerMetrics()
        # False when http.listener is strom serve's default: a busy port then only warns
        self.http_required = http_required
        self._http: Any = None  # aiohttp's AppRunner while http.listener serves
        self._console: Any = None  # strom.console.web.Console with the HTTP listener
        self.http_port: int | None = None
        self.ports: dict[str, int] = {}  # bound port by listener name
        self._connections: set[KafkaConnection] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._groups: GroupCoordinatorRuntime | None = None
        self._transactions: TransactionCoordinatorRuntime | None = None
        self._share_state: ShareStateRuntime | None = None
        self._shares: SharePartitionManager | None = None
        self._replicas: ReplicaManager | None = None
        self._fetchers: Any = None
        self._peers: Any = None
        self._controller: ControllerRuntime | None = None
        self._producer_ids: ProducerIdBlocks | None = None
        self.metadata: MetadataStore | None = None
        self.port: int = config.listen_port

    async def start(self) -> None:
        started = time.perf_counter()
        config = self.config
        registry = registrations()
        loop = asyncio.get_running_loop()
        # Bind every listener first: a busy port or a bad key store fails before the data
        # directory is touched (no .lock, meta.properties or metadata file); serve only once
        # everything is loaded.
        cluster = config.etcd_endpoints is not None
        securities = listener_securities(config, cluster)
        self._inter_broker = inter_broker(config, securities) if cluster else None
        try:
            for security in securities:
                self._servers.append(await loop.create_server(
                    functools.partial(self._connection, registry, security),
                    security.listener.host or None, security.listener.port,
                    ssl=security.tls, reuse_address=True, backlog=1024, start_serving=False,
                ))
            self.ports = {sec.listener.name: srv.sockets[0].getsockname()[1]
                          for sec, srv in zip(securities, self._servers, strict=True)}
            self.port = self.ports[securities[0].listener.name]
            await self._start_http(securities[0])
            ctx = await self._open()
        except BaseException:
            for server in self._servers:
                server.close()
            self._servers = []
            if self._http is not None:
                await self._http.cleanup()
                self._http = None
            raise
        for server in self._servers:
            await server.start_serving()
        ctx.metrics.watch(ctx, self.connections_by_listener)
        if self._console is not None:
            self._console.attach(ctx)
        self._tasks = [
            loop.create_task(self._every(config.log_retention_check_interval_ms / 1000, self._retention)),
            loop.create_task(self._every(FLUSH_CHECK_INTERVAL_S, self._flush_due)),
            loop.create_task(self._every(config.log_flush_offset_checkpoint_interval_ms / 1000, self._checkpoint)),
            loop.create_task(self._every(config.producer_id_expiration_check_interval_ms / 1000, self._expire_producers)),
        ]
        if config.etcd_endpoints is not None:
            self._tasks.append(loop.create_task(self._every(config.replica_lag_time_max_ms / 2000, self._shrink_isr)))
        if config.log_cleaner_enable:
            self._tasks.append(loop.create_task(self._every(config.log_cleaner_backoff_ms / 1000, self._compact)))
        log.info(
            "strom node %d listening on %s (advertised as node %s:%d), data in %s, started in %.0f ms",
            config.node_id, ", ".join(f"{s.listener.name}://{s.listener.host}:{self.ports[s.listener.name]}" for s in securities),
            ctx.node.host, ctx.node.port, config.data_dir, (time.perf_counter() - started) * 1000,
        )

    def _connection(self, registry: dict[int, Registration], security: ListenerSecurity) -> KafkaConnection:
        assert self.ctx is not None  # serving starts once the context exists
        config = self.config
        name = security.listener.name

        def closed(conn: KafkaConnection) -> None:
            if conn in self._connections:
                self._connections.discard(conn)
                self.connections_by_listener[name] -= 1
                if self._shares is not None and self._shares.sessions:
                    self._shares.connection_closed(conn.session)  # its share sessions end: records go back

        conn = KafkaConnection(self.ctx, registry, config.socket_request_max_bytes, closed,
                               config.connections_max_idle_ms, security)
        self._connections.add(conn)
        self.connections_by_listener[name] = self.connections_by_listener.get(name, 0) + 1
        return conn

    async def _start_http(self, security: ListenerSecurity) -> None:
        """http.listener (HOST:PORT, or off): /metrics, /healthz, /readyz and the console,
        bound with the Kafka listeners (ready once everything is loaded). The console's pages
        name the first listener's addresses."""
        setting = self.config.values.get("http.listener", "off")
        if setting.lower() == "off":
            return
        from strom.console.http import application, serve
        from strom.console.web import Console

        host, _, port = setting.rpartition(":")
        self._console = Console(security, int(self.config.values.get("console.sample.interval.ms", 5000)) / 1000)
        app = application(self.metrics, self._not_ready, self._console, host.strip("[]") or "127.0.0.1")
        try:
            self._http, self.http_port = await serve(app, host.strip("[]") or "127.0.0.1", int(port))
        except OSError as exc:
            if self.http_required:
                raise BrokerConfigError(f"Cannot serve http.listener {setting}: {exc}.") from None
            log.warning("HTTP listener not started (metrics and health checks off): %s: %s", setting, exc)

    def _not_ready(self) -> str | None:
        """/readyz: why this broker should not take traffic yet (None: serving). In cluster
        mode it must be registered and its metadata image must show it (the image is current)."""
        if self.ctx is None or not self._tasks:
            return "loading"
        if self.config.etcd_endpoints is not None:
            if getattr(self.metadata, "registration", None) is None:
                return "not registered in the cluster (etcd)"
            if self.config.node_id not in self.ctx.image.brokers:
                return "the metadata image does not show this broker yet"
        return None

    async def _open(self) -> BrokerContext:
        """Everything between binding and serving: the data directory (its lock first), the
        metadata, the logs, the coordinators and the replica manager."""
        config = self.config
        data_dir = Path(config.data_dir)
        cluster = config.etcd_endpoints is not None
        logs = LogManager(data_dir, replicated=cluster)  # takes the data directory's lock first
        metadata: MetadataStore
        if cluster:
            from strom.metadata.etcd_store import EtcdMetadataStore

            endpoints = [e.strip() for e in (config.etcd_endpoints or "").split(",") if e.strip()]
            metadata = EtcdMetadataStore(
                endpoints, config.cluster_id, config.node_id, session_timeout_ms=config.broker_session_timeout_ms
            )
        else:
            metadata = LocalMetadataStore(data_dir, config.node_id)
        self.metadata = metadata
        # This node is registered with every listener's advertised address; host and port
        # name the inter-broker one (replication and coordinator traffic).
        advertised = config.advertised(self.ports)
        node = Node(config.node_id, *advertised[config.inter_broker_listener()], config.broker_rack)
        self.ctx = ctx = BrokerContext(config=config, metadata=metadata, logs=logs, node=node, metrics=self.metrics)
        ctx.inter_broker = self._inter_broker
        ctx.quotas = QuotaManager(int(config.values.get("quota.window.size.seconds", 1)) * 1000,
                                  int(config.values.get("quota.window.num", 11)))
        # Register (cluster: on an etcd lease) and load the image before the logs, whose
        # topics it names.
        registered = tuple((name, host, port) for name, (host, port) in advertised.items())
        await metadata.start(BrokerRegistration(node.node_id, node.host, node.port, node.rack, endpoints=registered))

        def topic_log_config(name: str) -> LogConfig | None:
            topic = metadata.topic(name)
            return ctx.log_config(topic.configs) if topic is not None else None

        await asyncio.to_thread(logs.load, topic_log_config, self._now_ms())
        self._producer_ids = ProducerIdBlocks(metadata)
        await self._producer_ids.start()
        ctx.next_producer_id = self._producer_ids.next_id
        self._groups = ctx.groups = GroupCoordinatorRuntime(ctx, group_config(config))
        self._groups.start()
        self._transactions = ctx.transactions = TransactionCoordinatorRuntime(ctx, transaction_config(config), self._groups)
        self._transactions.start()
        if cluster:
            from strom.client.pool import ConnectionPool
            from strom.server.replica_fetcher import ReplicaFetchers

            self._fetchers = ReplicaFetchers(ctx)
            self._peers = self._transactions.peers = ConnectionPool(
                client_id=f"strom-broker-{config.node_id}", security=ctx.inter_broker)
        self._replicas = ctx.replicas = ReplicaManager(ctx, self._fetchers)
        self._replicas.add_leadership_listener(self._groups.leadership_changed)
        self._replicas.add_leadership_listener(self._transactions.leadership_changed)
        # KIP-932 share-partition state: the share coordinator over __share_group_state, and
        # the persister share partitions use (the local runtime, or the leader over `peers`).
        self._share_state = ctx.share_state = ShareStateRuntime(ctx)
        self._share_state.start()
        self._replicas.add_leadership_listener(self._share_state.leadership_changed)
        ctx.share_persister = RuntimePersister(ctx, self._share_state, self._peers)
        self._shares = ctx.shares = SharePartitionManager(ctx)  # share partitions led here, share sessions
        self._replicas.add_leadership_listener(self._shares.leadership_changed)
        await self._replicas.start()  # creates missing logs, takes up every role
        if cluster:
            self._controller = ControllerRuntime(ctx)
            self._controller.start()
        return ctx

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self._connections):
            conn.close(CloseReason.SHUTDOWN)
        self._connections.clear()
        if self._controller is not None:
            await self._controller.stop()
            self._controller = None
        if self._replicas is not None:
            await self._replicas.stop()  # first: no new fetcher or task from a late image
            self._replicas = None
        if self._fetchers is not None:
            await self._fetchers.stop()
            self._fetchers = None
        if self._peers is not None:
            self._peers.close_all()
            self._peers = None
        if self._producer_ids is not None:
            await self._producer_ids.stop()
        if self._shares is not None:
            self._shares.stop()
            self._shares = None
        if self._share_state is not None:
            await self._share_state.stop()
            self._share_state = None
        if self._transactions is not None:
            await self._transactions.stop()
            self._transactions = None
        if self._groups is not None:
            await self._groups.stop()
            self._groups = None
        if self.ctx is not None:
            await asyncio.to_thread(self.ctx.logs.close)
            self.ctx = None
        if self.metadata is not None:
            await self.metadata.close()  # leaves the cluster at once (the lease is revoked)
            self.metadata = None
        log.info("strom stopped cleanly")

    async def serve_forever(self) -> None:
        assert self._servers
        await asyncio.gather(*(server.serve_forever() for server in self._servers))

    # --- background work ------------------------------------------------------------------

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed", job.__name__)

    def _now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def _retention(self) -> None:
        if self.ctx is not None:
            deleted = self.ctx.logs.apply_retention(self._now_ms())
            if deleted:
                log.info("retention deleted %d segments", deleted)

    async def _shrink_isr(self) -> None:
        if self._replicas is not None:
            self._replicas.shrink_lagging()

    async def _expire_producers(self) -> None:
        if self.ctx is not None:
            expired = self.ctx.logs.expire_producers(self._now_ms(), self.config.producer_id_expiration_ms)
            if expired:
                log.info("forgot %d idle producer ids", expired)

    async def _flush_due(self) -> None:
        if self.ctx is not None:
            for partition_log in self.ctx.logs.logs_to_flush(self._now_ms()):
                await self.ctx.flush(partition_log)

    async def _checkpoint(self) -> None:
        if self.ctx is not None:
            logs = self.ctx.logs
            # Snapshot on the loop, which changes the map of logs; the fsyncs run in a thread.
            await asyncio.to_thread(logs.write_checkpoint, logs.checkpoint_snapshot())

    async def _compact(self) -> None:
        if self.ctx is None:
            return
        logs = self.ctx.logs
        for plan in logs.cleaning_plans(self._now_ms()):
            try:
                result = await asyncio.to_thread(cleaner.clean, plan)
            except OSError as exc:  # e.g. the topic was deleted while it was being cleaned
                log.warning("cleaning %s failed: %s", plan.log.name, exc)
                continue
            installed = logs.install_cleaned(result)
            if installed:
                log.info(
                    "cleaned %s: %d segments, %d -> %d bytes",
                    plan.log.name, installed, result.bytes_before, result.bytes_after,
                )
