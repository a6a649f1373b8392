"""The shell around the share coordinator: ``__share_group_state`` (KIP-932).

One ``ShareStateShard`` (share.state_store) per partition of ``__share_group_state``, carried
by the same machinery as the group and transaction coordinators
(coordinator_runtime.CoordinatorRuntime): a shard loads by replaying its partition when this
broker comes to lead it, answers COORDINATOR_LOAD_IN_PROGRESS meanwhile and NOT_COORDINATOR
for a partition led elsewhere, and a write is answered once the in-sync replicas have its
record.

The topic has share.coordinator.state.topic.num.partitions partitions (50),
share.coordinator.state.topic.replication.factor replicas (3, capped by the live brokers when
it is created) and min.insync.replicas share.coordinator.state.topic.min.isr (2, capped by
the replication factor). strom keeps it compacted like its other internal topics (Kafka:
cleanup.policy=delete with pruning; see share.state_store for why strom writes whole
snapshots). It is created on first use by the persister (server.share_persister), as the group
runtime creates ``__consumer_offsets`` on the first FindCoordinator.

A share partition's state lives in partition ``share.records.partition_for(group, topic id,
partition)``: the runtime's key is Kafka's coordinator key string
``"<group>:<topic id>:<partition>"`` (share.records.share_coordinator_key), whose hash the
runtime takes as for the other coordinators, so both name the same partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.coordinator.shard import Result
from strom.log.partition import PartitionLog
from strom.share.records import (
    SHARE_STATE_TOPIC,
    ShareSnapshotKey,
    ShareSnapshotValue,
    deserialize,
    partition_for,
    serialize,
    share_coordinator_key,
)
from strom.share.state_store import ShareStateShard

from .coordinator_runtime import CoordinatorRuntime

__all__ = ["ShareStateRuntime", "coordinator_key"]


def coordinator_key(key: ShareSnapshotKey) -> str:
    """The runtime's key of a share partition's state (Kafka's SharePartitionKey.asCoordinatorKey)."""
    return share_coordinator_key(key.group_id, key.topic_id, key.partition)


class ShareStateRuntime(CoordinatorRuntime[ShareStateShard]):
    """Implements share.persister.ShareCoordinator over ``__share_group_state``. Owned by the
    event loop. The operations raise CoordinatorError (NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS, a failed append's translated error)."""

    topic = SHARE_STATE_TOPIC
    kind = "share"

    def _num_partitions(self) -> int:
        return self.ctx.config.share_coordinator_state_topic_num_partitions

    def _replication_factor(self) -> int:
        return self.ctx.config.share_coordinator_state_topic_replication_factor

    def _topic_configs(self, replication_factor: int) -> dict[str, str]:
        min_isr = min(self.ctx.config.share_coordinator_state_topic_min_isr, replication_factor)
        return {**super()._topic_configs(replication_factor), "min.insync.replicas": str(min_isr)}

    def _new_coordinator(self, partition_log: PartitionLog) -> ShareStateShard:
        return ShareStateShard()

    def _deserialize(self, key: bytes | None, value: bytes | None) -> Any:
        return deserialize(key, value)

    def _serialize(self, record: Any) -> tuple[bytes, bytes | None]:
        return serialize(record)

    def _summary(self) -> str:
        return f": {sum(len(s.coordinator.states) for s in self._shards.values())} share partitions"

    # --- where a share partition's state lives -------------------------------------------------

    def partition_of(self, key: ShareSnapshotKey) -> int | None:
        """The ``__share_group_state`` partition of the key (None: the topic does not exist)."""
        topic = self.ctx.metadata.topic(self.topic)
        return None if topic is None else partition_for(key.group_id, key.topic_id, key.partition, topic.partitions)

    # --- operations (share.persister.ShareCoordinator) -----------------------------------------

    async def _call(self, key: ShareSnapshotKey, operation: Callable[[ShareStateShard, int], Result]) -> Any:
        return await self.call(coordinator_key(key), lambda shard, now, _ticket: operation(shard, now))

    def snapshot(self, key: ShareSnapshotKey) -> ShareSnapshotValue | None:
        return self.read(coordinator_key(key), lambda shard: shard.read(key))

    async def read_state(self, key: ShareSnapshotKey, leader_epoch: int = -1) -> tuple[int, ShareSnapshotValue | None]:
        response: tuple[int, ShareSnapshotValue | None] = await self._call(
            key, lambda shard, now: shard.read_for_leader(key, leader_epoch, now)
        )
        return response

    async def write_state(self, key: ShareSnapshotKey, value: ShareSnapshotValue) -> int:
        error: int = await self._call(key, lambda shard, now: shard.write(key, value, now))
        return error

    async def initialize_state(self, key: ShareSnapshotKey, state_epoch: int, start_offset: int) -> int:
        error: int = await self._call(key, lambda shard, now: shard.initialize(key, state_epoch, start_offset, now))
        return error

    async def delete_state(self, key: ShareSnapshotKey) -> int:
        error: int = await self._call(key, lambda shard, now: shard.delete(key, now))
        return error
