"""``EtcdMetadataStore``: cluster metadata in etcd, one image per broker (CLUSTER.md).

Every broker keeps the same ``ClusterImage`` by listing the cluster's key prefix at a revision
R and then applying the prefix's watch events from R+1 in revision order, as KRaft brokers
replay the metadata log. Writers are etcd transactions; a mutation returns once this broker's
watch has applied the write's revision, so a read right after a write sees it (karapace's
"wait until my offset is applied").

Keys under ``/strom/<cluster_name>/`` (JSON values):

- ``cluster``: ``{cluster_id, version}``, created once (``If version == 0``).
- ``brokers/<id>``: ``{host, port, rack, incarnation}`` on the broker's lease; the key's
  create_revision is the broker epoch (KIP-380).
- ``controller``: ``{broker_id}`` on the controller's lease; create_revision = controller epoch.
- ``topics/<name>``: ``{topic_id, partitions}``; ``configs/topic/<name>``: overrides (absent: {}).
- ``partitions/<topic_id>/<p>``: ``PartitionState.to_json()``; mod_revision = partition epoch.
  Keyed by topic id so that a deleted-and-recreated topic never sees the old states and two
  concurrent creates of one name never write the same keys.
- ``configs/broker/default``, ``configs/broker/<id>``: dynamic broker configs.
- ``configs/group/<group id, percent-encoded>``: the configs set on a group (absent: none).
- ``counters/producer_id``: ``{next}``, advanced by compare-and-set.
- ``scram/<user>/<mechanism>``: ``ScramCredential.to_json()`` (the user name percent-encoded).
- ``acls/<hash of the binding>``: ``AclBinding.to_json()``.
- ``quotas/<entity, JSON, percent-encoded>``: ``{entity, values}`` (client quotas).

A topic is in the image only once its ``topics/<name>`` key exists and all its partition keys
do: creates write the partitions first (in transactions of at most 100 puts, etcd allows 128
operations) and the topic key last, so no broker ever sees a topic with missing partitions.

Failures: etcd unreachable, the watch cancelled or compacted: the watch task reconnects with
backoff (50 ms doubling to 1 s), lists again and publishes the fresh image. Writes retry while
etcd is unreachable and give up with ConfigError(REQUEST_TIMED_OUT) after
``request_timeout_ms``. A lost lease (an etcd outage or a pause longer than the session
timeout) is re-granted and the broker registered again, with a new broker epoch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

import aetcd
import grpc
from aetcd import rpc

from strom.metadata.configs import ConfigError
from strom.metadata.etcd_projection import Projection
from strom.metadata.image import (
    BrokerRegistration,
    ClusterImage,
    PartitionState,
    ScramCredential,
    TopicMetadata,
    initial_state,
    new_topic_id,
)
from strom.metadata.store import ImageHolder, check_new_topic, require_topic
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding
from strom.security.quotas import QuotaEntity

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
_CHUNK = 100  # partition puts per transaction, well below the limit
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_LIST_PAGE = 1000
# Errors meaning "etcd did not answer" (down, paused, no leader): worth retrying.
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_CHANNEL_OPTIONS = {
    # Reconnect quickly after an etcd restart (gRPC's default backoff starts at 1 s).
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 1000,
    # Notice a dead connection (a partition, a paused etcd) within ~15 s, so the watch resyncs;
    # etcd refuses pings more often than every 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    # A watch response carries every event of one revision (a deleted topic's partitions).
    "grpc.max_receive_message_length": -1,
}


_GROUP_CONFIGS = "configs/group/"


class DuplicateBrokerId(RuntimeError):
    """Another live broker holds this node id's registration."""


class _Resync(Exception):
    """The watch cannot continue (compacted, cancelled, ended): list again."""


# --- keys, values, transaction operations ---------------------------------------------------------


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])  # prefixes here end in '/', never 0xff


def _put(key: bytes, doc: object, lease: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=_dumps(doc), lease=lease))


def _delete(key: bytes, *, prefix: bool = False) -> rpc.RequestOp:
    range_end = _prefix_end(key) if prefix else b""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, range_end=range_end))


