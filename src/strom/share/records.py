"""Records of ``__share_group_state`` in Kafka's formats, and which partition holds a share
partition's state (KIP-932; Kafka's share-coordinator message specs, 4.2).

Every record is a key and a value (null for a tombstone). The key is an int16 record type
(the ``apiKey`` of the coordinator-key spec) and the key's fields at version 0, non-flexible
(int16-length string, 16-byte uuid, int32); the value is an int16 version (0) and the value's
fields, flexible (compact lengths, a tagged-field section after every struct):

=============  ====  =====================  =================================================
record         type  value versions         meaning
=============  ====  =====================  =================================================
ShareSnapshot  0     0 / 0                  the complete state of a share partition
ShareUpdate    1     0 / read only          a delta over the latest snapshot
=============  ====  =====================  =================================================

Layouts::

    ShareSnapshotKey    group_id string, topic_id uuid, partition int32
    ShareUpdateKey      group_id string, topic_id uuid, partition int32
    ShareSnapshotValue  snapshot_epoch int32, state_epoch int32, leader_epoch int32,
                        start_offset int64, create_timestamp int64, write_timestamp int64,
                        state_batches [PersistedBatch];
                        tag 0: delivery_complete_count int32 (default -1, Kafka 4.2, KIP-1226)
    ShareUpdateValue    snapshot_epoch int32, leader_epoch int32, start_offset int64 (-1:
                        unchanged), state_batches [PersistedBatch];
                        tag 0: delivery_complete_count int32 (default -1)
    PersistedBatch      first_offset int64, last_offset int64, delivery_state int8
                        (0 available, 2 acknowledged, 4 archived), delivery_count int16

In the spec the tagged DeliveryCompleteCount sits between StartOffset and CreateTimestamp; a
tagged field is written in the tag section, so here it is the last (defaulted) attribute.

The partition of a share partition's state is ``abs(key.hashCode()) % partitions`` with the
key ``"<groupId>:<topicId>:<partition>"`` (Kafka's ``SharePartitionKey.asCoordinatorKey``;
the topic id in ``Uuid.toString()`` form, unpadded URL-safe base64), Java's String hash and
``Utils.abs`` (Integer.MIN_VALUE maps to 0). FindCoordinator with key type SHARE (2) uses the
same key string.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from strom.coordinator import records as group_records
from strom.coordinator.schema_codec import (
    Field,
    RecordFormatError,
    Schema,
    decode_versioned,
    encode_versioned,
    key_version,
    plain,
)
from strom.share.partition import StateBatch

# A run of offsets in one delivery state (Kafka's StateBatch / PersisterStateBatch):
# delivery_state int8 (0 available, 2 acknowledged, 4 archived), delivery_count int16.
PersistedBatch = StateBatch

SHARE_STATE_TOPIC: Final = "__share_group_state"

SHARE_SNAPSHOT_TYPE: Final = 0
SHARE_UPDATE_TYPE: Final = 1
SHARE_STATE_VALUE_VERSION: Final = 0


# --- the partition of a share partition's state -------------------------------------------


def kafka_uuid_string(value: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString()``: the 16 bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def share_coordinator_key(group_id: str, topic_id: uuid.UUID, partition: int) -> str:
    """Kafka's ``SharePartitionKey.asCoordinatorKey``: ``"<groupId>:<topicId>:<partition>"``."""
    return f"{group_id}:{kafka_uuid_string(topic_id)}:{partition}"


def partition_for(group_id: str, topic_id: uuid.UUID, partition: int, partitions: int) -> int:
    """The __share_group_state partition that holds the state of a share partition."""
    return group_records.partition_for(share_coordinator_key(group_id, topic_id, partition), partitions)


def batches_as_fields(batches: Iterable[PersistedBatch]) -> list[dict[str, int]]:
    """State batches as Read/WriteShareGroupState carry them (the codec's dict form)."""
    return [{"first_offset": b.first_offset, "last_offset": b.last_offset, "delivery_state": b.delivery_state,
             "delivery_count": b.delivery_count} for b in batches]


def batches_from_fields(items: Iterable[Any]) -> tuple[PersistedBatch, ...]:
    """The state batches of a decoded Read/WriteShareGroupState message."""
    return tuple(PersistedBatch(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count) for b in items)


# --- record types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShareSnapshotKey:
    group_id: str
    topic_id: uuid.UUID
    partition: int


@dataclass(frozen=True, slots=True)
class ShareSnapshotValue:
    snapshot_epoch: int
    state_epoch: int
    leader_epoch: int
    start_offset: int
    create_timestamp: int
    write_timestamp: int
    state_batches: tuple[PersistedBatch, ...]
    delivery_complete_count: int = -1  # tagged field 0 (Kafka 4.2); -1 is not written


@dataclass(frozen=True, slots=True)
class ShareUpdateKey:
    group_id: str
    topic_id: uuid.UUID
    partition: int


@dataclass(frozen=True, slots=True)
class ShareUpdateValue:
    snapshot_epoch: int  # the epoch of the snapshot this update applies to
    leader_epoch: int
    start_offset: int  # -1: unchanged
    state_batches: tuple[PersistedBatch, ...]  # only the changed batches
    delivery_complete_count: int = -1  # tagged field 0 (Kafka 4.2); -1 is not written


ShareStateKey = ShareSnapshotKey | ShareUpdateKey
ShareStateValue = ShareSnapshotValue | ShareUpdateValue


