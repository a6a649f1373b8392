"""A small schema-driven codec for the coordinators' records (``__consumer_offsets``,
``__transaction_state``), in Kafka's message format.

A record's key and value each start with an int16 version; the fields that follow are
described by a ``Schema`` (Kafka's coordinator-key / coordinator-value JSON specs): int8,
int16, int32, int64, uuid (16 raw bytes), string, bytes, arrays of those (``[]int32``,
``[]string``, ...), arrays of nested structs and single nested structs, each present in a
version range and possibly nullable. Versions from ``flexible_from`` on use compact lengths
and end every struct with a tagged-field section (KIP-482): a field with ``tag`` is written
there, and only when its value differs from its default (as Kafka's generated code does); it
is read back by its tag, and unknown tags are skipped.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

_INT8: Final = struct.Struct(">b")
_INT16: Final = struct.Struct(">h")
_INT32: Final = struct.Struct(">i")
_INT64: Final = struct.Struct(">q")
_FIXED: Final = {"int8": _INT8, "int16": _INT16, "int32": _INT32, "int64": _INT64}
_UUID_SIZE: Final = 16
INT32_ARRAY: Final = "[]int32"
STRING_ARRAY: Final = "[]string"
_ELEMENT_TYPES: Final = frozenset((*_FIXED, "uuid", "string"))


class RecordFormatError(ValueError):
    """A coordinator record that does not decode."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    # int8 | int16 | int32 | int64 | uuid | string | bytes, an array of one of those but bytes
    # ("[]int32", "[]string", ...), or a struct: an array of it, or one struct with ``single``.
    type: str | Schema
    first: int = 0
    last: int = 32767
    nullable: bool = False
    default: Any = None
    tag: int | None = None  # a tagged field (present in flexible versions only)
    single: bool = False  # a struct type is one struct, not an array of it

    def __post_init__(self) -> None:
        kind = self.type
        if isinstance(kind, Schema):
            return
        if self.single:
            raise ValueError(f"{self.name}: only a struct can be single")
        if kind.startswith("[]"):
            if kind[2:] not in _ELEMENT_TYPES:
                raise ValueError(f"{self.name}: unsupported array type {kind}")
        elif kind not in _FIXED and kind not in ("uuid", "string", "bytes"):
            raise ValueError(f"{self.name}: unsupported type {kind}")


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


def _present(f: Field, version: int, flexible: bool) -> bool:
    return f.first <= version <= f.last and (f.tag is None or flexible)


# --- writing ----------------------------------------------------------------------------------


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


def _write_null(out: bytearray, flexible: bool, wide: bool) -> None:
    if flexible:
        out.append(0)
    else:
        out += (_INT32 if wide else _INT16).pack(-1)


def _encode(schema: Schema, version: int, obj: Any, out: bytearray) -> None:
    flexible = version >= schema.flexible_from
    tagged: list[tuple[int, bytes]] = []
    for f in schema.fields:
        if not _present(f, version, flexible):
            continue
        value = getattr(obj, f.name)
        if f.tag is None:
            _write_field(schema, f, version, value, flexible, False, out)
        elif value != f.default:  # Kafka omits tagged fields that hold their default
            field_bytes = bytearray()
            _write_field(schema, f, version, value, True, True, field_bytes)
            tagged.append((f.tag, bytes(field_bytes)))
    if flexible:
        tagged.sort(key=lambda item: item[0])
        _write_uvarint(out, len(tagged))
        for tag, raw in tagged:
            _write_uvarint(out, tag)
            _write_uvarint(out, len(raw))
            out += raw


def _write_field(
    schema: Schema, f: Field, version: int, value: Any, flexible: bool, tagged: bool, out: bytearray
) -> None:
    kind = f.type
    if value is None and not f.nullable:
        raise ValueError(f"{schema.name}.{f.name} is not nullable")
    if isinstance(kind, Schema) and f.single:
        if f.nullable:
            # Kafka marks a nullable struct with a byte (-1 / 1); a tagged one with a uvarint (0 / 1).
            if tagged:
                _write_uvarint(out, 0 if value is None else 1)
            else:
                out += _INT8.pack(-1 if value is None else 1)
            if value is None:
                return
        _encode(kind, version, value, out)
        return
    if isinstance(kind, Schema) or kind.startswith("[]"):
        if value is None:
            _write_null(out, flexible, wide=True)
            return
        _write_length(out, len(value), flexible, wide=True)
        for item in value:
            if isinstance(kind, Schema):
                _encode(kind, version, item, out)
            else:
                _write_scalar(schema, f, kind[2:], item, flexible, out)
        return
    _write_scalar(schema, f, kind, value, flexible, out)


