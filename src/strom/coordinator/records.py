"""Records of ``__consumer_offsets`` in Kafka's formats, and which partition holds a group.

Every record is a key and a value (null for a tombstone), each starting with an int16. For
the classic records the key's int16 is its version, and it names the record type; the KIP-848
consumer-group and KIP-932 share-group records start their key with the record type (the
``apiKey`` of Kafka's coordinator-key spec) and lay out the key's fields at version 0 (Kafka's
group-coordinator message specs):

=========================================  ====  ==============================================
record                                     type  value versions (read / written)
=========================================  ====  ==============================================
OffsetCommit                               0, 1  0-4 / 1 (with an expire timestamp), else 3
GroupMetadata                              2     0-4 / 3
ConsumerGroupMetadata                      3     0 / 0
ConsumerGroupPartitionMetadata             4     0 / tombstones only (deprecated in 4.1)
ConsumerGroupMemberMetadata                5     0 / 0
ConsumerGroupTargetAssignmentMetadata      6     0 / 0
ConsumerGroupTargetAssignmentMember        7     0 / 0
ConsumerGroupCurrentMemberAssignment       8     0 / 0
(Kafka 4.0's ShareGroupPartitionMetadata)  9     not decoded: ``deserialize`` returns None
ShareGroupMemberMetadata                   10    0 / 0
ShareGroupMetadata                         11    0 / 0
ShareGroupTargetAssignmentMetadata         12    0 / 0
ShareGroupTargetAssignmentMember           13    0 / 0
ShareGroupCurrentMemberAssignment          14    0 / 0
ShareGroupStatePartitionMetadata           15    0 / 0
ConsumerGroupRegularExpression             16    0 / 0
(streams groups)                           17+   not decoded: ``deserialize`` returns None
=========================================  ====  ==============================================

Layouts (non-flexible unless noted; version 4 of both classic values is flexible, KIP-482)::

    OffsetCommitKey     group string, topic string, partition int32
    OffsetCommitValue   offset int64, leader_epoch int32 (v3+), metadata string,
                        commit_timestamp int64, expire_timestamp int64 (v1 only)
    GroupMetadataKey    group string
    GroupMetadataValue  protocol_type string, generation int32, protocol string?, leader string?,
                        current_state_timestamp int64 (v2+), members [MemberMetadata]
    MemberMetadata      member_id string, group_instance_id string? (v3+), client_id string,
                        client_host string, rebalance_timeout int32 (v1+), session_timeout int32,
                        subscription bytes, assignment bytes

KIP-848 keys are non-flexible; their values (version 0) are flexible: compact strings and
arrays, uuid as 16 raw bytes, a tagged-field section after every struct::

    3   key group                   value epoch int32; tag 0: metadata_hash int64 (default 0)
    4   key group                   value topics [topic_id uuid, topic_name string,
                                          num_partitions int32,
                                          partition_metadata [partition int32, racks [string]]]
    5   key group, member_id        value instance_id string?, rack_id string?, client_id string,
                                          client_host string, subscribed_topic_names [string],
                                          subscribed_topic_regex string?,
                                          rebalance_timeout_ms int32, server_assignor string?;
                                          tag 0: classic_member_metadata? {session_timeout_ms
                                          int32, supported_protocols [name string,
                                          metadata bytes]}
    6   key group                   value assignment_epoch int32
    7   key group, member_id        value topic_partitions [topic_id uuid, partitions [int32]]
    8   key group, member_id        value member_epoch int32, previous_member_epoch int32,
                                          state int8, assigned_partitions [TopicPartitions],
                                          partitions_pending_revocation [TopicPartitions]
    16  key group, regular_expression  value topics [string], version int64, timestamp int64

KIP-932 share groups (Kafka 4.1+ layouts, unchanged in 4.2), in the same scheme::

    10  key group, member_id        value rack_id string?, client_id string, client_host string,
                                          subscribed_topic_names [string]
    11  key group                   value epoch int32, metadata_hash int64 (not tagged, unlike 3)
    12  key group                   value assignment_epoch int32
    13  key group, member_id        value topic_partitions [TopicPartitions]
    14  key group, member_id        value member_epoch int32, previous_member_epoch int32,
                                          state int8, assigned_partitions [TopicPartitions]
    15  key group                   value initializing_topics [topic_id uuid, topic_name string,
                                          partitions [int32]], initialized_topics [same],
                                          deleting_topics [topic_id uuid, topic_name string]

The codec is coordinator.schema_codec.

The partition of a group is ``abs(groupId.hashCode()) % partitions`` with Java's String hash
(over UTF-16 code units) and Kafka's ``Utils.abs`` (which maps Integer.MIN_VALUE to 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from strom.coordinator.schema_codec import (
    INT32_ARRAY,
    STRING_ARRAY,
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
CONSUMER_GROUP_METADATA_TYPE: Final = 3
CONSUMER_GROUP_PARTITION_METADATA_TYPE: Final = 4
CONSUMER_GROUP_MEMBER_METADATA_TYPE: Final = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_TYPE: Final = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_TYPE: Final = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_TYPE: Final = 8
CONSUMER_GROUP_REGULAR_EXPRESSION_TYPE: Final = 16
SHARE_GROUP_MEMBER_METADATA_TYPE: Final = 10
SHARE_GROUP_METADATA_TYPE: Final = 11
SHARE_GROUP_TARGET_ASSIGNMENT_METADATA_TYPE: Final = 12
SHARE_GROUP_TARGET_ASSIGNMENT_MEMBER_TYPE: Final = 13
SHARE_GROUP_CURRENT_MEMBER_ASSIGNMENT_TYPE: Final = 14
SHARE_GROUP_STATE_PARTITION_METADATA_TYPE: Final = 15

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


# KIP-848 consumer groups (value version 0 of each; see the table above).


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataValue:
    epoch: int
    metadata_hash: int = 0  # tagged field 0 (Kafka 4.1+, KIP-1101); 0 is not written


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    partition: int
    racks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    topic_id: uuid.UUID
    topic_name: str
    num_partitions: int
    partition_metadata: tuple[PartitionMetadata, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataValue:
    """Kafka 4.0's subscription metadata, replaced by the metadata hash in 4.1: read, so
    that the next write can tombstone it."""

    topics: tuple[TopicMetadata, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ClassicProtocol:
    name: str
    metadata: bytes


@dataclass(frozen=True, slots=True)
class ClassicMemberMetadata:
    session_timeout_ms: int
    supported_protocols: tuple[ClassicProtocol, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None
    # tagged field 0: set for a member that uses the classic protocol, else None (not written)
    classic_member_metadata: ClassicMemberMetadata | None = None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class TopicPartitions:
    topic_id: uuid.UUID
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberValue:
    topic_partitions: tuple[TopicPartitions, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int  # int8, Kafka's MemberState value
    assigned_partitions: tuple[TopicPartitions, ...]
    partitions_pending_revocation: tuple[TopicPartitions, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupRegularExpressionKey:
    group: str
    regular_expression: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupRegularExpressionValue:
    topics: tuple[str, ...]
    version: int  # the metadata image version the regex was resolved against
    timestamp: int  # when the resolution started (ms)


# KIP-932 share groups (value version 0 of each; see the table above).


@dataclass(frozen=True, slots=True)
class ShareGroupMemberMetadataKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ShareGroupMemberMetadataValue:
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ShareGroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ShareGroupMetadataValue:
    epoch: int
    metadata_hash: int = 0  # a regular int64 field (always written), not tagged as in type 3


@dataclass(frozen=True, slots=True)
class ShareGroupTargetAssignmentMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ShareGroupTargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class ShareGroupTargetAssignmentMemberKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ShareGroupTargetAssignmentMemberValue:
    topic_partitions: tuple[TopicPartitions, ...]


@dataclass(frozen=True, slots=True)
class ShareGroupCurrentMemberAssignmentKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ShareGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int  # int8, Kafka's MemberState value
    assigned_partitions: tuple[TopicPartitions, ...]


@dataclass(frozen=True, slots=True)
class ShareGroupStatePartitionMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class TopicPartitionsInfo:
    """A topic of ShareGroupStatePartitionMetadataValue's initializing / initialized lists."""

    topic_id: uuid.UUID
    topic_name: str
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic of ShareGroupStatePartitionMetadataValue's deleting list."""

    topic_id: uuid.UUID
    topic_name: str


