"""Records of ``__transaction_state`` in Kafka's formats, and the transaction states.

One record per transactional id, its latest state (the topic is compacted); a null value is the
tombstone of an expired id. Kafka's transaction-coordinator message specs:

====================  ===========  ======================================================
record                key version  value versions (read / written)
====================  ===========  ======================================================
TransactionLog        0            0-1 / 0
====================  ===========  ======================================================

Layouts (value version 1 is flexible and adds tagged fields, KIP-890, which are skipped)::

    TransactionLogKey    transactional_id string
    TransactionLogValue  producer_id int64, producer_epoch int16, transaction_timeout_ms int32,
                         transaction_status int8, transaction_partitions [topic string,
                         partition_ids []int32] (nullable), transaction_last_update_timestamp_ms
                         int64, transaction_start_timestamp_ms int64

The partition of a transactional id is ``abs(transactionalId.hashCode()) % partitions``, as
for groups (records.partition_for).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from strom.coordinator.schema_codec import (
    INT32_ARRAY,
    Field,
    RecordFormatError,
    Schema,
    decode_versioned,
    encode_versioned,
    key_version,
    plain,
)

TRANSACTION_STATE_TOPIC: Final = "__transaction_state"
TRANSACTION_LOG_KEY_VERSION: Final = 0
TRANSACTION_LOG_VALUE_VERSION: Final = 0


class TransactionState(enum.IntEnum):
    """Kafka's TransactionState: the int8 in the log, and the name DescribeTransactions and
    ListTransactions use. PrepareEpochFence and Dead are never written by strom (Kafka keeps
    them in memory only); a stored PrepareEpochFence loads as PrepareAbort."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display_name(self) -> str:
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        return _BY_NAME.get(name)


_NAMES = {
    TransactionState.EMPTY: "Empty",
    TransactionState.ONGOING: "Ongoing",
    TransactionState.PREPARE_COMMIT: "PrepareCommit",
    TransactionState.PREPARE_ABORT: "PrepareAbort",
    TransactionState.COMPLETE_COMMIT: "CompleteCommit",
    TransactionState.COMPLETE_ABORT: "CompleteAbort",
    TransactionState.DEAD: "Dead",
    TransactionState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME = {name: state for state, name in _NAMES.items()}


@dataclass(frozen=True, slots=True)
class TransactionLogKey:
    transactional_id: str


@dataclass(frozen=True, slots=True)
class TransactionPartitions:
    topic: str
    partition_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TransactionLogValue:
    producer_id: int
    producer_epoch: int
    transaction_timeout_ms: int
    transaction_status: int
    transaction_partitions: tuple[TransactionPartitions, ...] | None
    transaction_last_update_timestamp_ms: int
    transaction_start_timestamp_ms: int

    def partitions(self) -> frozenset[tuple[str, int]]:
        return frozenset((t.topic, p) for t in self.transaction_partitions or () for p in t.partition_ids)


@dataclass(frozen=True, slots=True)
class TxnRecord:
    """One __transaction_state record; ``value`` None is a tombstone."""

    key: TransactionLogKey
    value: TransactionLogValue | None


def partitions_field(partitions: frozenset[tuple[str, int]] | set[tuple[str, int]]) -> tuple[TransactionPartitions, ...]:
    """The record's topic -> partition ids list, sorted (a stable byte form)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return tuple(TransactionPartitions(topic, tuple(ids)) for topic, ids in by_topic.items())


_KEY = Schema("TransactionLogKey", (Field("transactional_id", "string"),), valid=(0, 0), build=plain(TransactionLogKey))
_PARTITIONS = Schema(
    "PartitionsSchema",
    (Field("topic", "string"), Field("partition_ids", INT32_ARRAY)),
    valid=(0, 1),
    flexible_from=1,
    build=plain(TransactionPartitions),
)
_VALUE = Schema(
    "TransactionLogValue",
    (
        Field("producer_id", "int64"),
        Field("producer_epoch", "int16"),
        Field("transaction_timeout_ms", "int32"),
        Field("transaction_status", "int8"),
        Field("transaction_partitions", _PARTITIONS, nullable=True),
        Field("transaction_last_update_timestamp_ms", "int64"),
        Field("transaction_start_timestamp_ms", "int64"),
    ),
    valid=(0, 1),
    flexible_from=1,
    build=plain(TransactionLogValue),
)


def serialize(record: TxnRecord) -> tuple[bytes, bytes | None]:
    key = encode_versioned(_KEY, TRANSACTION_LOG_KEY_VERSION, record.key)
    if record.value is None:
        return key, None
    return key, encode_versioned(_VALUE, TRANSACTION_LOG_VALUE_VERSION, record.value)


def serialize_value(value: TransactionLogValue, version: int) -> bytes:
    """A value at a chosen version (tests: v1 is what Kafka 4 writes for TV2 clients)."""
    return encode_versioned(_VALUE, version, value)


def deserialize(key: bytes | None, value: bytes | None) -> TxnRecord | None:
    """Decode a record read back from the log; None for key versions strom does not know.
    RecordFormatError when it is malformed."""
    if key_version(key) != TRANSACTION_LOG_KEY_VERSION:
        return None
    assert key is not None
    parsed_key = decode_versioned(_KEY, key)
    parsed_value = None if value is None else decode_versioned(_VALUE, value)
    if parsed_value is not None and parsed_value.transaction_status not in TransactionState.__members__.values():
        raise RecordFormatError(f"unknown transaction status {parsed_value.transaction_status}")
    return TxnRecord(parsed_key, parsed_value)


__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "TransactionLogKey",
    "TransactionLogValue",
    "TransactionPartitions",
    "TransactionState",
    "TxnRecord",
    "deserialize",
    "partitions_field",
    "serialize",
    "serialize_value",
]
