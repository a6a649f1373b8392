"""What every __consumer_offsets record test checks, and the byte helpers of the layouts."""

from __future__ import annotations

import struct

from strom.coordinator.records import CoordinatorRecord, deserialize, serialize, serialize_value


def s16(text: str) -> bytes:
    """A non-flexible (int16-length) string, as in the keys."""
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def compact(raw: bytes) -> bytes:
    """A compact string / bytes (uvarint length + 1; all lengths here are < 127)."""
    return bytes([len(raw) + 1]) + raw


def assert_round_trip(record: CoordinatorRecord) -> None:
    key, value = serialize(record)
    assert value is not None and value[:2] == b"\x00\x00"  # every value is written at version 0
    assert deserialize(key, value) == record
    assert serialize_value(record.value, 0) == value  # type: ignore[arg-type]


def assert_key_and_tombstone(key: object, record_type: int) -> None:
    record = CoordinatorRecord(key, None)  # type: ignore[arg-type]
    key_bytes, value = serialize(record)
    assert value is None
    # The record type, then the key's fields at version 0: non-flexible, int16-length strings.
    fields = b"".join(s16(getattr(key, name)) for name in key.__slots__)  # type: ignore[attr-defined]
    assert key_bytes == struct.pack(">h", record_type) + fields
    assert deserialize(key_bytes, None) == record
