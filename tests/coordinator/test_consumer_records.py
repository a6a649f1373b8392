"""KIP-848 consumer-group records of __consumer_offsets (record types 3-8 and 16), in the
layouts of Kafka's group-coordinator message specs (ConsumerGroup*Key / *Value.json)."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.records import (
    ClassicMemberMetadata,
    ClassicProtocol,
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataKey,
    ConsumerGroupPartitionMetadataValue,
    ConsumerGroupRegularExpressionKey,
    ConsumerGroupRegularExpressionValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
    CoordinatorRecord,
    PartitionMetadata,
    RecordFormatError,
    TopicMetadata,
    TopicPartitions,
    deserialize,
    serialize,
)
from tests.coordinator.record_bytes import assert_key_and_tombstone, assert_round_trip, compact

TOPIC_A = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
TOPIC_B = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
CLASSIC = ClassicMemberMetadata(45_000, (ClassicProtocol("range", b"\x01\x02"), ClassicProtocol("cooperative-sticky", b"")))
MEMBER = ConsumerGroupMemberMetadataValue(
    "instance-1", "rack-a", "client", "/10.0.0.1", ("a", "b"), "t.*", 30_000, "uniform"
)
CURRENT = ConsumerGroupCurrentMemberAssignmentValue(
    10, 9, 2, (TopicPartitions(TOPIC_A, (0, 2)), TopicPartitions(TOPIC_B, ())), (TopicPartitions(TOPIC_B, (1,)),)
)

RECORDS = [
    CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5)),
    CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5, -1234567890123)),
    CoordinatorRecord.consumer_group_partition_metadata(
        "g",
        ConsumerGroupPartitionMetadataValue(
            (
                TopicMetadata(TOPIC_A, "a", 2, (PartitionMetadata(0, ("r1", "r2")), PartitionMetadata(1, ()))),
                TopicMetadata(TOPIC_B, "b", 1, ()),
            )
        ),
    ),
    CoordinatorRecord.consumer_group_member_metadata("g", "m-1", MEMBER),
    CoordinatorRecord.consumer_group_member_metadata(
        "g", "m-2", ConsumerGroupMemberMetadataValue(None, None, "c", "/h", (), None, -1, None, CLASSIC)
    ),
    CoordinatorRecord.consumer_group_target_assignment_metadata("g", ConsumerGroupTargetAssignmentMetadataValue(7)),
    CoordinatorRecord.consumer_group_target_assignment_member(
        "g", "m-1", ConsumerGroupTargetAssignmentMemberValue((TopicPartitions(TOPIC_A, (0, 1, 2)),))
    ),
    CoordinatorRecord.consumer_group_target_assignment_member("g", "m-1", ConsumerGroupTargetAssignmentMemberValue(())),
    CoordinatorRecord.consumer_group_current_member_assignment("g", "m-1", CURRENT),
    CoordinatorRecord.consumer_group_regular_expression(
        "g", "t.*", ConsumerGroupRegularExpressionValue(("t1", "t2"), 42, 1_700_000_000_000)
    ),
]
KEYS_AND_TYPES = [
    (ConsumerGroupMetadataKey("g"), 3),
    (ConsumerGroupPartitionMetadataKey("g"), 4),
    (ConsumerGroupMemberMetadataKey("g", "m-1"), 5),
    (ConsumerGroupTargetAssignmentMetadataKey("g"), 6),
    (ConsumerGroupTargetAssignmentMemberKey("g", "m-1"), 7),
    (ConsumerGroupCurrentMemberAssignmentKey("g", "m-1"), 8),
    (ConsumerGroupRegularExpressionKey("g", "t.*"), 16),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r.value).__name__)
def test_round_trip(record: CoordinatorRecord) -> None:
    assert_round_trip(record)


@pytest.mark.parametrize(("key", "record_type"), KEYS_AND_TYPES, ids=lambda k: type(k).__name__)
def test_keys_and_tombstones(key: object, record_type: int) -> None:
    assert_key_and_tombstone(key, record_type)


def test_metadata_value_bytes_with_and_without_hash() -> None:
    key, value = serialize(CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5)))
    assert key == b"\x00\x03" + b"\x00\x01g"
    # Version 0, epoch; the default MetadataHash (0) is not written: an empty tag section.
    assert value == b"\x00\x00" + struct.pack(">i", 5) + b"\x00"
    _, value = serialize(CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5, 0x0102030405060708)))
    # One tagged field: tag 0, size 8, the int64.
    assert value == b"\x00\x00" + struct.pack(">i", 5) + b"\x01" + b"\x00\x08" + bytes(range(1, 9))
    assert deserialize(key, value) == CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5, 0x0102030405060708))


def test_current_member_assignment_bytes() -> None:
    value = ConsumerGroupCurrentMemberAssignmentValue(10, 9, 2, (TopicPartitions(TOPIC_A, (0, 2)),), ())
    key, raw = serialize(CoordinatorRecord.consumer_group_current_member_assignment("g", "m1", value))
    assert key == b"\x00\x08" + b"\x00\x01g" + b"\x00\x02m1"
    expected = (
        b"\x00\x00"  # value version 0
        + struct.pack(">iib", 10, 9, 2)  # MemberEpoch, PreviousMemberEpoch, State
        + b"\x02"  # AssignedPartitions: compact array of 1
        + TOPIC_A.bytes  # TopicId: 16 raw bytes
        + b"\x03" + struct.pack(">ii", 0, 2)  # Partitions: compact array of 2
        + b"\x00"  # the TopicPartitions struct's tag section
        + b"\x01"  # PartitionsPendingRevocation: empty compact array
        + b"\x00"  # the value's tag section
    )
    assert raw == expected
    assert deserialize(key, expected) == CoordinatorRecord.consumer_group_current_member_assignment("g", "m1", value)


def test_member_metadata_bytes_with_classic_metadata() -> None:
    classic = ClassicMemberMetadata(45_000, (ClassicProtocol("range", b"\x01\x02"),))
    value = ConsumerGroupMemberMetadataValue(None, "r", "c", "/h", ("a", "b"), None, 30_000, "uniform", classic)
    key, raw = serialize(CoordinatorRecord.consumer_group_member_metadata("g", "m1", value))
    assert key == b"\x00\x05" + b"\x00\x01g" + b"\x00\x02m1"
    classic_bytes = (
        b"\x01"  # non-null (a tagged nullable struct is marked with a uvarint)
        + struct.pack(">i", 45_000)
        + b"\x02" + compact(b"range") + compact(b"\x01\x02") + b"\x00"  # one protocol + its tags
        + b"\x00"  # ClassicMemberMetadata's tag section
    )
    untagged = (
        b"\x00\x00"
        + b"\x00"  # InstanceId null
        + compact(b"r")
        + compact(b"c")
        + compact(b"/h")
        + b"\x03" + compact(b"a") + compact(b"b")  # SubscribedTopicNames
        + b"\x00"  # SubscribedTopicRegex null
        + struct.pack(">i", 30_000)
        + compact(b"uniform")
    )
    assert raw == untagged + b"\x01" + b"\x00" + bytes([len(classic_bytes)]) + classic_bytes
    assert deserialize(key, raw) == CoordinatorRecord.consumer_group_member_metadata("g", "m1", value)
    # Without classic metadata (a consumer-protocol member) the tag section is empty.
    _, raw = serialize(CoordinatorRecord.consumer_group_member_metadata("g", "m1", ConsumerGroupMemberMetadataValue(
        None, "r", "c", "/h", ("a", "b"), None, 30_000, "uniform"
    )))
    assert raw == untagged + b"\x00"


def test_partition_metadata_value_is_read() -> None:
    # Kafka 4.0 wrote type 4 after every metadata refresh; built here by hand.
    raw = (
        b"\x00\x00"
        + b"\x02"  # Topics: 1
        + TOPIC_B.bytes + compact(b"orders") + struct.pack(">i", 2)
        + b"\x03"  # PartitionMetadata: 2
        + struct.pack(">i", 0) + b"\x02" + compact(b"r1") + b"\x00"
        + struct.pack(">i", 1) + b"\x01" + b"\x00"
        + b"\x00"  # TopicMetadata tags
        + b"\x00"  # value tags
    )
    record = deserialize(b"\x00\x04" + b"\x00\x01g", raw)
    expected = ConsumerGroupPartitionMetadataValue(
        (TopicMetadata(TOPIC_B, "orders", 2, (PartitionMetadata(0, ("r1",)), PartitionMetadata(1, ()))),)
    )
    assert record == CoordinatorRecord.consumer_group_partition_metadata("g", expected)


def test_regular_expression_bytes() -> None:
    value = ConsumerGroupRegularExpressionValue(("t1",), 42, 1000)
    key, raw = serialize(CoordinatorRecord.consumer_group_regular_expression("g", "t.*", value))
    assert key == b"\x00\x10" + b"\x00\x01g" + b"\x00\x03t.*"
    assert raw == b"\x00\x00" + b"\x02" + compact(b"t1") + struct.pack(">qq", 42, 1000) + b"\x00"


def test_target_assignment_bytes() -> None:
    _, raw = serialize(CoordinatorRecord.consumer_group_target_assignment_metadata("g", ConsumerGroupTargetAssignmentMetadataValue(3)))
    assert raw == b"\x00\x00" + struct.pack(">i", 3) + b"\x00"
    _, raw = serialize(CoordinatorRecord.consumer_group_target_assignment_member(
        "g", "m", ConsumerGroupTargetAssignmentMemberValue((TopicPartitions(TOPIC_A, (4,)),))
    ))
    assert raw == b"\x00\x00" + b"\x02" + TOPIC_A.bytes + b"\x02" + struct.pack(">i", 4) + b"\x00" + b"\x00"


def test_unknown_tags_are_skipped() -> None:
    key = b"\x00\x03\x00\x01g"
    # Known tag 0 (the hash) and an unknown tag 5 of 3 bytes.
    raw = b"\x00\x00" + struct.pack(">i", 5) + b"\x02" + b"\x00\x08" + struct.pack(">q", 77) + b"\x05\x03xyz"
    assert deserialize(key, raw) == CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5, 77))
    # Only an unknown tag: the hash keeps its default.
    raw = b"\x00\x00" + struct.pack(">i", 5) + b"\x01" + b"\x07\x00"
    assert deserialize(key, raw) == CoordinatorRecord.consumer_group_metadata("g", ConsumerGroupMetadataValue(5))
    # An unknown tag in a nested struct (TopicPartitions) and in ClassicMemberMetadata.
    value = ConsumerGroupTargetAssignmentMemberValue((TopicPartitions(TOPIC_A, (4,)),))
    nested = b"\x00\x00" + b"\x02" + TOPIC_A.bytes + b"\x02" + struct.pack(">i", 4) + b"\x01\x09\x01z" + b"\x00"
    assert deserialize(b"\x00\x07\x00\x01g\x00\x01m", nested) == CoordinatorRecord.consumer_group_target_assignment_member("g", "m", value)
    member = ConsumerGroupMemberMetadataValue(None, None, "c", "h", (), None, 1, None, ClassicMemberMetadata(5, ()))
    key5, member_raw = serialize(CoordinatorRecord.consumer_group_member_metadata("g", "m", member))
    assert member_raw is not None and member_raw.endswith(b"\x01\x00\x07\x01" + struct.pack(">i", 5) + b"\x01\x00")
    patched = member_raw[:-9] + b"\x00\x0b\x01" + struct.pack(">i", 5) + b"\x01" + b"\x01\x03\x02ab"
    assert deserialize(key5, patched) == CoordinatorRecord.consumer_group_member_metadata("g", "m", member)


def test_tagged_field_errors() -> None:
    key = b"\x00\x03\x00\x01g"
    body = b"\x00\x00" + struct.pack(">i", 5)
    with pytest.raises(RecordFormatError):  # the hash claims 4 bytes but needs 8
        deserialize(key, body + b"\x01\x00\x04" + struct.pack(">q", 1))
    with pytest.raises(RecordFormatError):  # a tag that runs past the record
        deserialize(key, body + b"\x01\x05\x09ab")
    with pytest.raises(RecordFormatError):  # no tag section
        deserialize(key, body)
    with pytest.raises(RecordFormatError):  # value version 1 does not exist
        deserialize(key, b"\x00\x01" + struct.pack(">i", 5) + b"\x00")
    # A null ClassicMemberMetadata written explicitly (marker 0) reads as None.
    member = ConsumerGroupMemberMetadataValue(None, None, "c", "h", (), None, 1, None)
    key5, raw = serialize(CoordinatorRecord.consumer_group_member_metadata("g", "m", member))
    assert raw is not None
    assert deserialize(key5, raw[:-1] + b"\x01\x00\x01\x00") == CoordinatorRecord(ConsumerGroupMemberMetadataKey("g", "m"), member)


def test_mismatched_key_and_value_are_refused() -> None:
    with pytest.raises(ValueError):
        serialize(CoordinatorRecord(ConsumerGroupMetadataKey("g"), ConsumerGroupTargetAssignmentMetadataValue(1)))
    with pytest.raises(ValueError):  # ClientId is not nullable
        serialize(CoordinatorRecord.consumer_group_member_metadata(
            "g", "m", ConsumerGroupMemberMetadataValue(None, None, None, "h", (), None, 1, None)  # type: ignore[arg-type]
        ))


# --- property: every record survives a round trip --------------------------------------------

_text = st.text(max_size=12)
_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
_uuid = st.uuids()
_names = st.lists(_text, max_size=4).map(tuple)
_partitions = st.lists(st.integers(0, 2**31 - 1), max_size=5).map(tuple)
_topic_partitions = st.lists(st.builds(TopicPartitions, _uuid, _partitions), max_size=3).map(tuple)
_classic = st.builds(
    ClassicMemberMetadata,
    _int32,
    st.lists(st.builds(ClassicProtocol, _text, st.binary(max_size=8)), max_size=3).map(tuple),
)
_records = st.one_of(
    st.builds(CoordinatorRecord.consumer_group_metadata, _text, st.none() | st.builds(ConsumerGroupMetadataValue, _int32, _int64)),
    st.builds(
        CoordinatorRecord.consumer_group_partition_metadata,
        _text,
        st.none()
        | st.builds(
            ConsumerGroupPartitionMetadataValue,
            st.lists(
                st.builds(
                    TopicMetadata,
                    _uuid,
                    _text,
                    _int32,
                    st.lists(st.builds(PartitionMetadata, _int32, _names), max_size=3).map(tuple),
                ),
                max_size=3,
            ).map(tuple),
        ),
    ),
    st.builds(
        CoordinatorRecord.consumer_group_member_metadata,
        _text,
        _text,
        st.none()
        | st.builds(
            ConsumerGroupMemberMetadataValue,
            st.none() | _text,
            st.none() | _text,
            _text,
            _text,
            _names,
            st.none() | _text,
            _int32,
            st.none() | _text,
            st.none() | _classic,
        ),
    ),
    st.builds(
        CoordinatorRecord.consumer_group_target_assignment_metadata,
        _text,
        st.none() | st.builds(ConsumerGroupTargetAssignmentMetadataValue, _int32),
    ),
    st.builds(
        CoordinatorRecord.consumer_group_target_assignment_member,
        _text,
        _text,
        st.none() | st.builds(ConsumerGroupTargetAssignmentMemberValue, _topic_partitions),
    ),
    st.builds(
        CoordinatorRecord.consumer_group_current_member_assignment,
        _text,
        _text,
        st.none()
        | st.builds(
            ConsumerGroupCurrentMemberAssignmentValue,
            _int32,
            _int32,
            st.integers(-128, 127),
            _topic_partitions,
            _topic_partitions,
        ),
    ),
    st.builds(
        CoordinatorRecord.consumer_group_regular_expression,
        _text,
        _text,
        st.none() | st.builds(ConsumerGroupRegularExpressionValue, _names, _int64, _int64),
    ),
)


@settings(max_examples=300, deadline=None, database=None)
@given(_records)
def test_property_round_trip(record: CoordinatorRecord) -> None:
    assert deserialize(*serialize(record)) == record