@dataclass(frozen=True, slots=True)
class ShareGroupStatePartitionMetadataValue:
    """The topic-partitions whose share state (in ``__share_group_state``) is being
    initialized, is initialized, or is being deleted."""

    initializing_topics: tuple[TopicPartitionsInfo, ...]
    initialized_topics: tuple[TopicPartitionsInfo, ...]
    deleting_topics: tuple[TopicInfo, ...]


ConsumerGroupRecordKey = (
    ConsumerGroupMetadataKey
    | ConsumerGroupPartitionMetadataKey
    | ConsumerGroupMemberMetadataKey
    | ConsumerGroupTargetAssignmentMetadataKey
    | ConsumerGroupTargetAssignmentMemberKey
    | ConsumerGroupCurrentMemberAssignmentKey
    | ConsumerGroupRegularExpressionKey
)
ConsumerGroupRecordValue = (
    ConsumerGroupMetadataValue
    | ConsumerGroupPartitionMetadataValue
    | ConsumerGroupMemberMetadataValue
    | ConsumerGroupTargetAssignmentMetadataValue
    | ConsumerGroupTargetAssignmentMemberValue
    | ConsumerGroupCurrentMemberAssignmentValue
    | ConsumerGroupRegularExpressionValue
)
ShareGroupRecordKey = (
    ShareGroupMemberMetadataKey
    | ShareGroupMetadataKey
    | ShareGroupTargetAssignmentMetadataKey
    | ShareGroupTargetAssignmentMemberKey
    | ShareGroupCurrentMemberAssignmentKey
    | ShareGroupStatePartitionMetadataKey
)
ShareGroupRecordValue = (
    ShareGroupMemberMetadataValue
    | ShareGroupMetadataValue
    | ShareGroupTargetAssignmentMetadataValue
    | ShareGroupTargetAssignmentMemberValue
    | ShareGroupCurrentMemberAssignmentValue
    | ShareGroupStatePartitionMetadataValue
)
RecordKey = OffsetCommitKey | GroupMetadataKey | ConsumerGroupRecordKey | ShareGroupRecordKey
RecordValue = OffsetCommitValue | GroupMetadataValue | ConsumerGroupRecordValue | ShareGroupRecordValue


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

    @staticmethod
    def consumer_group_metadata(group: str, value: ConsumerGroupMetadataValue | None) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupMetadataKey(group), value)

    @staticmethod
    def consumer_group_partition_metadata(
        group: str, value: ConsumerGroupPartitionMetadataValue | None = None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupPartitionMetadataKey(group), value)

    @staticmethod
    def consumer_group_member_metadata(
        group: str, member_id: str, value: ConsumerGroupMemberMetadataValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupMemberMetadataKey(group, member_id), value)

    @staticmethod
    def consumer_group_target_assignment_metadata(
        group: str, value: ConsumerGroupTargetAssignmentMetadataValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupTargetAssignmentMetadataKey(group), value)

    @staticmethod
    def consumer_group_target_assignment_member(
        group: str, member_id: str, value: ConsumerGroupTargetAssignmentMemberValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupTargetAssignmentMemberKey(group, member_id), value)

    @staticmethod
    def consumer_group_current_member_assignment(
        group: str, member_id: str, value: ConsumerGroupCurrentMemberAssignmentValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupCurrentMemberAssignmentKey(group, member_id), value)

    @staticmethod
    def consumer_group_regular_expression(
        group: str, regular_expression: str, value: ConsumerGroupRegularExpressionValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ConsumerGroupRegularExpressionKey(group, regular_expression), value)

    @staticmethod
    def share_group_member_metadata(
        group: str, member_id: str, value: ShareGroupMemberMetadataValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupMemberMetadataKey(group, member_id), value)

    @staticmethod
    def share_group_metadata(group: str, value: ShareGroupMetadataValue | None) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupMetadataKey(group), value)

    @staticmethod
    def share_group_target_assignment_metadata(
        group: str, value: ShareGroupTargetAssignmentMetadataValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupTargetAssignmentMetadataKey(group), value)

    @staticmethod
    def share_group_target_assignment_member(
        group: str, member_id: str, value: ShareGroupTargetAssignmentMemberValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupTargetAssignmentMemberKey(group, member_id), value)

    @staticmethod
    def share_group_current_member_assignment(
        group: str, member_id: str, value: ShareGroupCurrentMemberAssignmentValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupCurrentMemberAssignmentKey(group, member_id), value)

    @staticmethod
    def share_group_state_partition_metadata(
        group: str, value: ShareGroupStatePartitionMetadataValue | None
    ) -> CoordinatorRecord:
        return CoordinatorRecord(ShareGroupStatePartitionMetadataKey(group), value)


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


