"""The shell around the transaction coordinator: ``__transaction_state`` and the markers.

One ``TransactionCoordinator`` shard per partition of ``__transaction_state``
(transaction.state.log.num.partitions, compacted, created on the first FindCoordinator for a
transactional id), carried by the same machinery as the group coordinator
(coordinator_runtime.CoordinatorRuntime). What is particular to transactions:

- markers: a Result's TxnMarkers are written once its records are stored, synchronously, with
  ``PartitionLog.append_control`` to every partition of the transaction (Kafka's
  WriteTxnMarkers, which on one node is a local call). A marker in a ``__consumer_offsets``
  partition also completes the transaction's pending offsets in the group coordinator. A
  partition that no longer exists is skipped (as Kafka drops markers for deleted
  partitions); a storage error is reported back and the coordinator retries. Waiting
  fetches are woken, since the last stable offsets moved;
- ``verify``: the produce path asks whether a transactional batch belongs to its producer's
  open transaction (KIP-890 part 1 verification), across the shards.

The coordinator epoch written into markers is the ``__transaction_state`` partition's leader
epoch (0 on one node).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from strom.coordinator.records import OFFSETS_TOPIC
from strom.coordinator.shard import TxnMarker
from strom.coordinator.transactions import TransactionConfig, TransactionCoordinator
from strom.coordinator.txn_records import TRANSACTION_STATE_TOPIC
from strom.coordinator.txn_records import deserialize as deserialize_txn_record
from strom.coordinator.txn_records import serialize as serialize_txn_record
from strom.handlers.context import BrokerContext
from strom.log.partition import PartitionLog
from strom.log.producer_state import ProducerStateError
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.server.coordinator_runtime import (
    CoordinatorRuntime,
    GroupCoordinatorRuntime,
    RuntimeShard,
    ShardState,
)

log = logging.getLogger(__name__)


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
        for marker in markers:
            failed = frozenset(tp for tp in sorted(marker.partitions) if not self._write_marker(marker, *tp))
            self.ctx.appends.notify()
            result = shard.coordinator.markers_written(
                marker.transactional_id, marker.producer_id, marker.producer_epoch, failed, self._clock()
            )
            self._carry_out(shard, result)

    def _write_marker(self, marker: TxnMarker, topic: str, partition: int) -> bool:
        """Write one marker; False when it must be retried."""
        partition_log = self.ctx.partition_log(topic, partition)
        if partition_log is None:
            log.info("transaction %s: %s-%d no longer exists, no marker", marker.transactional_id, topic, partition)
            return True
        try:
            partition_log.append_control(
                marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.commit, self._clock()
            )
        except ProducerStateError as exc:
            # The producer moved to a newer epoch there: this transaction is long over (Kafka
            # drops such markers too).
            log.warning("transaction %s: marker to %s-%d refused: %s", marker.transactional_id, topic, partition, exc)
            return True
        except OSError:
            log.exception("transaction %s: writing a marker to %s-%d failed", marker.transactional_id, topic, partition)
            return False
        if topic == OFFSETS_TOPIC and self.groups is not None:
            self.groups.complete_transaction(partition, marker.producer_id, marker.commit)
        return True

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
        topic = self.ctx.metadata.topic(self.topic)
        if topic is not None and len(self._shards) < topic.partitions:
            # The producer's coordinator may be another broker (cluster mode), which this one
            # cannot ask yet (AddPartitionsToTxn v4 verification): the write is let through, as
            # before KIP-890.
            return ErrorCode.NONE
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
