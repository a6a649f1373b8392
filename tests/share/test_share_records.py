"""__share_group_state records (Kafka 4.2's ShareSnapshot / ShareUpdate key and value specs)
and the share coordinator's partitioning."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.share.records import (
    SHARE_STATE_TOPIC,
    PersistedBatch,
    RecordFormatError,
    ShareSnapshotKey,
    ShareSnapshotValue,
    ShareStateRecord,
    ShareUpdateKey,
    ShareUpdateValue,
    deserialize,
    kafka_uuid_string,
    partition_for,
    serialize,
    share_coordinator_key,
)

TOPIC = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
BATCHES = (PersistedBatch(100, 109, 2, 1), PersistedBatch(110, 110, 0, 3), PersistedBatch(111, 120, 4, 5))
SNAPSHOT = ShareSnapshotValue(3, 1, 7, 100, 1_700_000_000_000, 1_700_000_000_500, BATCHES)
UPDATE = ShareUpdateValue(3, 7, -1, (PersistedBatch(110, 110, 2, 3),))


def key_bytes(record_type: int, group: str, topic: uuid.UUID, partition: int) -> bytes:
    """int16 record type, then the v0 key: int16-length string, 16-byte uuid, int32."""
    raw = group.encode()
    return struct.pack(">hh", record_type, len(raw)) + raw + topic.bytes + struct.pack(">i", partition)


def batch_bytes(batch: PersistedBatch) -> bytes:
    return struct.pack(">qqbh", batch.first_offset, batch.last_offset, batch.delivery_state, batch.delivery_count) + b"\x00"


def test_topic_name() -> None:
    assert SHARE_STATE_TOPIC == "__share_group_state"


def test_snapshot_bytes() -> None:
    key, value = serialize(ShareStateRecord.snapshot("g", TOPIC, 5, SNAPSHOT))
    assert key == key_bytes(0, "g", TOPIC, 5)
    expected = (
        b"\x00\x00"  # value version 0
        + struct.pack(">iiiq", 3, 1, 7, 100)  # SnapshotEpoch, StateEpoch, LeaderEpoch, StartOffset
        + struct.pack(">qq", 1_700_000_000_000, 1_700_000_000_500)  # CreateTimestamp, WriteTimestamp
        + b"\x04"  # StateBatches: compact array of 3
        + b"".join(batch_bytes(b) for b in BATCHES)  # each with its own empty tag section
        + b"\x00"  # the value's tag section: DeliveryCompleteCount -1 (default) is not written
    )
    assert value == expected
    assert deserialize(key, expected) == ShareStateRecord(ShareSnapshotKey("g", TOPIC, 5), SNAPSHOT)
    # With DeliveryCompleteCount (Kafka 4.2, KIP-1226): tag 0, size 4, the int32.
    counted = ShareSnapshotValue(3, 1, 7, 100, 1_700_000_000_000, 1_700_000_000_500, BATCHES, 12)
    _, value = serialize(ShareStateRecord.snapshot("g", TOPIC, 5, counted))
    assert value == expected[:-1] + b"\x01" + b"\x00\x04" + struct.pack(">i", 12)
    assert deserialize(key, value) == ShareStateRecord.snapshot("g", TOPIC, 5, counted)


def test_update_bytes() -> None:
    key, value = serialize(ShareStateRecord.update("grp", TOPIC, 0, UPDATE))
    assert key == key_bytes(1, "grp", TOPIC, 0)
    expected = (
        b"\x00\x00"
        + struct.pack(">iiq", 3, 7, -1)  # SnapshotEpoch, LeaderEpoch, StartOffset (no StateEpoch)
        + b"\x02" + batch_bytes(PersistedBatch(110, 110, 2, 3))
        + b"\x00"
    )
    assert value == expected
    assert deserialize(key, value) == ShareStateRecord(ShareUpdateKey("grp", TOPIC, 0), UPDATE)
    counted = ShareUpdateValue(3, 7, -1, (), 0)  # 0 differs from the default: written
    _, value = serialize(ShareStateRecord.update("grp", TOPIC, 0, counted))
    assert value == b"\x00\x00" + struct.pack(">iiq", 3, 7, -1) + b"\x01" + b"\x01" + b"\x00\x04" + struct.pack(">i", 0)
    assert deserialize(key, value) == ShareStateRecord.update("grp", TOPIC, 0, counted)


def test_tombstones() -> None:
    record = ShareStateRecord.tombstone("g", TOPIC, 2)
    key, value = serialize(record)
    assert (key, value) == (key_bytes(0, "g", TOPIC, 2), None)
    assert deserialize(key, None) == record
    # An update key with a null value reads back as well (Kafka's serde allows it).
    update_tombstone = ShareStateRecord(ShareUpdateKey("g", TOPIC, 2), None)
    assert deserialize(*serialize(update_tombstone)) == update_tombstone


def test_tagged_fields_and_unknown_tags() -> None:
    key = key_bytes(0, "g", TOPIC, 5)
    _, plain = serialize(ShareStateRecord.snapshot("g", TOPIC, 5, SNAPSHOT))
    assert plain is not None
    # Kafka 4.1 wrote no tag: the count reads as -1.
    assert deserialize(key, plain) == ShareStateRecord.snapshot("g", TOPIC, 5, SNAPSHOT)
    # Tag 0 and an unknown tag 3 (skipped), and an unknown tag inside a batch.
    tagged = plain[:-1] + b"\x02" + b"\x00\x04" + struct.pack(">i", 9) + b"\x03\x02xy"
    record = deserialize(key, tagged)
    assert record.value == ShareSnapshotValue(3, 1, 7, 100, 1_700_000_000_000, 1_700_000_000_500, BATCHES, 9)
    one = ShareUpdateValue(3, 7, 5, (PersistedBatch(1, 2, 0, 1),))
    raw = b"\x00\x00" + struct.pack(">iiq", 3, 7, 5) + b"\x02" + struct.pack(">qqbh", 1, 2, 0, 1) + b"\x01\x07\x01z" + b"\x00"
    assert deserialize(key_bytes(1, "g", TOPIC, 5), raw) == ShareStateRecord.update("g", TOPIC, 5, one)


def test_garbage_is_rejected() -> None:
    key = key_bytes(0, "g", TOPIC, 5)
    _, value = serialize(ShareStateRecord.snapshot("g", TOPIC, 5, SNAPSHOT))
    assert value is not None
    with pytest.raises(RecordFormatError):  # no key
        deserialize(None, None)
    with pytest.raises(RecordFormatError):  # a one-byte key
        deserialize(b"\x00", None)
    with pytest.raises(RecordFormatError):  # an unknown record type
        deserialize(key_bytes(2, "g", TOPIC, 5), value)
    with pytest.raises(RecordFormatError):  # a truncated key (in the uuid)
        deserialize(key[:10], None)
    with pytest.raises(RecordFormatError):  # a truncated value
        deserialize(key, value[:30])
    with pytest.raises(RecordFormatError):  # value version 1 does not exist
        deserialize(key, b"\x00\x01" + value[2:])
    with pytest.raises(RecordFormatError):  # a value without its version
        deserialize(key, b"\x00")
    with pytest.raises(RecordFormatError):  # the tag claims 2 bytes, the int32 needs 4
        deserialize(key, value[:-1] + b"\x01\x00\x02\x00\x01")
    with pytest.raises(ValueError):  # a snapshot key with an update value
        serialize(ShareStateRecord(ShareSnapshotKey("g", TOPIC, 5), UPDATE))


def test_kafka_uuid_string() -> None:
    # Uuid.toString(): URL-safe base64 of the 16 bytes, no padding ("-" and "_", not "+" "/").
    assert kafka_uuid_string(uuid.UUID(int=0)) == "A" * 22
    assert kafka_uuid_string(TOPIC) == "ABEiM0RVZneImaq7zN3u_w"
    assert kafka_uuid_string(uuid.UUID(bytes=b"\xfb\xff" * 8)) == "-__7__v_-__7__v_-__7_w"


def java_hash_by_definition(text: str) -> int:
    """String.hashCode's definition: s[0]*31^(n-1) + s[1]*31^(n-2) + ... + s[n-1], in int32
    arithmetic (the keys here are ASCII: one UTF-16 unit per character)."""
    n = len(text)
    total: int = sum(ord(c) * 31 ** (n - 1 - i) for i, c in enumerate(text)) % 2**32
    return total - 2**32 if total >= 2**31 else total


def test_partition_for() -> None:
    key = share_coordinator_key("g", uuid.UUID(int=0), 0)
    assert key == "g:AAAAAAAAAAAAAAAAAAAAAA:0"
    # Pinned from Java: "g:AAAAAAAAAAAAAAAAAAAAAA:0".hashCode() == -92982199, 92982199 % 50 == 49.
    assert java_hash_by_definition(key) == -92982199
    assert partition_for("g", uuid.UUID(int=0), 0, 50) == 92982199 % 50 == 49
    key = share_coordinator_key("group-1", TOPIC, 3)
    assert key == "group-1:ABEiM0RVZneImaq7zN3u_w:3"
    assert java_hash_by_definition(key) == 1074077340
    assert partition_for("group-1", TOPIC, 3, 50) == 1074077340 % 50 == 40
    assert partition_for("group-1", TOPIC, 3, 1) == 0
    # A group id with colons is used as is (Kafka parses the key from the right).
    assert share_coordinator_key("a:b", TOPIC, 12) == "a:b:ABEiM0RVZneImaq7zN3u_w:12"


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=20), st.uuids(), st.integers(0, 2**31 - 1), st.integers(1, 1000))
def test_partition_for_matches_the_definition(group: str, topic: uuid.UUID, partition: int, partitions: int) -> None:
    key = share_coordinator_key(group, topic, partition)
    units = key.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i : i + 2], "big")) % 2**32
    h = h - 2**32 if h >= 2**31 else h
    expected = 0 if h == -(2**31) else abs(h)
    assert partition_for(group, topic, partition, partitions) == expected % partitions


# --- property: every record survives a round trip --------------------------------------------

_text = st.text(max_size=12)
_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
_batches = st.lists(
    st.builds(PersistedBatch, _int64, _int64, st.integers(-128, 127), st.integers(-(2**15), 2**15 - 1)),
    max_size=4,
).map(tuple)
_keys = st.tuples(_text, st.uuids(), _int32)
_records = st.one_of(
    st.builds(
        lambda k, v: ShareStateRecord(ShareSnapshotKey(*k), v),
        _keys,
        st.none() | st.builds(ShareSnapshotValue, _int32, _int32, _int32, _int64, _int64, _int64, _batches, _int32),
    ),
    st.builds(
        lambda k, v: ShareStateRecord(ShareUpdateKey(*k), v),
        _keys,
        st.none() | st.builds(ShareUpdateValue, _int32, _int32, _int64, _batches, _int32),
    ),
)


@settings(max_examples=300, deadline=None, database=None)
@given(_records)
def test_property_round_trip(record: ShareStateRecord) -> None:
    assert deserialize(*serialize(record)) == record