# KIP-848 consumer groups: keys at version 0 (non-flexible), values at version 0 (flexible).

_GROUP_ID = Field("group", "string")
_MEMBER_ID = Field("member_id", "string")


def _key_schema(cls: type, *fields: Field) -> Schema:
    return Schema(cls.__name__, fields, valid=(0, 0), build=plain(cls))


def _value_schema(cls: type, *fields: Field) -> Schema:
    return Schema(cls.__name__, fields, valid=(0, 0), flexible_from=0, build=plain(cls))


_TOPIC_PARTITIONS = _value_schema(TopicPartitions, Field("topic_id", "uuid"), Field("partitions", INT32_ARRAY))
_TOPIC_PARTITIONS_INFO = _value_schema(
    TopicPartitionsInfo, Field("topic_id", "uuid"), Field("topic_name", "string"), Field("partitions", INT32_ARRAY)
)
_CLASSIC_MEMBER_METADATA = _value_schema(
    ClassicMemberMetadata,
    Field("session_timeout_ms", "int32"),
    Field(
        "supported_protocols",
        _value_schema(ClassicProtocol, Field("name", "string"), Field("metadata", "bytes")),
    ),
)

# record type -> (key class, key schema, value class, value schema)
_CONSUMER_GROUP_SCHEMAS: Final[dict[int, tuple[type, Schema, type, Schema]]] = {
    CONSUMER_GROUP_METADATA_TYPE: (
        ConsumerGroupMetadataKey,
        _key_schema(ConsumerGroupMetadataKey, _GROUP_ID),
        ConsumerGroupMetadataValue,
        _value_schema(
            ConsumerGroupMetadataValue,
            Field("epoch", "int32"),
            Field("metadata_hash", "int64", default=0, tag=0),
        ),
    ),
    CONSUMER_GROUP_PARTITION_METADATA_TYPE: (
        ConsumerGroupPartitionMetadataKey,
        _key_schema(ConsumerGroupPartitionMetadataKey, _GROUP_ID),
        ConsumerGroupPartitionMetadataValue,
        _value_schema(
            ConsumerGroupPartitionMetadataValue,
            Field(
                "topics",
                _value_schema(
                    TopicMetadata,
                    Field("topic_id", "uuid"),
                    Field("topic_name", "string"),
                    Field("num_partitions", "int32"),
                    Field(
                        "partition_metadata",
                        _value_schema(PartitionMetadata, Field("partition", "int32"), Field("racks", STRING_ARRAY)),
                    ),
                ),
            ),
        ),
    ),
    CONSUMER_GROUP_MEMBER_METADATA_TYPE: (
        ConsumerGroupMemberMetadataKey,
        _key_schema(ConsumerGroupMemberMetadataKey, _GROUP_ID, _MEMBER_ID),
        ConsumerGroupMemberMetadataValue,
        _value_schema(
            ConsumerGroupMemberMetadataValue,
            Field("instance_id", "string", nullable=True),
            Field("rack_id", "string", nullable=True),
            Field("client_id", "string"),
            Field("client_host", "string"),
            Field("subscribed_topic_names", STRING_ARRAY),
            Field("subscribed_topic_regex", "string", nullable=True),
            Field("rebalance_timeout_ms", "int32", default=-1),
            Field("server_assignor", "string", nullable=True),
            Field("classic_member_metadata", _CLASSIC_MEMBER_METADATA, nullable=True, tag=0, single=True),
        ),
    ),
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_TYPE: (
        ConsumerGroupTargetAssignmentMetadataKey,
        _key_schema(ConsumerGroupTargetAssignmentMetadataKey, _GROUP_ID),
        ConsumerGroupTargetAssignmentMetadataValue,
        _value_schema(ConsumerGroupTargetAssignmentMetadataValue, Field("assignment_epoch", "int32")),
    ),
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_TYPE: (
        ConsumerGroupTargetAssignmentMemberKey,
        _key_schema(ConsumerGroupTargetAssignmentMemberKey, _GROUP_ID, _MEMBER_ID),
        ConsumerGroupTargetAssignmentMemberValue,
        _value_schema(ConsumerGroupTargetAssignmentMemberValue, Field("topic_partitions", _TOPIC_PARTITIONS)),
    ),
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_TYPE: (
        ConsumerGroupCurrentMemberAssignmentKey,
        _key_schema(ConsumerGroupCurrentMemberAssignmentKey, _GROUP_ID, _MEMBER_ID),
        ConsumerGroupCurrentMemberAssignmentValue,
        _value_schema(
            ConsumerGroupCurrentMemberAssignmentValue,
            Field("member_epoch", "int32"),
            Field("previous_member_epoch", "int32"),
            Field("state", "int8"),
            Field("assigned_partitions", _TOPIC_PARTITIONS),
            Field("partitions_pending_revocation", _TOPIC_PARTITIONS),
        ),
    ),
    CONSUMER_GROUP_REGULAR_EXPRESSION_TYPE: (
        ConsumerGroupRegularExpressionKey,
        _key_schema(ConsumerGroupRegularExpressionKey, _GROUP_ID, Field("regular_expression", "string")),
        ConsumerGroupRegularExpressionValue,
        _value_schema(
            ConsumerGroupRegularExpressionValue,
            Field("topics", STRING_ARRAY),
            Field("version", "int64"),
            Field("timestamp", "int64"),
        ),
    ),
}
_SHARE_GROUP_SCHEMAS: Final[dict[int, tuple[type, Schema, type, Schema]]] = {
    SHARE_GROUP_MEMBER_METADATA_TYPE: (
        ShareGroupMemberMetadataKey,
        _key_schema(ShareGroupMemberMetadataKey, _GROUP_ID, _MEMBER_ID),
        ShareGroupMemberMetadataValue,
        _value_schema(
            ShareGroupMemberMetadataValue,
            Field("rack_id", "string", nullable=True),
            Field("client_id", "string"),
            Field("client_host", "string"),
            Field("subscribed_topic_names", STRING_ARRAY),
        ),
    ),
    SHARE_GROUP_METADATA_TYPE: (
        ShareGroupMetadataKey,
        _key_schema(ShareGroupMetadataKey, _GROUP_ID),
        ShareGroupMetadataValue,
        _value_schema(ShareGroupMetadataValue, Field("epoch", "int32"), Field("metadata_hash", "int64")),
    ),
    SHARE_GROUP_TARGET_ASSIGNMENT_METADATA_TYPE: (
        ShareGroupTargetAssignmentMetadataKey,
        _key_schema(ShareGroupTargetAssignmentMetadataKey, _GROUP_ID),
        ShareGroupTargetAssignmentMetadataValue,
        _value_schema(ShareGroupTargetAssignmentMetadataValue, Field("assignment_epoch", "int32")),
    ),
    SHARE_GROUP_TARGET_ASSIGNMENT_MEMBER_TYPE: (
        ShareGroupTargetAssignmentMemberKey,
        _key_schema(ShareGroupTargetAssignmentMemberKey, _GROUP_ID, _MEMBER_ID),
        ShareGroupTargetAssignmentMemberValue,
        _value_schema(ShareGroupTargetAssignmentMemberValue, Field("topic_partitions", _TOPIC_PARTITIONS)),
    ),
    SHARE_GROUP_CURRENT_MEMBER_ASSIGNMENT_TYPE: (
        ShareGroupCurrentMemberAssignmentKey,
        _key_schema(ShareGroupCurrentMemberAssignmentKey, _GROUP_ID, _MEMBER_ID),
        ShareGroupCurrentMemberAssignmentValue,
        _value_schema(
            ShareGroupCurrentMemberAssignmentValue,
            Field("member_epoch", "int32"),
            Field("previous_member_epoch", "int32"),
            Field("state", "int8"),
            Field("assigned_partitions", _TOPIC_PARTITIONS),
        ),
    ),
    SHARE_GROUP_STATE_PARTITION_METADATA_TYPE: (
        ShareGroupStatePartitionMetadataKey,
        _key_schema(ShareGroupStatePartitionMetadataKey, _GROUP_ID),
        ShareGroupStatePartitionMetadataValue,
        _value_schema(
            ShareGroupStatePartitionMetadataValue,
            Field("initializing_topics", _TOPIC_PARTITIONS_INFO),
            Field("initialized_topics", _TOPIC_PARTITIONS_INFO),
            Field(
                "deleting_topics",
                _value_schema(TopicInfo, Field("topic_id", "uuid"), Field("topic_name", "string")),
            ),
        ),
    ),
}
# Every record type whose key starts with its type: consumer groups, then share groups.
_GROUP_SCHEMAS: Final = {**_CONSUMER_GROUP_SCHEMAS, **_SHARE_GROUP_SCHEMAS}
_TYPE_OF_KEY: Final = {key_cls: t for t, (key_cls, _k, _v, _s) in _GROUP_SCHEMAS.items()}
_VALUE_SCHEMA_OF: Final = {value_cls: schema for _key_cls, _k, value_cls, schema in _GROUP_SCHEMAS.values()}
CONSUMER_GROUP_VALUE_VERSION: Final = 0  # of every consumer- and share-group value


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
    if isinstance(key, GroupMetadataKey):
        key_bytes = encode_versioned(_GROUP_METADATA_KEY, GROUP_METADATA_KEY_VERSION, key)
        if value is None:
            return key_bytes, None
        assert isinstance(value, GroupMetadataValue)
        return key_bytes, encode_versioned(_GROUP_METADATA_VALUE, GROUP_METADATA_VALUE_VERSION, value)
    record_type = _TYPE_OF_KEY[type(key)]
    _key_cls, key_schema, value_cls, value_schema = _GROUP_SCHEMAS[record_type]
    # The key starts with its record type and has its fields at version 0.
    key_bytes = encode_versioned(key_schema, 0, key, prefix=record_type)
    if value is None:
        return key_bytes, None
    if not isinstance(value, value_cls):
        raise ValueError(f"{type(key).__name__} with a {type(value).__name__}")
    return key_bytes, encode_versioned(value_schema, CONSUMER_GROUP_VALUE_VERSION, value)