@dataclass(frozen=True, slots=True)
class ShareStateRecord:
    """One __share_group_state record; ``value`` None is a tombstone (Kafka writes them
    with a ShareSnapshot key)."""

    key: ShareStateKey
    value: ShareStateValue | None

    @staticmethod
    def snapshot(group_id: str, topic_id: uuid.UUID, partition: int, value: ShareSnapshotValue) -> ShareStateRecord:
        return ShareStateRecord(ShareSnapshotKey(group_id, topic_id, partition), value)

    @staticmethod
    def update(group_id: str, topic_id: uuid.UUID, partition: int, value: ShareUpdateValue) -> ShareStateRecord:
        return ShareStateRecord(ShareUpdateKey(group_id, topic_id, partition), value)

    @staticmethod
    def tombstone(group_id: str, topic_id: uuid.UUID, partition: int) -> ShareStateRecord:
        return ShareStateRecord(ShareSnapshotKey(group_id, topic_id, partition), None)


# --- schemas (coordinator.schema_codec) ------------------------------------------------------


def _key_schema(cls: type) -> Schema:
    fields = (Field("group_id", "string"), Field("topic_id", "uuid"), Field("partition", "int32"))
    return Schema(cls.__name__, fields, valid=(0, 0), build=plain(cls))


def _value_schema(cls: type, *fields: Field) -> Schema:
    return Schema(cls.__name__, fields, valid=(0, 0), flexible_from=0, build=plain(cls))


_STATE_BATCH = _value_schema(
    PersistedBatch,
    Field("first_offset", "int64"),
    Field("last_offset", "int64"),
    Field("delivery_state", "int8"),
    Field("delivery_count", "int16"),
)
_DELIVERY_COMPLETE_COUNT = Field("delivery_complete_count", "int32", default=-1, tag=0)

# record type -> (key class, key schema, value class, value schema)
_SCHEMAS: Final[dict[int, tuple[type, Schema, type, Schema]]] = {
    SHARE_SNAPSHOT_TYPE: (
        ShareSnapshotKey,
        _key_schema(ShareSnapshotKey),
        ShareSnapshotValue,
        _value_schema(
            ShareSnapshotValue,
            Field("snapshot_epoch", "int32"),
            Field("state_epoch", "int32"),
            Field("leader_epoch", "int32"),
            Field("start_offset", "int64"),
            _DELIVERY_COMPLETE_COUNT,
            Field("create_timestamp", "int64"),
            Field("write_timestamp", "int64"),
            Field("state_batches", _STATE_BATCH),
        ),
    ),
    SHARE_UPDATE_TYPE: (
        ShareUpdateKey,
        _key_schema(ShareUpdateKey),
        ShareUpdateValue,
        _value_schema(
            ShareUpdateValue,
            Field("snapshot_epoch", "int32"),
            Field("leader_epoch", "int32"),
            Field("start_offset", "int64"),
            _DELIVERY_COMPLETE_COUNT,
            Field("state_batches", _STATE_BATCH),
        ),
    ),
}
_TYPE_OF_KEY: Final = {key_cls: t for t, (key_cls, _k, _v, _s) in _SCHEMAS.items()}


# --- serialization ----------------------------------------------------------------------------


def serialize(record: ShareStateRecord) -> tuple[bytes, bytes | None]:
    """The record's key and value bytes, as Kafka 4.2 writes them."""
    key, value = record.key, record.value
    record_type = _TYPE_OF_KEY[type(key)]
    _key_cls, key_schema, value_cls, value_schema = _SCHEMAS[record_type]
    # The key starts with its record type and has its fields at version 0.
    key_bytes = encode_versioned(key_schema, 0, key, prefix=record_type)
    if value is None:
        return key_bytes, None
    if not isinstance(value, value_cls):
        raise ValueError(f"{type(key).__name__} with a {type(value).__name__}")
    return key_bytes, encode_versioned(value_schema, SHARE_STATE_VALUE_VERSION, value)


def deserialize(key: bytes | None, value: bytes | None) -> ShareStateRecord:
    """Decode a record read back from the log. RecordFormatError when it is malformed or of
    a record type Kafka 4.2 does not define (Kafka's loader skips those too)."""
    record_type = key_version(key)
    schemas = _SCHEMAS.get(record_type)
    if schemas is None:
        raise RecordFormatError(f"unknown __share_group_state record type {record_type}")
    assert key is not None
    _key_cls, key_schema, _value_cls, value_schema = schemas
    parsed_key = decode_versioned(key_schema, key, version=0)
    parsed_value = None if value is None else decode_versioned(value_schema, value)
    return ShareStateRecord(parsed_key, parsed_value)


__all__ = [
    "SHARE_SNAPSHOT_TYPE",
    "SHARE_STATE_TOPIC",
    "SHARE_STATE_VALUE_VERSION",
    "SHARE_UPDATE_TYPE",
    "PersistedBatch",
    "batches_as_fields",
    "batches_from_fields",
    "RecordFormatError",
    "ShareSnapshotKey",
    "ShareSnapshotValue",
    "ShareStateKey",
    "ShareStateRecord",
    "ShareStateValue",
    "ShareUpdateKey",
    "ShareUpdateValue",
    "deserialize",
    "kafka_uuid_string",
    "partition_for",
    "serialize",
    "share_coordinator_key",
]