def _get(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def _version_is(key: bytes, version: int) -> rpc.Compare:
    return rpc.Compare(
        key=key, target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL, version=version
    )


def _mod_is(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def _created_at(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(
        key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision
    )


def _fetched(response: rpc.TxnResponse, index: int = 0) -> rpc.KeyValue | None:
    """The key read by the ``index``-th operation (a ``_get``) of the branch that ran."""
    kvs = response.responses[index].response_range.kvs
    return kvs[0] if kvs else None


def _changed_anything(response: rpc.TxnResponse) -> bool:
    """Whether the transaction wrote a revision (a delete of nothing does not)."""
    for op in response.responses:
        kind = op.WhichOneof("response")
        if kind == "response_put" or (
            kind == "response_delete_range" and op.response_delete_range.deleted
        ):
            return True
    return False


def _chunks(ops: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (ops[i : i + size] for i in range(0, len(ops), size))


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"unsupported etcd endpoint {endpoint!r} (expected http://host:port)")
    return url.hostname, url.port or 2379


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in _TRANSIENT
    return isinstance(
        exc, (TimeoutError, aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError)
    )


class EtcdMetadataStore(ImageHolder):
    """MetadataStore over etcd, for one broker of a cluster.

    Owned by one event loop. Background tasks: the watch (the only writer of ``image``,
    ``_projection`` and ``_applied``), the lease keep-alive (re-registers when the lease is
    lost, the only writer of ``registration`` and ``_lease_id`` after start) and, while the
    controller key is absent, a campaign. Mutations run on the caller's task and only read
    the image; etcd's compare-and-set decides races.

    ``registration``: this broker as registered, ``epoch`` its broker epoch; None while not
    registered (before start, after close, while re-registering after a lost lease)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        cluster_name: str,
        node_id: int,
        *,
        session_timeout_ms: int = 9000,
        request_timeout_ms: int = 5000,
    ) -> None:
        super().__init__()
        if not endpoints:
            raise ValueError("no etcd endpoints given")
        if not cluster_name or "/" in cluster_name:
            raise ValueError(f"illegal cluster name {cluster_name!r}")
        self.endpoints = [_parse_endpoint(e) for e in endpoints]
        self.cluster_name = cluster_name
        self.node_id = node_id
        self.lease_ttl = max(1, math.ceil(session_timeout_ms / 1000))
        self.request_timeout = request_timeout_ms / 1000
        self.registration: BrokerRegistration | None = None
        self._wanted: BrokerRegistration | None = None  # what start() was given
        self._prefix = f"/strom/{cluster_name}/".encode()
        self._incarnation = uuid.uuid4().hex  # tells this process's registration from others
        self._client: aetcd.Client | None = None
        self._endpoint = 0  # index into endpoints
        self._lease_id = 0
        self._projection = Projection()
        self._applied = 0  # the revision ``image`` reflects
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._check_lease = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._campaign_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def lease_id(self) -> int:
        """The etcd lease this broker's keys live on (0: none)."""
        return self._lease_id

    def _key(self, name: str) -> bytes:
        return self._prefix + name.encode()

    def _partition_key(self, topic_id: uuid.UUID, partition: int) -> bytes:
        return self._key(f"partitions/{topic_id}/{partition}")

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, registration: BrokerRegistration) -> None:
        """Create the cluster key if needed, register (waiting out this node's previous
        incarnation's lease), load the image, follow the watch, and campaign for controller.
        Raises DuplicateBrokerId, or RuntimeError when etcd cannot be reached."""
        if registration.node_id != self.node_id:
            raise ValueError(
                f"registration for node {registration.node_id}, store for {self.node_id}"
            )
        self._wanted = registration
        self._closed = False
        try:
            await self._ensure_cluster()
            await self._register()
            revision = await self._resync()
        except ConfigError as exc:
            await self._close_client()
            where = ", ".join(f"{h}:{p}" for h, p in self.endpoints)
            raise RuntimeError(f"cannot reach etcd at {where}: {exc.message}") from exc
        except BaseException:
            await self._close_client()
            raise
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(revision), name=f"etcd-watch-{self.node_id}"),
            loop.create_task(self._keep_alive(), name=f"etcd-keepalive-{self.node_id}"),
        ]
        # Publishing the image started a campaign if there is no controller: see it through,
        # so that a started store knows the controller.
        if self._campaign_task is not None:
            await self._campaign_task

    async def close(self, *, revoke: bool = True) -> None:
        """Stop following etcd. With ``revoke`` (a clean shutdown) the lease goes at once, so
        the broker leaves the cluster and resigns controllership; without (for tests) the
        lease is left to expire, as after a crash."""
        self._closed = True
        tasks = [*self._tasks, *([self._campaign_task] if self._campaign_task else [])]
        self._tasks, self._campaign_task = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if revoke and self._lease_id and self._client is not None:
            with contextlib.suppress(Exception):  # best effort: otherwise it expires
                await self._client.leasestub.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=self._lease_id),
                    timeout=min(1.0, self.request_timeout),
                )
        self._lease_id = 0
        self.registration = None
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        await self._close_client()

    # --- etcd calls -------------------------------------------------------------------------------

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, port = self.endpoints[self._endpoint]
            client = aetcd.Client(
                host, port, timeout=self.request_timeout, options=_CHANNEL_OPTIONS
            )
            await client.connect()  # opens the channel; the first call connects
            self._client = client
        return self._client

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def _next_endpoint(self, failed: aetcd.Client) -> None:
        """After ``failed`` did not answer, use the next endpoint (if several); the failed
        client is closed once its other in-flight calls have had their time."""
        if len(self.endpoints) < 2 or self._client is not failed:
            return  # a single endpoint, or another caller moved on already
        client: aetcd.Client = failed
        self._client = None
        self._endpoint = (self._endpoint + 1) % len(self.endpoints)

        async def retire() -> None:
            await asyncio.sleep(self.request_timeout)
            with contextlib.suppress(Exception):
                await client.close()

        asyncio.get_running_loop().create_task(retire())

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.request_timeout

    async def _call(
        self, request: Callable[[aetcd.Client, float], Awaitable[T]], deadline: float
    ) -> T:
        """``request(client, timeout)``, retried while etcd does not answer, until
        ``deadline``: then ConfigError(REQUEST_TIMED_OUT). Other etcd errors become
        ConfigError(UNKNOWN_SERVER_ERROR)."""
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_MIN
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ConfigError(
                    ErrorCode.REQUEST_TIMED_OUT,
                    f"etcd did not answer within {self.request_timeout * 1000:.0f} ms",
                )
            client = await self._connected()
            # With several endpoints, leave time to try another after a silent one.
            timeout = min(remaining, max(0.5, self.request_timeout / len(self.endpoints)))
            try:
                return await asyncio.wait_for(request(client, timeout), timeout)
            except (grpc.aio.AioRpcError, TimeoutError, aetcd.ClientError) as exc:
                if not _transient(exc):
                    raise ConfigError(
                        ErrorCode.UNKNOWN_SERVER_ERROR, f"etcd: {_describe(exc)}"
                    ) from exc
                log.debug("etcd request failed, retrying: %s", _describe(exc))
                self._next_endpoint(client)
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _txn(
        self,
        compare: Sequence[rpc.Compare],
        success: Sequence[rpc.RequestOp],
        failure: Sequence[rpc.RequestOp] = (),
        *,
        deadline: float,
    ) -> rpc.TxnResponse:
        # Straight to the stub: aetcd's transaction() drops the header (the revision).
        assert len(success) <= _MAX_TXN_OPS and len(failure) <= _MAX_TXN_OPS
        request = rpc.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)
        )
        return await self._call(
            lambda client, timeout: client.kvstub.Txn(
                request, timeout=timeout, metadata=client.metadata
            ),
            deadline,
        )

    async def _time_to_live(self, lease: int, deadline: float) -> rpc.LeaseTimeToLiveResponse:
        request = rpc.LeaseTimeToLiveRequest(ID=lease)
        return await self._call(
            lambda client, timeout: client.leasestub.LeaseTimeToLive(request, timeout=timeout),
            deadline,
        )

    async def _range(self, key: bytes, deadline: float) -> rpc.RangeResponse:
        return await self._range_request(rpc.RangeRequest(key=key), deadline)

    async def _range_request(self, request: rpc.RangeRequest, deadline: float) -> rpc.RangeResponse:
        return await self._call(
            lambda client, timeout: client.kvstub.Range(
                request, timeout=timeout, metadata=client.metadata
            ),
            deadline,
        )

    async def _wait_applied(self, revision: int, deadline: float) -> None:
        """Until the image reflects ``revision`` (a write of ours to the prefix)."""
        if self._applied >= revision:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, waiter))
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise ConfigError(
                ErrorCode.REQUEST_TIMED_OUT,
                f"written to etcd (revision {revision}), but this broker's metadata has not "
                f"caught up within {self.request_timeout * 1000:.0f} ms",
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((revision, waiter))

    # --- registration, lease, controller ----------------------------------------------------------

    async def _ensure_cluster(self) -> None:
        key = self._key("cluster")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        await self._txn(
            [_version_is(key, 0)],
            [_put(key, {"cluster_id": cluster_id, "version": 1})],
            deadline=self._deadline(),
        )

    async def _grant_lease(self) -> int:
        request = rpc.LeaseGrantRequest(TTL=self.lease_ttl)
        response = await self._call(
            lambda client, timeout: client.leasestub.LeaseGrant(
                request, timeout=timeout, metadata=client.metadata
            ),
            self._deadline(),
        )
        return int(response.ID)

    async def _revoke(self, lease_id: int) -> None:
        request = rpc.LeaseRevokeRequest(ID=lease_id)
        with contextlib.suppress(ConfigError):
            await self._call(
                lambda client, timeout: client.leasestub.LeaseRevoke(
                    request, timeout=timeout, metadata=client.metadata
                ),
                self._deadline(),
            )

    async def _lease_ttl(self, lease_id: int, timeout: float) -> int:
        """The lease's remaining TTL in seconds (<= 0: expired), refreshing it (KeepAlive)."""
        client = await self._connected()
        call = client.leasestub.LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
            timeout=timeout,
            metadata=client.metadata,
        )
        try:
            async for reply in call:
                return int(reply.TTL)
            raise _Resync("keep-alive stream ended")
        finally:
            call.cancel()

    async def _register(self) -> None:
        """``If version(brokers/<id>) == 0 Then put`` on a new lease. When the key is held,
        wait out the holder's lease once (this node's previous incarnation, killed before its
        lease expired); still held after that means another live broker: DuplicateBrokerId."""
        assert self._wanted is not None
        wanted = self._wanted
        key = self._key(f"brokers/{self.node_id}")
        value = {
            "host": wanted.host,
            "port": wanted.port,
            "rack": wanted.rack,
            "incarnation": self._incarnation,
            "endpoints": [list(e) for e in wanted.endpoints],
        }
        waited = False
        while True:
            lease_id = await self._grant_lease()
            response = await self._txn(
                [_version_is(key, 0)],
                [_put(key, value, lease_id)],
                [_get(key)],
                deadline=self._deadline(),
            )
            if response.succeeded:
                self._lease_id = lease_id
                self.registration = replace(wanted, epoch=response.header.revision)
                return
            await self._revoke(lease_id)
            holder = _fetched(response)
            if holder is None:
                continue  # expired between compare and read: try again
            if waited:
                try:
                    doc = json.loads(holder.value)
                    where = f"{doc['host']}:{doc['port']}"
                except (ValueError, KeyError, TypeError):
                    where = "an unknown address"
                raise DuplicateBrokerId(
                    f"node id {self.node_id} is already registered by a live broker at {where} "
                    f"in cluster '{self.cluster_name}'"
                )
            info = await self._time_to_live(holder.lease, self._deadline())
            # TTL is in whole seconds (rounded down), and etcd revokes expired leases in a
            # sweep every 500 ms: the key is gone by TTL + 1.5 s unless someone refreshes it.
            delay = max(int(info.TTL), 0) + 1.5
            log.info(
                "node id %d is registered by lease %x: waiting up to %.1fs for it to expire",
                self.node_id,
                holder.lease,
                delay,
            )
            await self._wait_released(key, holder.lease, delay)
            waited = True

    async def _wait_released(self, key: bytes, lease_id: int, timeout: float) -> None:
        """Until ``key`` is no longer held by ``lease_id``, or ``timeout`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            response = await self._range(key, self._deadline())
            if not response.kvs or response.kvs[0].lease != lease_id:
                return

    async def _campaign(self) -> None:
        """``If version(controller) == 0 Then put(controller, my lease)``."""
        if self._closed or not self._lease_id:
            return
        deadline = self._deadline()
        key = self._key("controller")
        try:
            response = await self._txn(
                [_version_is(key, 0)],
                [_put(key, {"broker_id": self.node_id}, self._lease_id)],
                deadline=deadline,
            )
        except ConfigError as exc:
            if "lease not found" in exc.message:
                self._check_lease.set()  # lost meanwhile: the keep-alive re-registers
                return
            raise
        if response.succeeded:
            log.info(
                "broker %d is the controller (epoch %d)", self.node_id, response.header.revision
            )
            await self._wait_applied(response.header.revision, deadline)

    def _maybe_campaign(self) -> None:
        if self._closed or not self._lease_id or self._image.controller_id != -1:
            return
        if self._campaign_task is not None and not self._campaign_task.done():
            return

        async def campaign() -> None:
            try:
                await self._campaign()
            except Exception as exc:  # noqa: BLE001 - the next image without a controller retries
                log.debug("controller campaign failed: %s", _describe(exc))

        self._campaign_task = asyncio.get_running_loop().create_task(campaign())

    async def _keep_alive(self) -> None:
        """Refresh the lease every TTL/3 (sooner after a failure); re-register when it is
        gone, which is also checked at once when the watch shows this broker deregistered."""
        delay = _BACKOFF_MIN
        interval = self.lease_ttl / 3
        wait = interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_lease.wait(), wait)
            self._check_lease.clear()
            try:
                ttl = await self._lease_ttl(self._lease_id, min(interval, self.request_timeout))
            except Exception as exc:  # noqa: BLE001 - keep trying, whatever went wrong
                log.debug("lease keep-alive failed: %s", _describe(exc))
                wait, delay = delay, min(delay * 2, _BACKOFF_MAX)
                continue
            delay, wait = _BACKOFF_MIN, interval
            if ttl > 0:
                continue
            log.warning("broker %d lost its etcd lease: registering again", self.node_id)
            self.registration = None
            self._lease_id = 0
            await self._reregister()

    async def _reregister(self) -> None:
        delay = _BACKOFF_MIN
        while True:
            try:
                await self._register()
            except ConfigError as exc:
                log.debug("re-registration failed, retrying: %s", exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            except DuplicateBrokerId as exc:
                log.error("%s; retrying in %ds", exc, self.lease_ttl)
                await asyncio.sleep(self.lease_ttl)
                continue
            except Exception as exc:  # noqa: BLE001 - keep trying, whatever went wrong
                log.warning("re-registration failed, retrying: %s", _describe(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            log.info(
                "broker %d registered again with epoch %d",
                self.node_id,
                self.registration.epoch if self.registration else 0,
            )
            self._maybe_campaign()
            return

    # --- the image: list, then watch --------------------------------------------------------------

    async def _resync(self) -> int:
        """List the prefix at one revision R, publish the image it makes, return R."""
        deadline = self._deadline()
        end = _prefix_end(self._prefix)
        projection = Projection()
        start, revision = self._prefix, 0
        while True:  # paged, all pages at the first page's revision
            request = rpc.RangeRequest(
                key=start, range_end=end, limit=_LIST_PAGE, revision=revision
            )
            response = await self._range_request(request, deadline)
            revision = revision or response.header.revision
            for kv in response.kvs:
                projection.apply(kv.key[len(self._prefix) :].decode(), kv, deleted=False)
            if not response.more or not response.kvs:
                break
            start = response.kvs[-1].key + b"\0"
        self._projection = projection
        self._advance(projection.build(ClusterImage(), revision), revision)
        return revision

    async def _follow(self, revision: int) -> None:
        """The watch task: apply events after ``revision``; on any failure back off, list
        again and go on from there."""
        delay = _BACKOFF_MIN
        while True:
            try:
                async for applied in self._watch(revision + 1):
                    revision = applied
                    delay = _BACKOFF_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: resync
                log.info("etcd watch interrupted (%s): resyncing", _describe(exc))
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                try:
                    revision = await self._resync()
                    break
                except ConfigError as exc:
                    log.debug("etcd list failed: %s", exc.message)

    async def _watch(self, start_revision: int) -> AsyncIterator[int]:
        """Apply the prefix's watch responses from ``start_revision``, yielding each applied
        revision; raises when the watch cannot go on."""
        client = await self._connected()
        # The stub directly: aetcd's watcher hands out single events, and a revision's
        # events must be applied together.
        stub = rpc.WatchStub(client.channel)
        done = asyncio.Event()
        create = rpc.WatchCreateRequest(
            key=self._prefix, range_end=_prefix_end(self._prefix), start_revision=start_revision
        )

        async def requests() -> AsyncIterator[rpc.WatchRequest]:
            yield rpc.WatchRequest(create_request=create)
            await done.wait()  # keep the request stream open while watching

        call = stub.Watch(requests(), metadata=client.metadata)
        try:
            async for response in call:
                if response.compact_revision:
                    raise _Resync(
                        f"revision {start_revision} was compacted (at {response.compact_revision})"
                    )
                if response.canceled:
                    raise _Resync(f"watch cancelled: {response.cancel_reason}")
                if not response.events:
                    continue
                for event in response.events:
                    self._projection.apply(
                        event.kv.key[len(self._prefix) :].decode(),
                        event.kv,
                        deleted=event.type == rpc.Event.DELETE,
                    )
                # Not header.revision: while catching up, etcd may send part of the history
                # with the current revision in the header.
                revision = max(event.kv.mod_revision for event in response.events)
                self._advance(self._projection.build(self._image, revision), revision)
                yield revision
            raise _Resync("the watch stream ended")
        finally:
            done.set()
            call.cancel()

    def _advance(self, image: ClusterImage, revision: int) -> None:
        """Publish the image of ``revision``; wake the writers waiting for it."""
        self._applied = revision
        self._publish(image)
        ready = [w for w in self._waiters if w[0] <= revision]
        for entry in ready:
            self._waiters.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)
        if self.registration is not None and self.node_id not in image.brokers:
            self._check_lease.set()  # deregistered behind our back: is the lease gone?
        self._maybe_campaign()

    # --- mutations --------------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        replicas: Sequence[Sequence[int]],
        configs: Mapping[str, str],
        topic_id: uuid.UUID | None = None,
    ) -> TopicMetadata:
        deadline = self._deadline()
        image = self._image
        check_new_topic(image, name, len(replicas))
        topic_id = topic_id or new_topic_id()
        topic_key = self._key(f"topics/{name}")
        config_key = self._key(f"configs/topic/{name}")
        partitions = [
            _put(self._partition_key(topic_id, p), initial_state(assigned, image.brokers).to_json())
            for p, assigned in enumerate(replicas)
        ]
        final = [
            _put(topic_key, {"topic_id": str(topic_id), "partitions": len(replicas)}),
            _put(config_key, dict(configs)) if configs else _delete(config_key),
        ]
        absent = [_version_is(topic_key, 0)]
        if len(partitions) + len(final) <= _CHUNK:
            response = await self._txn(
                absent, partitions + final, [_get(topic_key)], deadline=deadline
            )
        else:
            for chunk in _chunks(partitions, _CHUNK):
                response = await self._txn(absent, chunk, [_get(topic_key)], deadline=deadline)
                if not response.succeeded:
                    break
            else:
                response = await self._txn(absent, final, [_get(topic_key)], deadline=deadline)
        if not response.succeeded:
            holder = _fetched(response)
            ours = holder is not None and json.loads(holder.value).get("topic_id") == str(topic_id)
            if not ours:  # a lost race (or an old topic): clean up, report it
                with contextlib.suppress(ConfigError):
                    prefix = self._key(f"partitions/{topic_id}/")
                    await self._txn([], [_delete(prefix, prefix=True)], deadline=deadline)
                if holder is not None:
                    with contextlib.suppress(ConfigError):
                        await self._wait_applied(holder.mod_revision, deadline)
                raise ConfigError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
            assert holder is not None  # ours
            revision = holder.mod_revision  # a retry after an unanswered attempt that won
        else:
            revision = response.header.revision
        await self._wait_applied(revision, deadline)
        return TopicMetadata(name, topic_id, len(replicas), dict(configs))

    async def delete_topic(self, name: str) -> None:
        deadline = self._deadline()
        topic = self._projection.topic_keys.get(name)
        if name not in self._image.topics or topic is None:
            return
        response = await self._txn(
            [_created_at(self._key(f"topics/{name}"), topic.create_revision)],
            [
                _delete(self._key(f"topics/{name}")),
                _delete(self._key(f"configs/topic/{name}")),
                _delete(self._key(f"partitions/{topic.topic_id}/"), prefix=True),
            ],
            deadline=deadline,
        )
        if response.succeeded:  # otherwise already deleted (and maybe recreated) by another
            await self._wait_applied(response.header.revision, deadline)

    async def create_partitions(
        self, name: str, replicas: Sequence[Sequence[int]]
    ) -> TopicMetadata:
        deadline = self._deadline()
        image = self._image
        topic = require_topic(image, name)
        raw = self._projection.topic_keys[name]
        topic_key = self._key(f"topics/{name}")
        count = topic.partitions + len(replicas)
        partitions = [
            _put(
                self._partition_key(topic.topic_id, topic.partitions + i),
                initial_state(assigned, image.brokers).to_json(),
            )
            for i, assigned in enumerate(replicas)
        ]
        final = [_put(topic_key, {"topic_id": str(topic.topic_id), "partitions": count})]
        # Every step requires the topic key unchanged since read: a concurrent create_partitions
        # or a delete fails the rest. Keys left beyond the count are ignored, and overwritten
        # by the next attempt.
        unchanged = [_mod_is(topic_key, raw.mod_revision)]
        if len(partitions) + len(final) <= _CHUNK:
            response = await self._txn(
                unchanged, partitions + final, [_get(topic_key)], deadline=deadline
            )
        else:
            for chunk in _chunks(partitions, _CHUNK):
                response = await self._txn(unchanged, chunk, [_get(topic_key)], deadline=deadline)
                if not response.succeeded:
                    break
            else:
                response = await self._txn(unchanged, final, [_get(topic_key)], deadline=deadline)
        if not response.succeeded:
            holder = _fetched(response)
            if holder is None or json.loads(holder.value).get("topic_id") != str(topic.topic_id):
                raise ConfigError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                )
            if json.loads(holder.value).get("partitions") != count:
                raise ConfigError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"Topic '{name}' was changed concurrently (it now has "
                    f"{json.loads(holder.value).get('partitions')} partitions); retry.",
                )
            revision = holder.mod_revision  # a retry after an unanswered attempt that won
        else:
            revision = response.header.revision
        await self._wait_applied(revision, deadline)
        return replace(topic, partitions=count)

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicMetadata:
        deadline = self._deadline()
        topic = require_topic(self._image, name)
        raw = self._projection.topic_keys[name]
        config_key = self._key(f"configs/topic/{name}")
        response = await self._txn(
            [_created_at(self._key(f"topics/{name}"), raw.create_revision)],
            [_put(config_key, dict(configs)) if configs else _delete(config_key)],
            deadline=deadline,
        )
        if not response.succeeded:
            raise ConfigError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
            )
        if _changed_anything(response):
            await self._wait_applied(response.header.revision, deadline)
        return replace(topic, configs=dict(configs))

    async def set_broker_configs(self, node_id: int | None, configs: Mapping[str, str]) -> None:
        deadline = self._deadline()
        key = self._key(f"configs/broker/{'default' if node_id is None else node_id}")
        response = await self._txn(
            [], [_put(key, dict(configs)) if configs else _delete(key)], deadline=deadline
        )
        if _changed_anything(response):
            await self._wait_applied(response.header.revision, deadline)

    async def set_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        deadline = self._deadline()
        key = self._key(_GROUP_CONFIGS + urllib.parse.quote(group_id, safe=""))
        response = await self._txn(
            [], [_put(key, dict(configs)) if configs else _delete(key)], deadline=deadline
        )
        if _changed_anything(response):
            await self._wait_applied(response.header.revision, deadline)

    async def alter_partition(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        *,
        controller_epoch: int | None = None,
    ) -> PartitionState | None:
        deadline = self._deadline()
        metadata = self._image.topics.get(topic)
        if (
            metadata is None
            or not 0 <= partition < metadata.partitions
            or state.partition_epoch <= 0
        ):
            return None
        key = self._partition_key(metadata.topic_id, partition)
        compare = [_mod_is(key, state.partition_epoch)]
        if controller_epoch is not None:
            if controller_epoch <= 0:
                return None  # Create == 0 would match an absent controller key
            compare.append(_created_at(self._key("controller"), controller_epoch))
        response = await self._txn(compare, [_put(key, state.to_json())], deadline=deadline)
        if not response.succeeded:
            return None
        await self._wait_applied(response.header.revision, deadline)
        return replace(state, partition_epoch=response.header.revision)

    async def alter_scram_credentials(
        self, upserts: Sequence[tuple[str, ScramCredential]], deletions: Sequence[tuple[str, str]]
    ) -> None:
        deadline = self._deadline()
        def key(user: str, mechanism: str) -> bytes:
            return self._key(f"scram/{urllib.parse.quote(user, safe='')}/{mechanism}")

        ops = [_delete(key(u, m)) for u, m in deletions] + [_put(key(u, c.mechanism), c.to_json()) for u, c in upserts]
        for chunk in _chunks(ops, 100):
            response = await self._txn([], list(chunk), deadline=deadline)
            if _changed_anything(response):
                await self._wait_applied(response.header.revision, deadline)

    async def alter_acls(self, creations: Sequence[AclBinding], deletions: Sequence[AclBinding]) -> None:
        deadline = self._deadline()
        ops = [_delete(self._acl_key(b)) for b in deletions] + [_put(self._acl_key(b), b.to_json()) for b in creations]
        for chunk in _chunks(ops, 100):
            response = await self._txn([], list(chunk), deadline=deadline)
            if _changed_anything(response):
                await self._wait_applied(response.header.revision, deadline)

    async def alter_client_quotas(self, changes: Mapping[QuotaEntity, Mapping[str, float | None]]) -> None:
        deadline = self._deadline()
        current = self._image.client_quotas
        ops = []
        for entity, values in changes.items():
            merged = {k: v for k, v in {**current.get(entity, {}), **values}.items() if v is not None}
            key = self._key(f"quotas/{urllib.parse.quote(_dumps([list(p) for p in entity]).decode(), safe='')}")
            ops.append(_put(key, {"entity": [list(p) for p in entity], "values": merged}) if merged else _delete(key))
        for chunk in _chunks(ops, 100):
            response = await self._txn([], list(chunk), deadline=deadline)
            if _changed_anything(response):
                await self._wait_applied(response.header.revision, deadline)

    def _acl_key(self, binding: AclBinding) -> bytes:
        # one key per binding, named by its content: creating it twice is one key
        return self._key(f"acls/{hashlib.sha256(_dumps(binding.to_json())).hexdigest()[:32]}")

    async def allocate_producer_ids(self, count: int) -> int:
        """Compare-and-set on the counter's mod_revision, re-read on conflict. Not waited
        for in the watch: the counter is not part of the image."""
        if count < 1:
            raise ValueError(f"cannot allocate {count} producer ids")
        deadline = self._deadline()
        key = self._key("counters/producer_id")
        response = await self._range(key, deadline)
        current = response.kvs[0] if response.kvs else None
        while True:
            first = int(json.loads(current.value)["next"]) if current is not None else 0
            compare = (
                _mod_is(key, current.mod_revision) if current is not None else _version_is(key, 0)
            )
            txn = await self._txn(
                [compare], [_put(key, {"next": first + count})], [_get(key)], deadline=deadline
            )
            if txn.succeeded:
                return first
            current = _fetched(txn)
