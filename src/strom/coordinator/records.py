"""Records of ``__consumer_offsets`` in Kafka's formats, and which partition holds a group.

Every record is a key and a value (null for a tombstone), each starting with an int16
version. The key version names the record type (Kafka's group-coordinator message specs):

====================  ===========  ======================================================
record                key version  value versions (read / written)
====================  ===========  ======================================================
OffsetCommit          0, 1         0-4 / 1 (with an expire timestamp), else 3
GroupMetadata         2            0-4 / 3
====================  ===========  ======================================================

Layouts (non-flexible unless noted; version 4 of both values is flexible, KIP-482)::

    OffsetCommitKey     group string, topic string, partition int32
    OffsetCommitValue   offset int64, leader_epoch int32 (v3+), metadata string,
                        commit_timestamp int64, expire_timestamp int64 (v1 only)
    GroupMetadataKey    group string
    GroupMetadataValue  protocol_type string, generation int32, protocol string?, leader string?,
                        current_state_timestamp int64 (v2+), members [MemberMetadata]
    MemberMetadata      member_id string, group_instance_id string? (v3+), client_id string,
                        client_host string, rebalance_timeout int32 (v1+), session_timeout int32,
                        subscription bytes, assignment bytes

The codec is coordinator.schema_codec. Key versions 3 and up belong to KIP-848 consumer, share and streams groups, which strom does
not implement: ``deserialize`` returns None for them so a loader can skip them.

The partition of a group is ``abs(groupId.hashCode()) % partitions`` with Java's String hash
(over UTF-16 code units) and Kafka's ``Utils.abs`` (which maps Integer.MIN_VALUE to 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from strom.coordinator.schema_codec import (
    Field,
    RecordFormatError,
    Schema,
    decode_versioned,
    encode_versioned,
    key_version,
    plain,
)

OFFSETS_TOPIC: Final = "__consumer_offsets"

LEGACY_OFFSET_COMMIT_KEY_VERSION: Final = 0
OFFSET_COMMIT_KEY_VERSION: Final = 1
GROUP_METADATA_KEY_VERSION: Final = 2

OFFSET_COMMIT_VALUE_VERSION: Final = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: Final = 1
GROUP_METADATA_VALUE_VERSION: Final = 3

# --- the partition of a group -------------------------------------------------------------


def java_string_hashcode(text: str) -> int:
    """Java's ``String.hashCode``: s[0]*31^(n-1) + ... over UTF-16 code units, as int32."""
    units = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """The __consumer_offsets (or __transaction_state) partition that owns ``key``."""
    h = java_string_hashcode(key)
    return (0 if h == -(2**31) else abs(h)) % partitions


# --- record types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = -1  # only in value version 1 (OffsetCommit v2-4 retention_time)


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberMetadata, ...]


RecordKey = OffsetCommitKey | GroupMetadataKey
RecordValue = OffsetCommitValue | GroupMetadataValue


@dataclass(frozen=True, slots=True)
class CoordinatorRecord:
    """One __consumer_offsets record; ``value`` None is a tombstone."""

    key: RecordKey
    value: RecordValue | None

    @staticmethod
    def offset_commit(group: str, topic: str, partition: int, value: OffsetCommitValue | None) -> CoordinatorRecord:
        return CoordinatorRecord(OffsetCommitKey(group, topic, partition), value)

    @staticmethod
    def group_metadata(group: str, value: GroupMetadataValue | None) -> CoordinatorRecord:
        return CoordinatorRecord(GroupMetadataKey(group), value)


# --- schemas (coordinator.schema_codec) ------------------------------------------------------


def _member(version: int, values: dict[str, Any]) -> MemberMetadata:
    if version == 0:  # v0 predates rebalance timeouts: the session timeout served both
        values["rebalance_timeout"] = values["session_timeout"]
    return MemberMetadata(**values)


