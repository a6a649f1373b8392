"""The persister of share-partition state (Kafka's DefaultStatePersister), over
``__share_group_state``.

``RuntimePersister`` implements share.persister.SharePersister. A share partition's state
lives in one partition of ``__share_group_state`` (share.records.partition_for), and only the
broker that leads that partition may read or write it (its share coordinator shard,
server.share_state_runtime). For each call the persister

1. creates ``__share_group_state`` if it does not exist yet (as the group runtime creates
   ``__consumer_offsets`` on the first FindCoordinator);
2. looks the partition's leader up in the metadata image;
3. when it is this broker, calls the local share coordinator runtime; otherwise sends
   ReadShareGroupState v0 / WriteShareGroupState v1 / DeleteShareGroupState v0 to the leader
   over the inter-broker connection pool (the inter-broker listener's TLS and SASL), whose
   handlers (handlers.share_state) answer from its runtime.

NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and COORDINATOR_NOT_AVAILABLE (no leader yet, a
leader unreachable, the topic just created) are retried ``attempts`` times in all, after a
backoff that doubles from ``backoff_s`` up to ``max_backoff_s``, each time with a fresh look at
the metadata: leaderships move, and a new leader answers LOAD_IN_PROGRESS while it replays the
partition. What is left after the last attempt is the answer.

Reads return what ReadShareGroupState carries (state epoch, start offset, batches; the other
fields -1), whether the state is local or not, so a share partition sees the same thing
wherever its state lives. A share partition without state is None: locally the shard has none,
remotely the coordinator answers INVALID_REQUEST ("uninitialized share partition").
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from strom.client.connection import BrokerConnection
from strom.client.pool import ConnectionPool
from strom.coordinator.shard import CoordinatorError
from strom.handlers.context import BrokerContext
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.share.persister import ShareCoordinator, SharePersisterError
from strom.share.records import (
    SHARE_STATE_TOPIC,
    ShareSnapshotKey,
    ShareSnapshotValue,
    batches_as_fields,
    batches_from_fields,
    partition_for,
)

from .coordinator_runtime import COMMIT_TIMEOUT_MS

log = logging.getLogger(__name__)

__all__ = ["RETRIABLE", "RuntimePersister", "read_view"]

# Errors worth another attempt: the coordinator moves, loads, or has no leader yet.
RETRIABLE: Final = frozenset({
    ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE,
})
# A remote coordinator answers a write once its in-sync replicas have it.
REQUEST_TIMEOUT_S: Final = COMMIT_TIMEOUT_MS / 1000 + 5

Outcome = tuple[int, ShareSnapshotValue | None]


def read_view(value: ShareSnapshotValue) -> ShareSnapshotValue:
    """What a read returns of a stored state: the fields ReadShareGroupState carries."""
    return ShareSnapshotValue(-1, value.state_epoch, -1, value.start_offset, -1, -1, tuple(value.state_batches))


def _partition_result(response: Any) -> Any:
    """The one partition's result of a share-state response (None when it has none)."""
    for topic in response.results:
        for partition in topic.partitions:
            return partition
    return None