def serialize_value(value: RecordValue, version: int) -> bytes:
    """A value at a chosen version (tests, and tools that write older formats)."""
    schema: Schema
    if isinstance(value, OffsetCommitValue):
        schema = _OFFSET_COMMIT_VALUE
    elif isinstance(value, GroupMetadataValue):
        schema = _GROUP_METADATA_VALUE
    else:
        schema = _VALUE_SCHEMA_OF[type(value)]
    return encode_versioned(schema, version, value)


def deserialize(key: bytes | None, value: bytes | None) -> CoordinatorRecord | None:
    """Decode a record read back from the log; None for record types strom does not keep
    (Kafka 4.0's share-group partition metadata, type 9, and streams-group records, 17 and
    up). RecordFormatError when it is malformed."""
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
    schemas = _GROUP_SCHEMAS.get(version)
    if schemas is not None:
        _key_cls, key_schema, _value_cls, value_schema = schemas
        parsed_key = decode_versioned(key_schema, key, version=0)
        parsed_value = None if value is None else decode_versioned(value_schema, value)
        return CoordinatorRecord(parsed_key, parsed_value)
    return None


def encode_all(records: Sequence[CoordinatorRecord]) -> list[tuple[bytes, bytes | None]]:
    return [serialize(record) for record in records]


