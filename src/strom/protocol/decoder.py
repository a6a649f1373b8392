"""Pure-Python decoder for message dataclasses that skips unknown tagged fields.

The native (kio) reader is the fast path; it rejects unknown tags, while Kafka
requires receivers to skip them (KIP-482: tags may be added to existing versions).
This reader builds the same entities from the same classes and is used as a fallback.
Readers take ``(buf, pos)`` and return ``(value, new_pos)``.

``ArrayCountGuard`` runs before the native reader: that reader reserves room for an
array's declared count before reading any element, and a failed allocation aborts the
process, so a body of a few bytes declaring 2**34 elements would kill the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import struct
from collections.abc import Callable
from typing import Any, Final
from uuid import UUID

from .errors import RemoteProtocolError
from .primitives import INT8, INT16, INT32, read_uvarint
from .schema import EPOCH, STRUCT, FieldSpec, is_flexible, struct_fields

Buf = bytes | bytearray | memoryview
Reader = Callable[[Buf, int], tuple[Any, int]]

_ZERO_UUID: Final = bytes(16)

_CODES: Final = {
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint8": "B",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
    "float64": "d",
    "bool": "B",
    "error_code": "h",
    "timedelta_i32": "i",
    "timedelta_i64": "q",
    "datetime_i64": "q",
    "uuid": "16s",
}


_FIXED_SIZES: Final = {name: struct.calcsize(">" + code) for name, code in _CODES.items()}


def _check_bool(value: int) -> bool:
    if value > 1:
        raise RemoteProtocolError(f"invalid boolean byte {value}")
    return value == 1


def _uuid(value: bytes) -> UUID | None:
    # The message classes represent the all-zero UUID as None.
    return None if value == _ZERO_UUID else UUID(bytes=value)


def _timedelta(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


def _datetime(ms: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(milliseconds=ms)


def _nullable_datetime(ms: int) -> datetime.datetime | None:
    return None if ms == -1 else _datetime(ms)


def _checked_end(buf: Buf, pos: int, size: int) -> int:
    end = pos + size
    if end > len(buf):
        raise RemoteProtocolError(f"length {size} runs past the end of the buffer")
    return end


class FallbackDecoder:
    """Compiles (once per class) and runs tag-skipping readers for message classes."""

    def __init__(self, error_code: Callable[[int], Any] = int) -> None:
        # error_code converts int16 error codes into the entity's enum type.
        self._converters: dict[str, Callable[[Any], Any]] = {
            "bool": _check_bool,
            "error_code": error_code,
            "timedelta_i32": _timedelta,
            "timedelta_i64": _timedelta,
            "datetime_i64": _datetime,
            "uuid": _uuid,
        }
        self._structs: dict[type, Reader] = {}

    def decode(self, cls: type, body: bytes | bytearray | memoryview) -> Any:
        view = body if isinstance(body, memoryview) else memoryview(body)
        try:
            entity, _ = self.struct_reader(cls)(view, 0)
        except RemoteProtocolError:
            raise
        except (struct.error, ValueError, IndexError, TypeError, OverflowError) as exc:
            raise RemoteProtocolError(f"malformed {cls.__name__}: {exc}") from exc
        return entity

    # -- compilation -------------------------------------------------------------------

    def struct_reader(self, cls: type) -> Reader:
        reader = self._structs.get(cls)
        if reader is None:
            reader = self._structs[cls] = self._compile_struct(cls)
        return reader

    def _compile_struct(self, cls: type) -> Reader:
        flexible = is_flexible(cls)
        specs = struct_fields(cls)
        plain = tuple((s.name, self._value_reader(s, flexible, s.nullable)) for s in specs if s.tag is None)
        tagged = {
            s.tag: (s.name, self._value_reader(s, True, s.nullable or s.kafka_type != STRUCT))
            for s in specs
            if s.tag is not None
        }
        tag_defaults = tuple((s.name, s.default) for s in specs if s.tag is not None)

        def read_struct(buf: Buf, pos: int) -> tuple[Any, int]:
            kwargs: dict[str, Any] = {}
            for name, read in plain:
                kwargs[name], pos = read(buf, pos)
            if flexible:
                count, pos = read_uvarint(buf, pos)
                for _ in range(count):
                    tag, pos = read_uvarint(buf, pos)
                    size, pos = read_uvarint(buf, pos)
                    end = _checked_end(buf, pos, size)
                    entry = tagged.get(tag)
                    if entry is not None:  # unknown tags are skipped
                        name, read = entry
                        kwargs[name], value_end = read(buf, pos)
                        if value_end > end:
                            raise RemoteProtocolError(f"tagged field {name} overruns its size")
                    pos = end
                for name, default in tag_defaults:
                    if name not in kwargs:
                        kwargs[name] = default
            return cls(**kwargs), pos

        return read_struct

    def _value_reader(self, spec: FieldSpec, flexible: bool, nullable: bool) -> Reader:
        if spec.array:
            return self._array_reader(spec, flexible)
        kafka_type = spec.kafka_type
        if kafka_type == STRUCT:
            assert spec.struct is not None
            return self._nested_struct_reader(spec.struct, nullable)
        if kafka_type in ("string", "bytes", "records"):
            return _blob_reader(kafka_type == "string", flexible, nullable)
        return self._fixed_reader(kafka_type, nullable)

    def _nested_struct_reader(self, cls: type, nullable: bool) -> Reader:
        # Resolved lazily so compiling a class never recurses eagerly.
        def read_nested(buf: Buf, pos: int) -> tuple[Any, int]:
            if nullable:
                (marker,) = INT8.unpack_from(buf, pos)
                pos += 1
                if marker < 0:  # KIP-893 null struct
                    return None, pos
            return self.struct_reader(cls)(buf, pos)

        return read_nested

    def _fixed_reader(self, kafka_type: str, nullable: bool) -> Reader:
        unpack_from = struct.Struct(">" + _CODES[kafka_type]).unpack_from
        size = struct.calcsize(">" + _CODES[kafka_type])
        convert = self._converters.get(kafka_type)
        if kafka_type == "datetime_i64" and nullable:
            convert = _nullable_datetime
        if convert is None:

            def read_plain(buf: Buf, pos: int) -> tuple[Any, int]:
                return unpack_from(buf, pos)[0], pos + size

            return read_plain

        def read_converted(buf: Buf, pos: int) -> tuple[Any, int]:
            return convert(unpack_from(buf, pos)[0]), pos + size

        return read_converted

    def _array_reader(self, spec: FieldSpec, flexible: bool) -> Reader:
        nullable = spec.nullable
        kafka_type = spec.kafka_type
        code = _CODES.get(kafka_type) if kafka_type != "uuid" else None
        convert = self._converters.get(kafka_type)
        element = None
        if code is None:
            element = self._value_reader(dataclasses.replace(spec, array=False), flexible, False)

        def read_array(buf: Buf, pos: int) -> tuple[Any, int]:
            if flexible:
                count, pos = read_uvarint(buf, pos)
                count -= 1
            else:
                (count,) = INT32.unpack_from(buf, pos)
                pos += 4
            if count < 0:
                if nullable:
                    return None, pos
                raise RemoteProtocolError(f"null for non-nullable array {spec.name}")
            # As Kafka does: every element takes at least one byte, so a count above
            # the remaining size is malformed (and must not drive a huge loop).
            if count > len(buf) - pos:
                raise RemoteProtocolError(f"array {spec.name} of {count} exceeds the buffer")
            if element is None:
                fmt = f">{count}{code}"
                values = struct.unpack_from(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                if convert is not None:
                    values = tuple(map(convert, values))
                return values, pos
            items = []
            for _ in range(count):
                item, pos = element(buf, pos)
                items.append(item)
            return tuple(items), pos

        return read_array


def _blob_reader(is_text: bool, flexible: bool, nullable: bool) -> Reader:
    length = INT16 if is_text else INT32

    def read_blob(buf: Buf, pos: int) -> tuple[Any, int]:
        if flexible:
            size, pos = read_uvarint(buf, pos)
            size -= 1
        else:
            (size,) = length.unpack_from(buf, pos)
            pos += length.size
        if size < 0:
            if nullable:
                return None, pos
            raise RemoteProtocolError("null for a non-nullable string/bytes field")
        end = _checked_end(buf, pos, size)
        data = buf[pos:end]
        return (str(data, "utf-8") if is_text else bytes(data)), end

    return read_blob


# -- array count guard ----------------------------------------------------------------------

Skipper = Callable[[Buf, int], int]


class _Stop(Exception):
    """The native reader fails or gives up here, before reaching any later array."""


def _read_length(buf: Buf, pos: int) -> tuple[int, int]:
    """A compact length (uvarint N+1) as N, with the one-byte case inline."""
    byte = buf[pos]
    if byte < 0x80:
        return byte - 1, pos + 1
    value, pos = read_uvarint(buf, pos)
    return value - 1, pos


def _skip_tags_start(buf: Buf, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    return read_uvarint(buf, pos)


class ArrayCountGuard:
    """Walks a body along the native reader's path; rejects array counts past its end.

    Only lengths are read: fixed-width runs are skipped in one step, strings and bytes by
    their length. The walk stops quietly where the native reader itself fails (a field
    running past the end) or gives up (an unknown tag, after which FallbackDecoder, which
    checks counts itself, takes over), as nothing after that point reaches an allocation.
    """

    def __init__(self) -> None:
        self._structs: dict[type, Skipper] = {}

    def check(self, cls: type, body: bytes | bytearray | memoryview, pos: int = 0) -> None:
        """Raise RemoteProtocolError if an array of ``body`` claims more elements than bytes."""
        skip = self._structs.get(cls)
        if skip is None:
            skip = self._structs[cls] = self._compile_struct(cls)
        with contextlib.suppress(_Stop, IndexError, struct.error):
            skip(body, pos)

    def _compile_struct(self, cls: type) -> Skipper:
        # Message structs never nest themselves, so compiling eagerly terminates.
        flexible = is_flexible(cls)
        steps: list[tuple[int, Skipper]] = []  # (fixed-width bytes before, skipper)
        fixed = 0
        for spec in struct_fields(cls):
            if spec.tag is not None:
                continue
            size = None if spec.array else _FIXED_SIZES.get(spec.kafka_type)
            if size is not None:
                fixed += size
            else:
                steps.append((fixed, self._value_skipper(spec, flexible, spec.nullable)))
                fixed = 0
        trailing = fixed
        compiled = tuple(steps)
        tagged = {
            s.tag: self._value_skipper(s, True, s.nullable or s.kafka_type != STRUCT)
            for s in struct_fields(cls)
            if s.tag is not None
        }

        def skip_struct(buf: Buf, pos: int) -> int:
            for before, skip in compiled:
                pos = skip(buf, pos + before)
            pos += trailing
            if flexible:
                count, pos = _skip_tags_start(buf, pos)
                for _ in range(count):
                    tag, pos = read_uvarint(buf, pos)
                    _size, pos = read_uvarint(buf, pos)
                    skip_tag = tagged.get(tag)
                    if skip_tag is None:
                        raise _Stop  # the native reader raises KeyError on unknown tags
                    # The native reader reads a known tag by its type, as Kafka's does.
                    pos = skip_tag(buf, pos)
            return pos

        return skip_struct

    def _value_skipper(self, spec: FieldSpec, flexible: bool, nullable: bool) -> Skipper:
        if spec.array:
            return self._array_skipper(spec, flexible)
        kafka_type = spec.kafka_type
        if kafka_type == STRUCT:
            assert spec.struct is not None
            skip_struct = self._structs.get(spec.struct)
            if skip_struct is None:
                skip_struct = self._structs[spec.struct] = self._compile_struct(spec.struct)
            if not nullable:
                return skip_struct

            def skip_nullable_struct(buf: Buf, pos: int) -> int:
                (marker,) = INT8.unpack_from(buf, pos)
                return pos + 1 if marker == -1 else skip_struct(buf, pos + 1)

            return skip_nullable_struct
        if kafka_type in ("string", "bytes", "records"):
            return _blob_skipper(kafka_type == "string", flexible)
        size = _FIXED_SIZES[kafka_type]

        def skip_fixed(buf: Buf, pos: int) -> int:
            return pos + size

        return skip_fixed

    def _array_skipper(self, spec: FieldSpec, flexible: bool) -> Skipper:
        name = spec.name
        size = _FIXED_SIZES.get(spec.kafka_type, 0)
        element = None
        if not size:
            element = self._value_skipper(dataclasses.replace(spec, array=False), flexible, False)
        legacy_count = INT32.unpack_from

        def skip_array(buf: Buf, pos: int) -> int:
            if flexible:
                count, pos = _read_length(buf, pos)
            else:
                (count,) = legacy_count(buf, pos)
                pos += 4
            if count < 0:
                return pos
            # As Kafka does: every element takes at least one byte.
            if count > len(buf) - pos:
                raise RemoteProtocolError(f"array {name} of {count} exceeds the buffer")
            if element is None:
                pos += count * size
                if pos > len(buf):
                    raise _Stop
                return pos
            for _ in range(count):
                pos = element(buf, pos)
            return pos

        return skip_array


def _blob_skipper(is_text: bool, flexible: bool) -> Skipper:
    legacy_length = (INT16 if is_text else INT32).unpack_from
    width = 2 if is_text else 4

    def skip_blob(buf: Buf, pos: int) -> int:
        if flexible:
            size, pos = _read_length(buf, pos)
        else:
            (size,) = legacy_length(buf, pos)
            pos += width
        if size > 0:
            pos += size
            if pos > len(buf):
                raise _Stop
        return pos

    return skip_blob
