"""Encoder from plain dict trees to Kafka wire bytes, driven by message dataclasses.

Each struct class is compiled once into a tuple of small writer closures
``w(out: bytearray, d: Mapping)``; consecutive fixed-width fields share one
precompiled Struct. Values are looked up by field name, so one dict can serve every
version of a message: keys of other versions are ignored, fields a dict lacks take
their default (dataclass default, else null if nullable, else the zero value).

A key that no version of the message has at that place is a mistake (a misspelled field
would otherwise go out as its default, e.g. error NONE): it raises UnknownFieldError. The
check is one set comparison per struct written, against the struct's own fields and, once a
dict carries a key of another version, against every version's fields at the same path
(``set_versions_provider`` says which classes are versions of one message).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from uuid import UUID

from .errors import LocalProtocolError, UnknownFieldError
from .primitives import INT16, INT32, write_uvarint
from .schema import EPOCH, STRUCT, FieldSpec, is_flexible, struct_fields

Writer = Callable[[bytearray, Any], None]

_ONE_MS: Final = datetime.timedelta(milliseconds=1)
_ZERO_UUID: Final = bytes(16)
_MISSING: Final = object()

# Fixed-width types whose Python values pack directly (no conversion needed).
_PLAIN_CODES: Final = {
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint8": "B",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
    "float64": "d",
    "bool": "?",
    "error_code": "h",
}


def _delta_ms(value: Any) -> Any:
    # Integer arithmetic: total_seconds() is a float and loses precision for i64 ranges.
    return value // _ONE_MS if isinstance(value, datetime.timedelta) else value


def _time_ms(value: Any) -> Any:
    if value is None:
        return -1
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return (value - EPOCH) // _ONE_MS
    return value


def _uuid_bytes(value: Any) -> bytes:
    if value is None:
        return _ZERO_UUID
    if isinstance(value, UUID):
        return value.bytes
    if isinstance(value, bytes | bytearray) and len(value) == 16:
        return bytes(value)
    raise LocalProtocolError(f"not a UUID: {value!r}")


# Fixed-width types that need a conversion first (ints are accepted as milliseconds).
_CONVERTED: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "timedelta_i32": ("i", _delta_ms),
    "timedelta_i64": ("q", _delta_ms),
    "datetime_i64": ("q", _time_ms),
    "uuid": ("16s", _uuid_bytes),
}


@functools.cache
def _entity_fields(cls: type) -> tuple[str, ...] | None:
    if not dataclasses.is_dataclass(cls):
        return None
    return tuple(f.name for f in dataclasses.fields(cls))  # without the ClassVars


def _as_mapping(value: Any, struct_name: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    cls: type = type(value)
    names = _entity_fields(cls)
    if names is None:
        raise LocalProtocolError(f"{struct_name}: expected a mapping, got {type(value).__name__}")
    # Entities (e.g. dataclass defaults of struct fields) are encoded like dicts.
    return {name: getattr(value, name) for name in names}


# -- unknown keys ----------------------------------------------------------------------

# Every version of the message a top-level class belongs to (the codec sets this; by default a
# class is its only version).
VersionsProvider = Callable[[type], Sequence[type]]


def _only_itself(cls: type) -> Sequence[type]:
    return (cls,)


_versions_of: VersionsProvider = _only_itself
# Where each compiled struct class is used: (parent class, field name) pairs.
_parents: dict[type, set[tuple[type, str]]] = {}


def set_versions_provider(provider: VersionsProvider) -> None:
    """Say which top-level classes are versions of one message: a dict may carry the fields
    of any of them (at the same path) without being refused."""
    global _versions_of
    _versions_of = provider


def _paths(cls: type) -> list[tuple[type, tuple[str, ...]]]:
    """(top-level class, field path) of each place ``cls`` is used in a compiled message."""
    parents = _parents.get(cls)
    if not parents:
        return [(cls, ())]
    return [(root, path + (name,)) for parent, name in sorted(parents, key=repr) for root, path in _paths(parent)]


def _follow(cls: type, path: Iterable[str]) -> type | None:
    for name in path:
        spec = next((s for s in struct_fields(cls) if s.name == name), None)
        if spec is None or spec.struct is None:
            return None
        cls = spec.struct
    return cls


def allowed_fields(cls: type) -> frozenset[str]:
    """The keys a dict for ``cls`` may carry: the fields of this struct in every version of
    its message, at the same place."""
    names = {s.name for s in struct_fields(cls)}
    for root, path in _paths(cls):
        for version in _versions_of(root):
            found = _follow(version, path)
            if found is not None:
                names.update(s.name for s in struct_fields(found))
    return frozenset(names)


def _unknown_fields(cls: type, d: Mapping[str, Any], allowed: frozenset[str]) -> UnknownFieldError:
    unknown = sorted(str(key) for key in d if key not in allowed)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    root, path = _paths(cls)[0]
    where = ".".join((root.__name__, *path)) if path else cls.__name__
    if path:
        where += f" ({cls.__name__})"
    return UnknownFieldError(
        f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)} in {where}: no version of "
        f"this struct has {'them' if len(unknown) > 1 else 'it'}",
        struct=where,
        fields=tuple(unknown),
    )


# -- value writers: w(out, value) ------------------------------------------------------


def _fixed_writer(kafka_type: str) -> Writer:
    if kafka_type in _PLAIN_CODES:
        pack = struct.Struct(">" + _PLAIN_CODES[kafka_type]).pack

        def write_plain(out: bytearray, value: Any) -> None:
            out += pack(value)

        return write_plain
    code, convert = _CONVERTED[kafka_type]
    pack = struct.Struct(">" + code).pack

    def write_converted(out: bytearray, value: Any) -> None:
        out += pack(convert(value))

    return write_converted


def _blob_writer(is_text: bool, flexible: bool, nullable: bool) -> Writer:
    """string (int16 length) or bytes/records (int32 length); compact when flexible."""
    legacy_len = INT16.pack if is_text else INT32.pack
    legacy_null = legacy_len(-1)

    def write_blob(out: bytearray, value: Any) -> None:
        if value is None:
            if not nullable:
                raise LocalProtocolError("null value for a non-nullable field")
            if flexible:
                out.append(0)
            else:
                out += legacy_null
            return
        data = value.encode() if isinstance(value, str) else value
        if flexible:
            write_uvarint(out, len(data) + 1)
        else:
            out += legacy_len(len(data))
        out += data

    return write_blob


def _array_writer(spec: FieldSpec, flexible: bool) -> Writer:
    kafka_type, nullable = spec.kafka_type, spec.nullable
    legacy_null = INT32.pack(-1)
    elem_code: str | None = None
    convert: Callable[[Any], Any] | None = None
    element: Writer | None = None
    if kafka_type in _PLAIN_CODES:
        elem_code = _PLAIN_CODES[kafka_type]
    elif kafka_type in _CONVERTED:
        elem_code, convert = _CONVERTED[kafka_type]
    else:
        element = _scalar_or_struct_writer(spec, flexible, nullable=False)

    def write_array(out: bytearray, items: Any) -> None:
        if items is None:
            if not nullable:
                raise LocalProtocolError(f"null for non-nullable array {spec.name}")
            if flexible:
                out.append(0)
            else:
                out += legacy_null
            return
        count = len(items)
        if flexible:
            write_uvarint(out, count + 1)
        else:
            out += INT32.pack(count)
        if element is not None:
            for item in items:
                element(out, item)
        elif count:
            # One pack call for a whole primitive array (struct caches the format).
            values = items if convert is None else [convert(v) for v in items]
            out += struct.pack(f">{count}{elem_code}", *values)

    return write_array


def _scalar_or_struct_writer(spec: FieldSpec, flexible: bool, nullable: bool) -> Writer:
    kafka_type = spec.kafka_type
    if kafka_type == STRUCT:
        assert spec.struct is not None
        write_struct = struct_writer(spec.struct)
        if not nullable:
            return write_struct

        def write_nullable_struct(out: bytearray, value: Any) -> None:
            # KIP-893: int8 marker, -1 = null, 1 = present.
            if value is None:
                out.append(0xFF)
            else:
                out.append(1)
                write_struct(out, value)

        return write_nullable_struct
    if kafka_type in ("string", "bytes", "records"):
        return _blob_writer(kafka_type == "string", flexible, nullable)
    return _fixed_writer(kafka_type)


def _value_writer(spec: FieldSpec, flexible: bool, nullable: bool) -> Writer:
    if spec.array:
        return _array_writer(spec, flexible)
    return _scalar_or_struct_writer(spec, flexible, nullable)


# -- field writers: w(out, mapping) ----------------------------------------------------


def _fixed_group_writer(group: list[FieldSpec]) -> Writer:
    pack = struct.Struct(">" + "".join(_PLAIN_CODES[s.kafka_type] for s in group)).pack
    entries = tuple((s.name, s.default) for s in group)
    if len(entries) == 1:
        ((name, default),) = entries

        def write_one(out: bytearray, d: Mapping[str, Any]) -> None:
            value = d.get(name)
            out += pack(default if value is None else value)

        return write_one

    def write_group(out: bytearray, d: Mapping[str, Any]) -> None:
        get = d.get
        out += pack(*[default if (v := get(name)) is None else v for name, default in entries])

    return write_group


def _field_writer(spec: FieldSpec, flexible: bool) -> Writer:
    write_value = _value_writer(spec, flexible, spec.nullable)
    name, default = spec.name, spec.default
    if spec.nullable:

        def write_nullable_field(out: bytearray, d: Mapping[str, Any]) -> None:
            write_value(out, d.get(name, default))

        return write_nullable_field

    def write_field(out: bytearray, d: Mapping[str, Any]) -> None:
        # None for a non-nullable field means "use the default", like a missing key.
        value = d.get(name)
        write_value(out, default if value is None else value)

    return write_field


def _write_no_tags(out: bytearray, d: Mapping[str, Any]) -> None:
    out.append(0)


def _tag_section_writer(tagged: list[FieldSpec]) -> Writer:
    entries = []
    for spec in sorted(tagged, key=lambda s: s.tag or 0):
        assert spec.tag is not None
        # Tagged scalars may carry null (compact encoding); a tagged struct never has
        # a KIP-893 null marker.
        nullable = spec.nullable or spec.kafka_type != STRUCT
        write_value = _value_writer(spec, flexible=True, nullable=nullable)
        default_bytes = bytearray()
        write_value(default_bytes, spec.default)
        entries.append((spec.tag, spec.name, spec.default, spec.nullable, write_value, default_bytes))

    def write_tags(out: bytearray, d: Mapping[str, Any]) -> None:
        get = d.get
        present = []
        for tag, name, default, nullable, write_value, default_bytes in entries:
            value = get(name, _MISSING)
            if value is _MISSING or (value is None and not nullable) or value == default:
                continue
            buf = bytearray()
            write_value(buf, value)
            # Kafka writes a tag only when it differs from the default; compare the
            # encodings so dicts, ints and entities compare like their wire form.
            if buf != default_bytes:
                present.append((tag, buf))
        write_uvarint(out, len(present))
        for tag, buf in present:
            write_uvarint(out, tag)
            write_uvarint(out, len(buf))
            out += buf

    return write_tags


@functools.cache
def struct_writer(cls: type) -> Writer:
    """Compile (once per class) a writer that encodes a mapping or entity of ``cls``."""
    flexible = is_flexible(cls)
    specs = struct_fields(cls)
    for spec in specs:
        if spec.struct is not None:
            _parents.setdefault(spec.struct, set()).add((cls, spec.name))
    writers: list[Writer] = []
    group: list[FieldSpec] = []
    for spec in specs:
        if spec.tag is not None:
            if not flexible:
                raise LocalProtocolError(f"tagged field {spec.name} in non-flexible {cls}")
            continue
        if not spec.array and spec.kafka_type in _PLAIN_CODES:
            group.append(spec)
            continue
        if group:
            writers.append(_fixed_group_writer(group))
            group = []
        writers.append(_field_writer(spec, flexible))
    if group:
        writers.append(_fixed_group_writer(group))
    tagged = [s for s in specs if s.tag is not None]
    if flexible:
        writers.append(_tag_section_writer(tagged) if tagged else _write_no_tags)
    steps = tuple(writers)
    name = cls.__name__
    # Whether a dict's keys are all fields: of this version, then of every version once a dict
    # carries a key of another one (a bound method: one call per struct written).
    known = frozenset(s.name for s in specs).issuperset

    def write_struct(out: bytearray, d: Any) -> None:
        nonlocal known
        if type(d) is not dict:
            d = _as_mapping(d, name)
        if not known(d):
            allowed = allowed_fields(cls)
            known = allowed.issuperset
            if not known(d):
                raise _unknown_fields(cls, d, allowed)
        for step in steps:
            step(out, d)

    return write_struct


def encode_struct(cls: type, body: Any) -> bytes:
    out = bytearray()
    try:
        struct_writer(cls)(out, body)
    except LocalProtocolError:
        raise
    except (struct.error, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {cls.__name__}: {exc}") from exc
    return bytes(out)