__all__ = [
    "OFFSETS_TOPIC",
    "ClassicMemberMetadata",
    "ClassicProtocol",
    "ConsumerGroupCurrentMemberAssignmentKey",
    "ConsumerGroupCurrentMemberAssignmentValue",
    "ConsumerGroupMemberMetadataKey",
    "ConsumerGroupMemberMetadataValue",
    "ConsumerGroupMetadataKey",
    "ConsumerGroupMetadataValue",
    "ConsumerGroupPartitionMetadataKey",
    "ConsumerGroupPartitionMetadataValue",
    "ConsumerGroupRecordKey",
    "ConsumerGroupRecordValue",
    "ConsumerGroupRegularExpressionKey",
    "ConsumerGroupRegularExpressionValue",
    "ConsumerGroupTargetAssignmentMemberKey",
    "ConsumerGroupTargetAssignmentMemberValue",
    "ConsumerGroupTargetAssignmentMetadataKey",
    "ConsumerGroupTargetAssignmentMetadataValue",
    "CoordinatorRecord",
    "GroupMetadataKey",
    "GroupMetadataValue",
    "MemberMetadata",
    "OffsetCommitKey",
    "OffsetCommitValue",
    "PartitionMetadata",
    "RecordFormatError",
    "RecordKey",
    "RecordValue",
    "ShareGroupCurrentMemberAssignmentKey",
    "ShareGroupCurrentMemberAssignmentValue",
    "ShareGroupMemberMetadataKey",
    "ShareGroupMemberMetadataValue",
    "ShareGroupMetadataKey",
    "ShareGroupMetadataValue",
    "ShareGroupRecordKey",
    "ShareGroupRecordValue",
    "ShareGroupStatePartitionMetadataKey",
    "ShareGroupStatePartitionMetadataValue",
    "ShareGroupTargetAssignmentMemberKey",
    "ShareGroupTargetAssignmentMemberValue",
    "ShareGroupTargetAssignmentMetadataKey",
    "ShareGroupTargetAssignmentMetadataValue",
    "TopicInfo",
    "TopicMetadata",
    "TopicPartitions",
    "TopicPartitionsInfo",
    "deserialize",
    "encode_all",
    "java_string_hashcode",
    "partition_for",
    "serialize",
    "serialize_value",
]
