"""The shell around the transaction coordinator: ``__transaction_state`` and the markers.

One ``TransactionCoordinator`` shard per partition of ``__transaction_state``
(transaction.state.log.num.partitions, compacted, created on the first FindCoordinator for a
transactional id), carried by the same machinery as the group coordinator
(coordinator_runtime.CoordinatorRuntime). What is particular to transactions:

- markers: a Result's TxnMarkers are written once its records are stored: with
  ``PartitionLog.append_control`` to every partition of the transaction this broker leads,
  and with WriteTxnMarkers (strom.client) to the leaders of the others. A marker in a
  ``__consumer_offsets`` partition also completes the transaction's pending offsets in the
  group coordinator. A partition that no longer exists is skipped (as Kafka drops markers for
  deleted partitions); other failures are reported back and the coordinator retries. On a
  single node all of it is synchronous; in a cluster the coordinator hears
  ``markers_written`` once every marker is on its partition's in-sync replicas;
- ``verify``: the produce path asks whether a transactional batch belongs to its producer's
  open transaction (KIP-890 part 1 verification), across the shards.

The coordinator epoch written into markers is the ``__transaction_state`` partition's leader
epoch (0 on one node).

Not done: KIP-890 verification against a coordinator on another broker (AddPartitionsToTxn
v4 verify-only): such writes are let through, as before KIP-890.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from strom.client.pool import ConnectionPool
from strom.coordinator.shard import TxnMarker
from strom.coordinator.transactions import TransactionConfig, TransactionCoordinator
from strom.coordinator.txn_records import TRANSACTION_STATE_TOPIC
from strom.coordinator.txn_records import deserialize as deserialize_txn_record
from strom.coordinator.txn_records import serialize as serialize_txn_record
from strom.handlers.context import BrokerContext, Commit
from strom.handlers.txn_markers import MARKER_TIMEOUT_MS, append_marker, committed
from strom.log.partition import PartitionLog
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.server.coordinator_runtime import (
    CoordinatorRuntime,
    GroupCoordinatorRuntime,
    RuntimeShard,
    ShardState,
)

log = logging.getLogger(__name__)


def _dropped(error: int) -> bool:
    """Markers Kafka gives up on: the partition is gone, or the producer has moved on there
    (the transaction is long over)."""
    return error in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED
    )


def transaction_config(config: BrokerConfig) -> TransactionConfig:
    return TransactionConfig(
        max_timeout_ms=config.transaction_max_timeout_ms,
        transactional_id_expiration_ms=config.transactional_id_expiration_ms,
        abort_timed_out_interval_ms=config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
        remove_expired_interval_ms=config.transaction_remove_expired_transaction_cleanup_interval_ms,
    )


class TransactionCoordinatorRuntime(CoordinatorRuntime[TransactionCoordinator]):
    """Implements handlers.context.TransactionRuntime. Owned by the event loop."""

    topic = TRANSACTION_STATE_TOPIC
    kind = "transaction"

    def __init__(
        self,
        ctx: BrokerContext,
        config: TransactionConfig,
        groups: GroupCoordinatorRuntime | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(ctx, clock)
        self.config = config
        self.groups = groups
        self.peers: ConnectionPool | None = None  # other brokers, for WriteTxnMarkers (cluster mode)

    def _num_partitions(self) -> int:
        return self.ctx.config.transaction_state_log_num_partitions

    def _replication_factor(self) -> int:
        return self.ctx.config.transaction_state_log_replication_factor

    def _topic_configs(self, replication_factor: int) -> dict[str, str]:
        min_isr = min(self.ctx.config.transaction_state_log_min_isr, replication_factor)
        return {**super()._topic_configs(replication_factor), "min.insync.replicas": str(min_isr)}

    def _new_coordinator(self, partition_log: PartitionLog) -> TransactionCoordinator:
        return TransactionCoordinator(
            self.config, coordinator_epoch=partition_log.leader_epoch, new_producer_id=self.ctx.next_producer_id
        )

    def _deserialize(self, key: bytes | None, value: bytes | None) -> Any:
        return deserialize_txn_record(key, value)

    def _serialize(self, record: Any) -> tuple[bytes, bytes | None]:
        return serialize_txn_record(record)

    def _summary(self) -> str:
        return f": {sum(len(s.coordinator.transactions) for s in self._shards.values())} transactional ids"

    # --- markers -----------------------------------------------------------------------------

    def _write_markers(self, shard: RuntimeShard[TransactionCoordinator], markers: tuple[TxnMarker, ...]) -> None:
        """Write each marker where this broker leads the partition, and send WriteTxnMarkers
        to the leaders of the others. On a single node everything is local and done at once;
        otherwise the coordinator hears ``markers_written`` once every marker is on its
        partition's in-sync replicas (or failed, and is retried on its timer)."""
        for marker in markers:
            failed: set[tuple[str, int]] = set()
            waits: list[Commit] = []  # local markers still to be replicated
            remote: dict[int, list[tuple[str, int]]] = {}
            for topic, partition in sorted(marker.partitions):
                error, commit = append_marker(
                    self.ctx, topic, partition, marker.producer_id, marker.producer_epoch,
                    marker.coordinator_epoch, marker.commit,
                )
                if error == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                    state = self.ctx.partition_state(topic, partition)
                    remote.setdefault(state.leader if state is not None else -1, []).append((topic, partition))
                elif commit is not None:
                    partition_log = self.ctx.partition_log(topic, partition)
                    if partition_log is not None and partition_log.high_watermark < commit.next_offset:
                        waits.append(commit)
                elif not _dropped(error):
                    failed.add((topic, partition))
            if not waits and not remote:
                self._markers_done(shard, marker, failed)
            else:
                self._spawn(self._complete_markers(shard, marker, failed, waits, remote))

    def _markers_done(self, shard: RuntimeShard[TransactionCoordinator], marker: TxnMarker, failed: set[tuple[str, int]]) -> None:
        if self._shards.get(shard.partition) is not shard or shard.state is not ShardState.ACTIVE:
            return  # unloaded meanwhile: the next coordinator completes the transaction
        result = shard.coordinator.markers_written(
            marker.transactional_id, marker.producer_id, marker.producer_epoch, frozenset(failed), self._clock()
        )
        self._carry_out(shard, result)

    async def _complete_markers(
        self,
        shard: RuntimeShard[TransactionCoordinator],
        marker: TxnMarker,
        failed: set[tuple[str, int]],
        waits: list[Commit],
        remote: dict[int, list[tuple[str, int]]],
    ) -> None:
        try:
            local = asyncio.gather(*(committed(self.ctx, commit) for commit in waits))
            sent = asyncio.gather(*(self._send_markers(marker, leader, tps) for leader, tps in remote.items()))
            local_errors, remote_failed = await asyncio.gather(local, sent)
            failed.update((c.topic, c.partition) for c, error in zip(waits, local_errors, strict=True) if error)
            for tps in remote_failed:
                failed.update(tps)
        except Exception:
            log.exception("transaction %s: writing markers failed", marker.transactional_id)
            failed.update(marker.partitions)  # retried on the coordinator's timer
        self._markers_done(shard, marker, failed)

    async def _send_markers(self, marker: TxnMarker, leader: int, partitions: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """WriteTxnMarkers to another leader; returns the partitions to retry."""
        node = self.ctx.node_by_id(leader)
        if node is None or self.peers is None:
            return partitions
        topics: dict[str, list[int]] = {}
        for topic, p in partitions:
            topics.setdefault(topic, []).append(p)
        body = {"markers": [{
            "producer_id": marker.producer_id, "producer_epoch": marker.producer_epoch,
            "transaction_result": marker.commit, "coordinator_epoch": marker.coordinator_epoch,
            "topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()],
        }]}
        try:
            connection = await self.peers.get(node.node_id, node.host, node.port)
            response = await connection.request(ApiKey.WRITE_TXN_MARKERS, 1, body, timeout_s=MARKER_TIMEOUT_MS / 1000 + 5)
        except Exception as exc:  # unreachable, timed out, or a reply that did not decode
            log.info("transaction %s: markers to broker %d not sent: %s", marker.transactional_id, leader, exc)
            return partitions
        retry: list[tuple[str, int]] = []
        for answered in response.markers:
            for topic in answered.topics:
                retry.extend((topic.name, p.partition_index) for p in topic.partitions if p.error_code and not _dropped(p.error_code))
        return retry

    # --- verification of transactional produce -----------------------------------------------

    def verify(self, producer_id: int, producer_epoch: int, topic: str, partition: int) -> int:
        """An error code for a transactional batch that is not part of its producer's open
        transaction, as a produce response carries it (Kafka's AddPartitionsToTxnManager
        mapping: a fenced epoch is INVALID_PRODUCER_EPOCH, an unavailable coordinator the
        retriable NOT_ENOUGH_REPLICAS)."""
        loading = False
        for shard in list(self._shards.values()):
            if shard.state is not ShardState.ACTIVE:
                loading = True
                continue
            error = shard.coordinator.verify(producer_id, producer_epoch, (topic, partition))
            if error == ErrorCode.INVALID_PRODUCER_ID_MAPPING:
                continue
            return ErrorCode.INVALID_PRODUCER_EPOCH if error == ErrorCode.PRODUCER_FENCED else error
        if loading:
            return ErrorCode.NOT_ENOUGH_REPLICAS
        state_topic = self.ctx.metadata.topic(self.topic)
        if state_topic is not None and len(self._shards) < state_topic.partitions:
            # The producer's coordinator may be another broker (cluster mode), which this one
            # cannot ask yet (AddPartitionsToTxn v4 verification): the write is let through, as
            # before KIP-890.
            return ErrorCode.NONE
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
