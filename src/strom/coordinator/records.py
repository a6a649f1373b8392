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

Key versions 3 and up belong to KIP-848 consumer, share and streams groups, which strom does
not implement: ``deserialize`` returns None for them so a loader can skip them.

The partition of a group is ``abs(groupId.hashCode()) % partitions`` with Java's String hash
(over UTF-16 code units) and Kafka's ``Utils.abs`` (which maps Integer.MIN_VALUE to 0).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

OFFSETS_TOPIC: Final = "__consumer_offsets"

LEGACY_OFFSET_COMMIT_KEY_VERSION: Final = 0
OFFSET_COMMIT_KEY_VERSION: Final = 1
GROUP_METADATA_KEY_VERSION: Final = 2

OFFSET_COMMIT_VALUE_VERSION: Final = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: Final = 1
GROUP_METADATA_VALUE_VERSION: Final = 3

_INT16: Final = struct.Struct(">h")
_INT32: Final = struct.Struct(">i")
_INT64: Final = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A __consumer_offsets record that does not decode."""


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


# --- a small schema-driven codec ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    type: str | _Schema  # int32 | int64 | string | bytes, or a nested struct (an array of it)
    first: int = 0
    last: int = 32767
    nullable: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str
    fields: tuple[_Field, ...]
    valid: tuple[int, int]
    flexible_from: int = 32767
    build: Callable[..., Any] | None = None  # makes the dataclass from decoded fields


def _write_length(out: bytearray, length: int, flexible: bool, wide: bool) -> None:
    if flexible:
        _write_uvarint(out, length + 1)
    else:
        out += (_INT32 if wide else _INT16).pack(length)


def _write_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 28:
            raise RecordFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode(schema: _Schema, version: int, obj: Any, out: bytearray) -> None:
    flexible = version >= schema.flexible_from
    for f in schema.fields:
        if not f.first <= version <= f.last:
            continue
        value = getattr(obj, f.name)
        if isinstance(f.type, _Schema):
            _write_length(out, len(value), flexible, wide=True)
            for item in value:
                _encode(f.type, version, item, out)
        elif f.type == "int32":
            out += _INT32.pack(value)
        elif f.type == "int64":
            out += _INT64.pack(value)
        else:  # string | bytes
            wide = f.type == "bytes"
            if value is None:
                if not f.nullable:
                    raise ValueError(f"{schema.name}.{f.name} is not nullable")
                if flexible:
                    out.append(0)
                else:
                    out += (_INT32 if wide else _INT16).pack(-1)
                continue
            raw = value.encode("utf-8") if f.type == "string" else bytes(value)
            _write_length(out, len(raw), flexible, wide)
            out += raw
    if flexible:
        out.append(0)  # no tagged fields


def _decode(schema: _Schema, version: int, buf: bytes, pos: int) -> tuple[Any, int]:
    flexible = version >= schema.flexible_from
    values: dict[str, Any] = {}
    try:
        for f in schema.fields:
            if not f.first <= version <= f.last:
                values[f.name] = f.default
                continue
            if isinstance(f.type, _Schema):
                count, pos = _read_length(buf, pos, flexible, wide=True)
                if count < 0 or count > len(buf) - pos:
                    raise RecordFormatError(f"{schema.name}.{f.name}: bad array length {count}")
                items = []
                for _ in range(count):
                    item, pos = _decode(f.type, version, buf, pos)
                    items.append(item)
                values[f.name] = tuple(items)
            elif f.type == "int32":
                (values[f.name],) = _INT32.unpack_from(buf, pos)
                pos += 4
            elif f.type == "int64":
                (values[f.name],) = _INT64.unpack_from(buf, pos)
                pos += 8
            else:
                length, pos = _read_length(buf, pos, flexible, wide=f.type == "bytes")
                if length < 0:
                    if not f.nullable:
                        raise RecordFormatError(f"{schema.name}.{f.name} is null")
                    values[f.name] = None
                    continue
                if pos + length > len(buf):
                    raise RecordFormatError(f"{schema.name}.{f.name} overruns the record")
                raw = bytes(buf[pos : pos + length])
                pos += length
                values[f.name] = raw.decode("utf-8") if f.type == "string" else raw
        if flexible:
            count, pos = _read_uvarint(buf, pos)
            for _ in range(count):  # unknown tagged fields are skipped (KIP-482)
                _tag, pos = _read_uvarint(buf, pos)
                size, pos = _read_uvarint(buf, pos)
                pos += size
            if pos > len(buf):
                raise RecordFormatError(f"{schema.name}: tagged field overruns the record")
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"{schema.name} v{version}: {exc}") from exc
    assert schema.build is not None
    return schema.build(version, values), pos


def _read_length(buf: bytes, pos: int, flexible: bool, wide: bool) -> tuple[int, int]:
    if flexible:
        length, pos = _read_uvarint(buf, pos)
        return length - 1, pos
    codec = _INT32 if wide else _INT16
    (length,) = codec.unpack_from(buf, pos)
    return length, pos + codec.size


def _plain(cls: type) -> Callable[[int, dict[str, Any]], Any]:
    return lambda _version, values: cls(**values)


def _member(version: int, values: dict[str, Any]) -> MemberMetadata:
    if version == 0:  # v0 predates rebalance timeouts: the session timeout served both
        values["rebalance_timeout"] = values["session_timeout"]
    return MemberMetadata(**values)


_OFFSET_COMMIT_KEY = _Schema(
    "OffsetCommitKey",
    (_Field("group", "string"), _Field("topic", "string"), _Field("partition", "int32")),
    valid=(0, 1),
    build=_plain(OffsetCommitKey),
)
_GROUP_METADATA_KEY = _Schema(
    "GroupMetadataKey", (_Field("group", "string"),), valid=(2, 2), build=_plain(GroupMetadataKey)
)
_OFFSET_COMMIT_VALUE = _Schema(
    "OffsetCommitValue",
    (
        _Field("offset", "int64"),
        _Field("leader_epoch", "int32", first=3, default=-1),
        _Field("metadata", "string"),
        _Field("commit_timestamp", "int64"),
        _Field("expire_timestamp", "int64", first=1, last=1, default=-1),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=_plain(OffsetCommitValue),
)
_MEMBER_METADATA = _Schema(
    "MemberMetadata",
    (
        _Field("member_id", "string"),
        _Field("group_instance_id", "string", first=3, nullable=True),
        _Field("client_id", "string"),
        _Field("client_host", "string"),
        _Field("rebalance_timeout", "int32", first=1, default=0),
        _Field("session_timeout", "int32"),
        _Field("subscription", "bytes"),
        _Field("assignment", "bytes"),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=_member,
)
_GROUP_METADATA_VALUE = _Schema(
    "GroupMetadataValue",
    (
        _Field("protocol_type", "string"),
        _Field("generation", "int32"),
        _Field("protocol", "string", nullable=True),
        _Field("leader", "string", nullable=True),
        _Field("current_state_timestamp", "int64", first=2, default=-1),
        _Field("members", _MEMBER_METADATA),
    ),
    valid=(0, 4),
    flexible_from=4,
    build=_plain(GroupMetadataValue),
)


def _encode_versioned(schema: _Schema, version: int, obj: Any) -> bytes:
    out = bytearray(_INT16.pack(version))
    _encode(schema, version, obj, out)
    return bytes(out)


def _decode_versioned(schema: _Schema, data: bytes, version: int | None = None) -> Any:
    if len(data) < 2:
        raise RecordFormatError(f"{schema.name}: no version")
    (found,) = _INT16.unpack_from(data, 0)
    if version is None:
        version = found
    if not schema.valid[0] <= version <= schema.valid[1]:
        raise RecordFormatError(f"{schema.name}: unknown version {version}")
    obj, _pos = _decode(schema, version, data, 2)
    return obj  # trailing bytes are ignored, as Kafka's readers do


# --- serialization ----------------------------------------------------------------------------


def serialize(record: CoordinatorRecord) -> tuple[bytes, bytes | None]:
    """The record's key and value bytes, in the versions Kafka writes."""
    key, value = record.key, record.value
    if isinstance(key, OffsetCommitKey):
        key_bytes = _encode_versioned(_OFFSET_COMMIT_KEY, OFFSET_COMMIT_KEY_VERSION, key)
        if value is None:
            return key_bytes, None
        assert isinstance(value, OffsetCommitValue)
        version = OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY if value.expire_timestamp >= 0 else OFFSET_COMMIT_VALUE_VERSION
        return key_bytes, _encode_versioned(_OFFSET_COMMIT_VALUE, version, value)
    key_bytes = _encode_versioned(_GROUP_METADATA_KEY, GROUP_METADATA_KEY_VERSION, key)
    if value is None:
        return key_bytes, None
    assert isinstance(value, GroupMetadataValue)
    return key_bytes, _encode_versioned(_GROUP_METADATA_VALUE, GROUP_METADATA_VALUE_VERSION, value)