class RuntimePersister:
    """share.persister.SharePersister over the share coordinators (module doc). Owned by the
    event loop. ``peers``: the broker's inter-broker ConnectionPool; without one the persister
    opens its own when it first needs another broker (``close`` closes it)."""

    def __init__(
        self,
        ctx: BrokerContext,
        runtime: ShareCoordinator,
        peers: ConnectionPool | None = None,
        *,
        attempts: int = 10,
        backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self._peers = peers
        self._own_peers: ConnectionPool | None = None
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    def close(self) -> None:
        if self._own_peers is not None:
            self._own_peers.close_all()
            self._own_peers = None

    # --- share.persister.SharePersister ----------------------------------------------------------

    async def read(self, group_id: str, topic_id: uuid.UUID, partition: int, leader_epoch: int = -1) -> ShareSnapshotValue | None:
        key = ShareSnapshotKey(group_id, topic_id, partition)

        async def local() -> Outcome:
            if leader_epoch < 0:
                value = self.runtime.snapshot(key)
                return ErrorCode.NONE, None if value is None else read_view(value)
            # a new leader's read records its epoch: the old leader's late writes are fenced
            error, found = await self.runtime.read_state(key, leader_epoch)
            if error == ErrorCode.INVALID_REQUEST:  # uninitialized share partition
                return ErrorCode.NONE, None
            return error, None if error or found is None else read_view(found)

        async def remote(conn: BrokerConnection) -> Outcome:
            body = {"group_id": group_id, "topics": [{"topic_id": topic_id, "partitions": [
                {"partition": partition, "leader_epoch": leader_epoch}]}]}
            result = _partition_result(await conn.request(ApiKey.READ_SHARE_GROUP_STATE, 0, body, timeout_s=REQUEST_TIMEOUT_S))
            if result is None:
                return ErrorCode.UNKNOWN_SERVER_ERROR, None
            if result.error_code == ErrorCode.INVALID_REQUEST:  # uninitialized share partition
                return ErrorCode.NONE, None
            if result.error_code:
                return result.error_code, None
            batches = batches_from_fields(result.state_batches)
            return ErrorCode.NONE, ShareSnapshotValue(-1, result.state_epoch, -1, result.start_offset, -1, -1, batches)

        error, value = await self._retried(key, "read", local, remote)
        if error:
            raise SharePersisterError(error, f"reading the state of {group_id}:{topic_id}:{partition}: {ErrorCode(error).name}")
        return value

    async def write(self, group_id: str, topic_id: uuid.UUID, partition: int, value: ShareSnapshotValue) -> int:
        key = ShareSnapshotKey(group_id, topic_id, partition)

        async def local() -> Outcome:
            return await self.runtime.write_state(key, value), None

        async def remote(conn: BrokerConnection) -> Outcome:
            data = {
                "partition": partition, "state_epoch": value.state_epoch, "leader_epoch": value.leader_epoch,
                "start_offset": value.start_offset, "delivery_complete_count": value.delivery_complete_count,
                "state_batches": batches_as_fields(value.state_batches),
            }
            body = {"group_id": group_id, "topics": [{"topic_id": topic_id, "partitions": [data]}]}
            result = _partition_result(await conn.request(ApiKey.WRITE_SHARE_GROUP_STATE, 1, body, timeout_s=REQUEST_TIMEOUT_S))
            return (ErrorCode.UNKNOWN_SERVER_ERROR if result is None else result.error_code), None

        return (await self._retried(key, "write", local, remote))[0]

    async def delete(self, group_id: str, topic_id: uuid.UUID, partition: int) -> int:
        key = ShareSnapshotKey(group_id, topic_id, partition)

        async def local() -> Outcome:
            return await self.runtime.delete_state(key), None

        async def remote(conn: BrokerConnection) -> Outcome:
            body = {"group_id": group_id, "topics": [{"topic_id": topic_id, "partitions": [{"partition": partition}]}]}
            result = _partition_result(await conn.request(ApiKey.DELETE_SHARE_GROUP_STATE, 0, body, timeout_s=REQUEST_TIMEOUT_S))
            return (ErrorCode.UNKNOWN_SERVER_ERROR if result is None else result.error_code), None

        return (await self._retried(key, "delete", local, remote))[0]

    # --- routing -------------------------------------------------------------------------------

    async def _retried(
        self,
        key: ShareSnapshotKey,
        what: str,
        local: Callable[[], Awaitable[Outcome]],
        remote: Callable[[BrokerConnection], Awaitable[Outcome]],
    ) -> Outcome:
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            outcome = await self._once(key, what, local, remote)
            if outcome[0] not in RETRIABLE or attempt == self.attempts:
                return outcome
            log.debug("share state %s of %s: %s, retrying in %.2f s", what, key, ErrorCode(outcome[0]).name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    async def _once(
        self,
        key: ShareSnapshotKey,
        what: str,
        local: Callable[[], Awaitable[Outcome]],
        remote: Callable[[BrokerConnection], Awaitable[Outcome]],
    ) -> Outcome:
        try:
            await self.runtime.ensure_topic()
        except CoordinatorError as exc:
            return exc.error_code, None
        topic = self.ctx.metadata.topic(SHARE_STATE_TOPIC)
        if topic is None:  # created, but not in this broker's image yet
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        partition = partition_for(key.group_id, key.topic_id, key.partition, topic.partitions)
        state = self.ctx.partition_state(SHARE_STATE_TOPIC, partition)
        leader = state.leader if state is not None else -1
        if leader == self.ctx.node.node_id:
            try:
                return await local()
            except CoordinatorError as exc:
                return exc.error_code, None
        node = self.ctx.node_by_id(leader) if leader >= 0 else None
        if node is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        try:
            conn = await self._pool().get(node.node_id, node.host, node.port)
            return await remote(conn)
        except Exception as exc:  # unreachable, timed out, or an answer that did not decode
            log.info("share state %s of %s on broker %d failed: %s", what, key, node.node_id, exc)
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None

    def _pool(self) -> ConnectionPool:
        if self._peers is not None:
            return self._peers
        if self._own_peers is None:
            self._own_peers = ConnectionPool(
                client_id=f"strom-broker-{self.ctx.config.node_id}", security=self.ctx.inter_broker
            )
        return self._own_peers
