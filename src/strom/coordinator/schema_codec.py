"""A small schema-driven codec for the coordinators' records (``__consumer_offsets``,
``__transaction_state``), in Kafka's message format.

A record's key and value each start with an int16 version; the fields that follow are
described by a ``Schema`` (Kafka's coordinator-key / coordinator-value JSON specs): int8,
int16, int32, int64, string, bytes, ``[]int32``, and arrays of nested structs, each present in
a version range and possibly nullable. Versions from ``flexible_from`` on use compact lengths
and end every struct with tagged fields (KIP-482): written empty, skipped when read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

_INT8: Final = struct.Struct(">b")
_INT16: Final = struct.Struct(">h")
_INT32: Final = struct.Struct(">i")
_INT64: Final = struct.Struct(">q")
_FIXED: Final = {"int8": _INT8, "int16": _INT16, "int32": _INT32, "int64": _INT64}
INT32_ARRAY: Final = "[]int32"


class RecordFormatError(ValueError):
    """A coordinator record that does not decode."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str | Schema  # int8 | int16 | int32 | int64 | string | bytes | []int32, or a struct (an array of it)
    first: int = 0
    last: int = 32767
    nullable: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    fields: tuple[Field, ...]
    valid: tuple[int, int]
    flexible_from: int = 32767
    build: Callable[..., Any] | None = None  # makes the dataclass from decoded fields


def plain(cls: type) -> Callable[[int, dict[str, Any]], Any]:
    """A ``build`` that passes the decoded fields to the class as keywords."""
    return lambda _version, values: cls(**values)


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


def _write_null(out: bytearray, flexible: bool, wide: bool) -> None:
    if flexible:
        out.append(0)
    else:
        out += (_INT32 if wide else _INT16).pack(-1)


def _encode(schema: Schema, version: int, obj: Any, out: bytearray) -> None:
    flexible = version >= schema.flexible_from
    for f in schema.fields:
        if not f.first <= version <= f.last:
            continue
        value = getattr(obj, f.name)
        if value is None and not isinstance(f.type, str | Schema):
            raise ValueError(f"{schema.name}.{f.name}: unknown type")
        if isinstance(f.type, Schema) or f.type == INT32_ARRAY:
            if value is None:
                if not f.nullable:
                    raise ValueError(f"{schema.name}.{f.name} is not nullable")
                _write_null(out, flexible, wide=True)
                continue
            _write_length(out, len(value), flexible, wide=True)
            for item in value:
                if isinstance(f.type, Schema):
                    _encode(f.type, version, item, out)
                else:
                    out += _INT32.pack(item)
        elif f.type in _FIXED:
            out += _FIXED[f.type].pack(value)
        else:  # string | bytes
            wide = f.type == "bytes"
            if value is None:
                if not f.nullable:
                    raise ValueError(f"{schema.name}.{f.name} is not nullable")
                _write_null(out, flexible, wide)
                continue
            raw = value.encode("utf-8") if f.type == "string" else bytes(value)
            _write_length(out, len(raw), flexible, wide)
            out += raw
    if flexible:
        out.append(0)  # no tagged fields


def _decode(schema: Schema, version: int, buf: bytes, pos: int) -> tuple[Any, int]:
    flexible = version >= schema.flexible_from
    values: dict[str, Any] = {}
    try:
        for f in schema.fields:
            if not f.first <= version <= f.last:
                values[f.name] = f.default
                continue
            if isinstance(f.type, Schema) or f.type == INT32_ARRAY:
                count, pos = _read_length(buf, pos, flexible, wide=True)
                if count < 0:
                    if not f.nullable:
                        raise RecordFormatError(f"{schema.name}.{f.name} is null")
                    values[f.name] = None
                    continue
                if count > len(buf) - pos:
                    raise RecordFormatError(f"{schema.name}.{f.name}: bad array length {count}")
                items = []
                for _ in range(count):
                    if isinstance(f.type, Schema):
                        item, pos = _decode(f.type, version, buf, pos)
                    else:
                        (item,) = _INT32.unpack_from(buf, pos)
                        pos += 4
                    items.append(item)
                values[f.name] = tuple(items)
            elif f.type in _FIXED:
                codec = _FIXED[f.type]
                (values[f.name],) = codec.unpack_from(buf, pos)
                pos += codec.size
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


def encode_versioned(schema: Schema, version: int, obj: Any) -> bytes:
    """The int16 version, then ``obj``'s fields at that version."""
    out = bytearray(_INT16.pack(version))
    _encode(schema, version, obj, out)
    return bytes(out)


def decode_versioned(schema: Schema, data: bytes, version: int | None = None) -> Any:
    """Decode at the version the data starts with (or ``version``, for keys whose version
    field names the record type); trailing bytes are ignored, as Kafka's readers do."""
    if len(data) < 2:
        raise RecordFormatError(f"{schema.name}: no version")
    (found,) = _INT16.unpack_from(data, 0)
    if version is None:
        version = found
    if not schema.valid[0] <= version <= schema.valid[1]:
        raise RecordFormatError(f"{schema.name}: unknown version {version}")
    obj, _pos = _decode(schema, version, data, 2)
    return obj


def key_version(key: bytes | None) -> int:
    """The int16 version a record key starts with (it names the record type)."""
    if key is None or len(key) < 2:
        raise RecordFormatError("record without a versioned key")
    version: int = _INT16.unpack_from(key, 0)[0]
    return version