def serialize_value(value: RecordValue, version: int) -> bytes:
    """A value at a chosen version (tests, and tools that write older formats)."""
    schema = _OFFSET_COMMIT_VALUE if isinstance(value, OffsetCommitValue) else _GROUP_METADATA_VALUE
    return _encode_versioned(schema, version, value)


def deserialize(key: bytes | None, value: bytes | None) -> CoordinatorRecord | None:
    """Decode a record read back from the log; None for record types strom does not keep
    (KIP-848 and share/streams group records). RecordFormatError when it is malformed."""
    if key is None or len(key) < 2:
        raise RecordFormatError("record without a versioned key")
    (key_version,) = _INT16.unpack_from(key, 0)
    if key_version in (LEGACY_OFFSET_COMMIT_KEY_VERSION, OFFSET_COMMIT_KEY_VERSION):
        # Both key versions share one layout; the key's own version field is not a schema version.
        parsed_key = _decode_versioned(_OFFSET_COMMIT_KEY, key, version=1)
        parsed_value = None if value is None else _decode_versioned(_OFFSET_COMMIT_VALUE, value)
        return CoordinatorRecord(parsed_key, parsed_value)
    if key_version == GROUP_METADATA_KEY_VERSION:
        parsed_key = _decode_versioned(_GROUP_METADATA_KEY, key)
        parsed_value = None if value is None else _decode_versioned(_GROUP_METADATA_VALUE, value)
        return CoordinatorRecord(parsed_key, parsed_value)
    return None


def encode_all(records: Sequence[CoordinatorRecord]) -> list[tuple[bytes, bytes | None]]:
    return [serialize(record) for record in records]
