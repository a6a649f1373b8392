"""__consumer_offsets record formats and the partition of a group."""

from __future__ import annotations

import struct

import pytest

from strom.coordinator.records import (
    CoordinatorRecord,
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    RecordFormatError,
    deserialize,
    java_string_hashcode,
    partition_for,
    serialize,
    serialize_value,
)

MEMBER = MemberMetadata("m-1", "instance-1", "client", "/127.0.0.1", 30000, 10000, b"sub", b"assign")
GROUP = GroupMetadataValue("consumer", 3, "range", "m-1", 1_700_000_000_000, (MEMBER,))


def test_java_string_hashcode_matches_java() -> None:
    assert java_string_hashcode("") == 0
    assert java_string_hashcode("a") == 97
    assert java_string_hashcode("hello") == 99162322
    assert java_string_hashcode("Aa") == java_string_hashcode("BB")  # the classic collision
    assert -(2**31) <= java_string_hashcode("x" * 1000) < 2**31
    # Non-BMP characters hash as two UTF-16 code units, as in Java.
    assert java_string_hashcode("\U0001f600") == 0xD83D * 31 + 0xDE00


def test_partition_for_uses_kafka_abs() -> None:
    # "polygenelubricants".hashCode() is Integer.MIN_VALUE: Kafka's Utils.abs maps it to 0.
    assert java_string_hashcode("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50
    negative = "group-with-negative-hash-9"
    h = java_string_hashcode(negative)
    assert partition_for(negative, 50) == abs(h) % 50


def test_offset_commit_record_layout() -> None:
    record = CoordinatorRecord.offset_commit("g", "t", 3, OffsetCommitValue(42, 7, "meta", 1000))
    key, value = serialize(record)
    # Key version 1 (OffsetCommitKey), then group, topic (int16-length strings), partition.
    assert key == struct.pack(">h", 1) + b"\x00\x01g" + b"\x00\x01t" + struct.pack(">i", 3)
    # Value version 3: offset, leader epoch, metadata, commit timestamp.
    assert value == struct.pack(">hqi", 3, 42, 7) + b"\x00\x04meta" + struct.pack(">q", 1000)
    assert deserialize(key, value) == record


def test_offset_commit_with_expiry_is_written_as_version_1() -> None:
    record = CoordinatorRecord.offset_commit("g", "t", 0, OffsetCommitValue(1, -1, "", 1000, 5000))
    key, value = serialize(record)
    assert value is not None and value[:2] == b"\x00\x01"
    assert deserialize(key, value) == record


@pytest.mark.parametrize("version", range(0, 5))
def test_offset_commit_value_every_version(version: int) -> None:
    value = OffsetCommitValue(9, 4 if version >= 3 else -1, "m", 77, 88 if version == 1 else -1)
    raw = serialize_value(value, version)
    key, _ = serialize(CoordinatorRecord.offset_commit("g", "t", 0, value))
    assert deserialize(key, raw) == CoordinatorRecord.offset_commit("g", "t", 0, value)


def test_legacy_offset_commit_key_version_0() -> None:
    key = struct.pack(">h", 0) + b"\x00\x01g" + b"\x00\x01t" + struct.pack(">i", 1)
    record = deserialize(key, None)
    assert record == CoordinatorRecord(OffsetCommitKey("g", "t", 1), None)


def test_group_metadata_record_layout() -> None:
    record = CoordinatorRecord.group_metadata("g", GROUP)
    key, value = serialize(record)
    assert key == struct.pack(">h", 2) + b"\x00\x01g"
    assert value is not None and value[:2] == b"\x00\x03"
    assert deserialize(key, value) == record
    assert deserialize(key, None) == CoordinatorRecord(GroupMetadataKey("g"), None)


@pytest.mark.parametrize("version", range(0, 5))
def test_group_metadata_value_every_version(version: int) -> None:
    member = MEMBER
    if version < 3:
        member = MemberMetadata(member.member_id, None, *vars_of(member)[2:])
    if version == 0:  # no rebalance timeout: the session timeout is read back
        member = MemberMetadata(*vars_of(member)[:4], member.session_timeout, *vars_of(member)[5:])
    expected = GroupMetadataValue("consumer", 3, "range", "m-1", 1_700_000_000_000 if version >= 2 else -1, (member,))
    raw = serialize_value(GROUP, version)
    assert deserialize(struct.pack(">h", 2) + b"\x00\x01g", raw) == CoordinatorRecord.group_metadata("g", expected)


def vars_of(member: MemberMetadata) -> list:
    return [getattr(member, name) for name in member.__slots__]  # type: ignore[attr-defined]


def test_flexible_value_skips_unknown_tagged_fields() -> None:
    raw = serialize_value(OffsetCommitValue(1, 2, "x", 3), 4)
    # Replace the empty tagged-field section with one unknown tag (tag 9, 2 bytes).
    tagged = raw[:-1] + b"\x01\x09\x02ab"
    key, _ = serialize(CoordinatorRecord.offset_commit("g", "t", 0, None))
    assert deserialize(key, tagged) == CoordinatorRecord.offset_commit("g", "t", 0, OffsetCommitValue(1, 2, "x", 3))


def test_unknown_record_types_are_skipped_and_garbage_rejected() -> None:
    # Share-group (9-15) and streams-group (17+) records are not kept.
    for record_type in (9, 17, 18, 23):
        assert deserialize(struct.pack(">h", record_type) + b"\x00\x01g", b"\x00\x00") is None
    with pytest.raises(RecordFormatError):  # a KIP-848 consumer-group value without its epoch
        deserialize(struct.pack(">h", 3) + b"\x00\x01g", b"\x00\x00")
    with pytest.raises(RecordFormatError):
        deserialize(b"\x00", None)
    with pytest.raises(RecordFormatError):
        deserialize(struct.pack(">h", 2) + b"\x00\x01g", b"\x00\x03\x00")
    with pytest.raises(RecordFormatError):
        deserialize(struct.pack(">h", 1) + b"\x00\x01g", b"\x00\x09" + bytes(30))