def _write_scalar(schema: Schema, f: Field, kind: str, value: Any, flexible: bool, out: bytearray) -> None:
    if kind in _FIXED:
        out += _FIXED[kind].pack(value)
    elif kind == "uuid":
        if not isinstance(value, uuid.UUID):
            raise ValueError(f"{schema.name}.{f.name}: not a UUID")
        out += value.bytes
    else:  # string | bytes
        wide = kind == "bytes"
        if value is None:
            if not f.nullable:
                raise ValueError(f"{schema.name}.{f.name} is not nullable")
            _write_null(out, flexible, wide)
            return
        raw = value.encode("utf-8") if kind == "string" else bytes(value)
        _write_length(out, len(raw), flexible, wide)
        out += raw


# --- reading ----------------------------------------------------------------------------------


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


def _read_length(buf: bytes, pos: int, flexible: bool, wide: bool) -> tuple[int, int]:
    if flexible:
        length, pos = _read_uvarint(buf, pos)
        return length - 1, pos
    codec = _INT32 if wide else _INT16
    (length,) = codec.unpack_from(buf, pos)
    return length, pos + codec.size


def _decode(schema: Schema, version: int, buf: bytes, pos: int) -> tuple[Any, int]:
    flexible = version >= schema.flexible_from
    values: dict[str, Any] = {}
    by_tag: dict[int, Field] = {}
    try:
        for f in schema.fields:
            if not _present(f, version, flexible):
                values[f.name] = f.default
                continue
            if f.tag is not None:
                values[f.name] = f.default  # unless its tag is in the tagged-field section
                by_tag[f.tag] = f
                continue
            values[f.name], pos = _read_field(schema, f, version, flexible, False, buf, pos)
        if flexible:
            count, pos = _read_uvarint(buf, pos)
            for _ in range(count):
                tag, pos = _read_uvarint(buf, pos)
                size, pos = _read_uvarint(buf, pos)
                end = pos + size
                if end > len(buf):
                    raise RecordFormatError(f"{schema.name}: tagged field overruns the record")
                known = by_tag.get(tag)
                if known is not None:
                    value, stop = _read_field(schema, known, version, True, True, buf[:end], pos)
                    if stop > end:
                        raise RecordFormatError(f"{schema.name}.{known.name}: overruns its tag")
                    values[known.name] = value
                pos = end  # unknown tagged fields are skipped (KIP-482)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"{schema.name} v{version}: {exc}") from exc
    assert schema.build is not None
    return schema.build(version, values), pos


def _read_field(
    schema: Schema, f: Field, version: int, flexible: bool, tagged: bool, buf: bytes, pos: int
) -> tuple[Any, int]:
    kind = f.type
    if isinstance(kind, Schema) and f.single:
        if f.nullable:
            if tagged:
                marker, pos = _read_uvarint(buf, pos)
                present = marker > 0
            else:
                (marker,) = _INT8.unpack_from(buf, pos)
                pos += 1
                present = marker >= 0
            if not present:
                return None, pos
        item: Any
        item, pos = _decode(kind, version, buf, pos)
        return item, pos
    if isinstance(kind, Schema) or kind.startswith("[]"):
        count, pos = _read_length(buf, pos, flexible, wide=True)
        if count < 0:
            if not f.nullable:
                raise RecordFormatError(f"{schema.name}.{f.name} is null")
            return None, pos
        if count > len(buf) - pos:
            raise RecordFormatError(f"{schema.name}.{f.name}: bad array length {count}")
        items = []
        for _ in range(count):
            if isinstance(kind, Schema):
                item, pos = _decode(kind, version, buf, pos)
            else:
                item, pos = _read_scalar(schema, f, kind[2:], flexible, buf, pos)
                if item is None:
                    raise RecordFormatError(f"{schema.name}.{f.name}: null element")
            items.append(item)
        return tuple(items), pos
    return _read_scalar(schema, f, kind, flexible, buf, pos)


def _read_scalar(schema: Schema, f: Field, kind: str, flexible: bool, buf: bytes, pos: int) -> tuple[Any, int]:
    if kind in _FIXED:
        codec = _FIXED[kind]
        (value,) = codec.unpack_from(buf, pos)
        return value, pos + codec.size
    if kind == "uuid":
        if pos + _UUID_SIZE > len(buf):
            raise RecordFormatError(f"{schema.name}.{f.name} overruns the record")
        return uuid.UUID(bytes=bytes(buf[pos : pos + _UUID_SIZE])), pos + _UUID_SIZE
    length, pos = _read_length(buf, pos, flexible, wide=kind == "bytes")
    if length < 0:
        if not f.nullable:
            raise RecordFormatError(f"{schema.name}.{f.name} is null")
        return None, pos
    if pos + length > len(buf):
        raise RecordFormatError(f"{schema.name}.{f.name} overruns the record")
    raw = bytes(buf[pos : pos + length])
    pos += length
    return (raw.decode("utf-8") if kind == "string" else raw), pos


# --- entry points -----------------------------------------------------------------------------


def encode_versioned(schema: Schema, version: int, obj: Any, *, prefix: int | None = None) -> bytes:
    """The int16 version (or ``prefix``: a KIP-848 key starts with its record type and has
    its fields at version 0), then ``obj``'s fields at that version."""
    out = bytearray(_INT16.pack(version if prefix is None else prefix))
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
