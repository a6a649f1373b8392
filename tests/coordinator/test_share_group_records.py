"""KIP-932 share-group records of __consumer_offsets (record types 10-15), in the layouts of
Kafka 4.2's group-coordinator message specs (ShareGroup*Key / *Value.json)."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.records import (
    ConsumerGroupMetadataValue,
    CoordinatorRecord,
    RecordFormatError,
    ShareGroupCurrentMemberAssignmentKey,
    ShareGroupCurrentMemberAssignmentValue,
    ShareGroupMemberMetadataKey,
    ShareGroupMemberMetadataValue,
    ShareGroupMetadataKey,
    ShareGroupMetadataValue,
    ShareGroupStatePartitionMetadataKey,
    ShareGroupStatePartitionMetadataValue,
    ShareGroupTargetAssignmentMemberKey,
    ShareGroupTargetAssignmentMemberValue,
    ShareGroupTargetAssignmentMetadataKey,
    ShareGroupTargetAssignmentMetadataValue,
    TopicInfo,
    TopicPartitions,
    TopicPartitionsInfo,
    deserialize,
    serialize,
)
from tests.coordinator.record_bytes import assert_key_and_tombstone, assert_round_trip, compact

TOPIC_A = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
TOPIC_B = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
STATE_METADATA = ShareGroupStatePartitionMetadataValue(
    (TopicPartitionsInfo(TOPIC_A, "a", (0, 1)),),
    (TopicPartitionsInfo(TOPIC_B, "b", (2,)), TopicPartitionsInfo(TOPIC_A, "a", ())),
    (TopicInfo(TOPIC_B, "gone"),),
)

RECORDS = [
    CoordinatorRecord.share_group_member_metadata(
        "sg", "m-1", ShareGroupMemberMetadataValue("rack-a", "client", "/10.0.0.1", ("a", "b"))
    ),
    CoordinatorRecord.share_group_member_metadata("sg", "m-2", ShareGroupMemberMetadataValue(None, "c", "/h", ())),
    CoordinatorRecord.share_group_metadata("sg", ShareGroupMetadataValue(5)),
    CoordinatorRecord.share_group_metadata("sg", ShareGroupMetadataValue(5, -1234567890123)),
    CoordinatorRecord.share_group_target_assignment_metadata("sg", ShareGroupTargetAssignmentMetadataValue(7)),
    CoordinatorRecord.share_group_target_assignment_member(
        "sg", "m-1", ShareGroupTargetAssignmentMemberValue((TopicPartitions(TOPIC_A, (0, 1, 2)),))
    ),
    CoordinatorRecord.share_group_target_assignment_member("sg", "m-1", ShareGroupTargetAssignmentMemberValue(())),
    CoordinatorRecord.share_group_current_member_assignment(
        "sg",
        "m-1",
        ShareGroupCurrentMemberAssignmentValue(
            10, 9, 0, (TopicPartitions(TOPIC_A, (0, 2)), TopicPartitions(TOPIC_B, ()))
        ),
    ),
    CoordinatorRecord.share_group_state_partition_metadata("sg", STATE_METADATA),
    CoordinatorRecord.share_group_state_partition_metadata("sg", ShareGroupStatePartitionMetadataValue((), (), ())),
]
KEYS_AND_TYPES = [
    (ShareGroupMemberMetadataKey("sg", "m-1"), 10),
    (ShareGroupMetadataKey("sg"), 11),
    (ShareGroupTargetAssignmentMetadataKey("sg"), 12),
    (ShareGroupTargetAssignmentMemberKey("sg", "m-1"), 13),
    (ShareGroupCurrentMemberAssignmentKey("sg", "m-1"), 14),
    (ShareGroupStatePartitionMetadataKey("sg"), 15),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r.value).__name__)
def test_round_trip(record: CoordinatorRecord) -> None:
    assert_round_trip(record)


@pytest.mark.parametrize(("key", "record_type"), KEYS_AND_TYPES, ids=lambda k: type(k).__name__)
def test_keys_and_tombstones(key: object, record_type: int) -> None:
    assert_key_and_tombstone(key, record_type)


def test_member_metadata_bytes() -> None:
    value = ShareGroupMemberMetadataValue("r", "c", "/h", ("a", "b"))
    key, raw = serialize(CoordinatorRecord.share_group_member_metadata("g", "m1", value))
    assert key == b"\x00\x0a" + b"\x00\x01g" + b"\x00\x02m1"
    assert raw == (
        b"\x00\x00"  # value version 0
        + compact(b"r")  # RackId
        + compact(b"c")  # ClientId
        + compact(b"/h")  # ClientHost
        + b"\x03" + compact(b"a") + compact(b"b")  # SubscribedTopicNames: compact array of 2
        + b"\x00"  # the value's tag section
    )
    _, raw = serialize(CoordinatorRecord.share_group_member_metadata("g", "m1", ShareGroupMemberMetadataValue(None, "c", "/h", ())))
    assert raw == b"\x00\x00" + b"\x00" + compact(b"c") + compact(b"/h") + b"\x01" + b"\x00"  # null rack: 0


def test_metadata_hash_is_a_regular_field() -> None:
    # Unlike ConsumerGroupMetadataValue (type 3), MetadataHash is not tagged in type 11: it is
    # always written, right after the epoch, even when 0.
    key, raw = serialize(CoordinatorRecord.share_group_metadata("g", ShareGroupMetadataValue(5)))
    assert key == b"\x00\x0b" + b"\x00\x01g"
    assert raw == b"\x00\x00" + struct.pack(">iq", 5, 0) + b"\x00"
    _, raw = serialize(CoordinatorRecord.share_group_metadata("g", ShareGroupMetadataValue(5, 0x0102030405060708)))
    assert raw == b"\x00\x00" + struct.pack(">i", 5) + bytes(range(1, 9)) + b"\x00"
    # An epoch alone (a type-3 value without the hash) does not decode as type 11.
    with pytest.raises(RecordFormatError):
        deserialize(key, b"\x00\x00" + struct.pack(">i", 5) + b"\x00")


def test_target_assignment_bytes() -> None:
    key, raw = serialize(CoordinatorRecord.share_group_target_assignment_metadata("g", ShareGroupTargetAssignmentMetadataValue(3)))
    assert key == b"\x00\x0c" + b"\x00\x01g"
    assert raw == b"\x00\x00" + struct.pack(">i", 3) + b"\x00"
    key, raw = serialize(CoordinatorRecord.share_group_target_assignment_member(
        "g", "m", ShareGroupTargetAssignmentMemberValue((TopicPartitions(TOPIC_A, (4,)),))
    ))
    assert key == b"\x00\x0d" + b"\x00\x01g" + b"\x00\x01m"
    assert raw == b"\x00\x00" + b"\x02" + TOPIC_A.bytes + b"\x02" + struct.pack(">i", 4) + b"\x00" + b"\x00"


def test_current_member_assignment_bytes() -> None:
    value = ShareGroupCurrentMemberAssignmentValue(10, 9, 0, (TopicPartitions(TOPIC_A, (0, 2)),))
    key, raw = serialize(CoordinatorRecord.share_group_current_member_assignment("g", "m1", value))
    assert key == b"\x00\x0e" + b"\x00\x01g" + b"\x00\x02m1"
    expected = (
        b"\x00\x00"  # value version 0
        + struct.pack(">iib", 10, 9, 0)  # MemberEpoch, PreviousMemberEpoch, State
        + b"\x02"  # AssignedPartitions: compact array of 1
        + TOPIC_A.bytes  # TopicId: 16 raw bytes
        + b"\x03" + struct.pack(">ii", 0, 2)  # Partitions: compact array of 2
        + b"\x00"  # the TopicPartitions struct's tag section
        + b"\x00"  # the value's tag section (no PartitionsPendingRevocation, unlike type 8)
    )
    assert raw == expected
    assert deserialize(key, expected) == CoordinatorRecord.share_group_current_member_assignment("g", "m1", value)


def test_state_partition_metadata_bytes() -> None:
    key, raw = serialize(CoordinatorRecord.share_group_state_partition_metadata("g", STATE_METADATA))
    assert key == b"\x00\x0f" + b"\x00\x01g"
    expected = (
        b"\x00\x00"
        # InitializingTopics: [TopicPartitionsInfo] of 1
        + b"\x02" + TOPIC_A.bytes + compact(b"a") + b"\x03" + struct.pack(">ii", 0, 1) + b"\x00"
        # InitializedTopics: 2
        + b"\x03"
        + TOPIC_B.bytes + compact(b"b") + b"\x02" + struct.pack(">i", 2) + b"\x00"
        + TOPIC_A.bytes + compact(b"a") + b"\x01" + b"\x00"
        # DeletingTopics: [TopicInfo] of 1
        + b"\x02" + TOPIC_B.bytes + compact(b"gone") + b"\x00"
        + b"\x00"  # the value's tag section
    )
    assert raw == expected
    assert deserialize(key, expected) == CoordinatorRecord.share_group_state_partition_metadata("g", STATE_METADATA)


def test_unknown_tags_are_skipped() -> None:
    key = b"\x00\x0c\x00\x01g"
    raw = b"\x00\x00" + struct.pack(">i", 3) + b"\x02" + b"\x00\x02ab" + b"\x07\x00"
    assert deserialize(key, raw) == CoordinatorRecord.share_group_target_assignment_metadata(
        "g", ShareGroupTargetAssignmentMetadataValue(3)
    )
    # In a nested TopicInfo struct too.
    value = ShareGroupStatePartitionMetadataValue((), (), (TopicInfo(TOPIC_A, "t"),))
    nested = b"\x00\x00" + b"\x01" + b"\x01" + b"\x02" + TOPIC_A.bytes + compact(b"t") + b"\x01\x04\x01z" + b"\x00"
    assert deserialize(b"\x00\x0f\x00\x01g", nested) == CoordinatorRecord.share_group_state_partition_metadata("g", value)


def test_malformed_share_records() -> None:
    with pytest.raises(RecordFormatError):  # the epoch without the (untagged) hash
        deserialize(b"\x00\x0b\x00\x01g", b"\x00\x00" + struct.pack(">i", 5) + b"\x00")
    with pytest.raises(RecordFormatError):  # a member key without its member id
        deserialize(b"\x00\x0a\x00\x01g", None)
    with pytest.raises(RecordFormatError):  # value version 1 does not exist
        deserialize(b"\x00\x0c\x00\x01g", b"\x00\x01" + struct.pack(">i", 3) + b"\x00")
    with pytest.raises(RecordFormatError):  # ClientId is not nullable
        deserialize(b"\x00\x0a\x00\x01g\x00\x01m", b"\x00\x00" + b"\x00" + b"\x00" + compact(b"h") + b"\x01\x00")
    with pytest.raises(ValueError):
        serialize(CoordinatorRecord(ShareGroupMetadataKey("g"), ShareGroupTargetAssignmentMetadataValue(1)))
    with pytest.raises(ValueError):  # a consumer-group value under a share-group key
        serialize(CoordinatorRecord(ShareGroupMetadataKey("g"), ConsumerGroupMetadataValue(1)))


def test_other_record_types_are_still_skipped() -> None:
    # Kafka 4.0's ShareGroupPartitionMetadata (9) and the streams-group records (17+).
    for record_type in (9, 17, 18, 23):
        assert deserialize(struct.pack(">h", record_type) + b"\x00\x01g", b"\x00\x00") is None


# --- property: every record survives a round trip --------------------------------------------

_text = st.text(max_size=12)
_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
_uuid = st.uuids()
_names = st.lists(_text, max_size=4).map(tuple)
_partitions = st.lists(st.integers(0, 2**31 - 1), max_size=5).map(tuple)
_topic_partitions = st.lists(st.builds(TopicPartitions, _uuid, _partitions), max_size=3).map(tuple)
_topic_partitions_info = st.lists(st.builds(TopicPartitionsInfo, _uuid, _text, _partitions), max_size=3).map(tuple)
_records = st.one_of(
    st.builds(
        CoordinatorRecord.share_group_member_metadata,
        _text,
        _text,
        st.none() | st.builds(ShareGroupMemberMetadataValue, st.none() | _text, _text, _text, _names),
    ),
    st.builds(CoordinatorRecord.share_group_metadata, _text, st.none() | st.builds(ShareGroupMetadataValue, _int32, _int64)),
    st.builds(
        CoordinatorRecord.share_group_target_assignment_metadata,
        _text,
        st.none() | st.builds(ShareGroupTargetAssignmentMetadataValue, _int32),
    ),
    st.builds(
        CoordinatorRecord.share_group_target_assignment_member,
        _text,
        _text,
        st.none() | st.builds(ShareGroupTargetAssignmentMemberValue, _topic_partitions),
    ),
    st.builds(
        CoordinatorRecord.share_group_current_member_assignment,
        _text,
        _text,
        st.none()
        | st.builds(ShareGroupCurrentMemberAssignmentValue, _int32, _int32, st.integers(-128, 127), _topic_partitions),
    ),
    st.builds(
        CoordinatorRecord.share_group_state_partition_metadata,
        _text,
        st.none()
        | st.builds(
            ShareGroupStatePartitionMetadataValue,
            _topic_partitions_info,
            _topic_partitions_info,
            st.lists(st.builds(TopicInfo, _uuid, _text), max_size=3).map(tuple),
        ),
    ),
)


@settings(max_examples=300, deadline=None, database=None)
@given(_records)
def test_property_round_trip(record: CoordinatorRecord) -> None:
    assert deserialize(*serialize(record)) == record