_OFFSET_COMMIT_KEY = Schema(
    "OffsetCommitKey",
    (Field("group", "string"), Field("topic", "string"), Field("partition", "int32")),
    valid=(0, 1),
    build=plain(OffsetCommitKey),
)
_GROUP_METADATA_KEY = Schema(
    "GroupMetadataKey", (Field("group", "string"),), valid=(2, 2), build=plain(GroupMetadataKey)
)
_OFFSET_COMMIT_VALUE = Schema(
    "OffsetCommitValue",
    (
        Field("offset", "int64"),
        Field("leader_epoch", "int32", first=3, default=-1),
        Field("metadata", "string"),
        Field("commit_timestamp", "int64"),
        Field("expire_timestamp", "int64", first=1, last=1, default=-1),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=plain(OffsetCommitValue),
)
_MEMBER_METADATA = Schema(
    "MemberMetadata",
    (
        Field("member_id", "string"),
        Field("group_instance_id", "string", first=3, nullable=True),
        Field("client_id", "string"),
        Field("client_host", "string"),
        Field("rebalance_timeout", "int32", first=1, default=0),
        Field("session_timeout", "int32"),
        Field("subscription", "bytes"),
        Field("assignment", "bytes"),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=_member,
)
_GROUP_METADATA_VALUE = Schema(
    "GroupMetadataValue",
    (
        Field("protocol_type", "string"),
        Field("generation", "int32"),
        Field("protocol", "string", nullable=True),
        Field("leader", "string", nullable=True),
        Field("current_state_timestamp", "int64", first=2, default=-1),
        Field("members", _MEMBER_METADATA),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=plain(GroupMetadataValue),
)


# --- serialization ----------------------------------------------------------------------------


def serialize(record: CoordinatorRecord) -> tuple[bytes, bytes | None]:
    """The record's key and value bytes, in the versions Kafka writes."""
    key, value = record.key, record.value
    if isinstance(key, OffsetCommitKey):
        key_bytes = encode_versioned(_OFFSET_COMMIT_KEY, OFFSET_COMMIT_KEY_VERSION, key)
        if value is None:
            return key_bytes, None
        assert isinstance(value, OffsetCommitValue)
        version = OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY if value.expire_timestamp >= 0 else OFFSET_COMMIT_VALUE_VERSION
        return key_bytes, encode_versioned(_OFFSET_COMMIT_VALUE, version, value)
    key_bytes = encode_versioned(_GROUP_METADATA_KEY, GROUP_METADATA_KEY_VERSION, key)
    if value is None:
        return key_bytes, None
    assert isinstance(value, GroupMetadataValue)
    return key_bytes, encode_versioned(_GROUP_METADATA_VALUE, GROUP_METADATA_VALUE_VERSION, value)


def serialize_value(value: RecordValue, version: int) -> bytes:
    """A value at a chosen version (tests, and tools that write older formats)."""
    schema = _OFFSET_COMMIT_VALUE if isinstance(value, OffsetCommitValue) else _GROUP_METADATA_VALUE
    return encode_versioned(schema, version, value)


def deserialize(key: bytes | None, value: bytes | None) -> CoordinatorRecord | None:
    """Decode a record read back from the log; None for record types strom does not keep
    (KIP-848 and share/streams group records). RecordFormatError when it is malformed."""
    if key is None:
        raise RecordFormatError("record without a versioned key")
    version = key_version(key)
    if version in (LEGACY_OFFSET_COMMIT_KEY_VERSION, OFFSET_COMMIT_KEY_VERSION):
        # Both key versions share one layout; the key's own version field is not a schema version.
        parsed_key = decode_versioned(_OFFSET_COMMIT_KEY, key, version=1)
        parsed_value = None if value is None else decode_versioned(_OFFSET_COMMIT_VALUE, value)
        return CoordinatorRecord(parsed_key, parsed_value)
    if version == GROUP_METADATA_KEY_VERSION:
        parsed_key = decode_versioned(_GROUP_METADATA_KEY, key)
        parsed_value = None if value is None else decode_versioned(_GROUP_METADATA_VALUE, value)
        return CoordinatorRecord(parsed_key, parsed_value)
    return None


def encode_all(records: Sequence[CoordinatorRecord]) -> list[tuple[bytes, bytes | None]]:
    return [serialize(record) for record in records]


__all__ = [
    "OFFSETS_TOPIC",
    "CoordinatorRecord",
    "GroupMetadataKey",
    "GroupMetadataValue",
    "MemberMetadata",
    "OffsetCommitKey",
    "OffsetCommitValue",
    "RecordFormatError",
    "deserialize",
    "encode_all",
    "java_string_hashcode",
    "partition_for",
    "serialize",
    "serialize_value",
]
