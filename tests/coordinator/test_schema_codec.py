"""The coordinator records' schema codec: uuid, []string, single structs and tagged fields."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

import pytest

from strom.coordinator.schema_codec import (
    STRING_ARRAY,
    Field,
    RecordFormatError,
    Schema,
    decode_versioned,
    encode_versioned,
    plain,
)


@dataclass(frozen=True, slots=True)
class Inner:
    n: int


@dataclass(frozen=True, slots=True)
class Outer:
    id: uuid.UUID
    names: tuple[str, ...]
    inner: Inner | None
    a: int = 7
    b: int = 0
    tagged_inner: Inner | None = None


INNER = Schema("Inner", (Field("n", "int16"),), valid=(0, 1), flexible_from=1, build=plain(Inner))
OUTER = Schema(
    "Outer",
    (
        Field("id", "uuid"),
        Field("names", STRING_ARRAY),
        Field("inner", INNER, nullable=True, single=True),
        # Declared out of tag order: they are still written in ascending tag order.
        Field("b", "int64", default=0, tag=3),
        Field("a", "int32", default=7, tag=1),
        Field("tagged_inner", INNER, nullable=True, tag=2, single=True),
    ),
    valid=(0, 1),
    flexible_from=1,
    build=plain(Outer),
)
ID = uuid.UUID(int=0x0102030405060708090A0B0C0D0E0F10)


def test_non_flexible_version_has_no_tags() -> None:
    obj = Outer(ID, ("x", "yz"), Inner(3), a=99, b=5, tagged_inner=Inner(1))
    raw = encode_versioned(OUTER, 0, obj)
    # uuid, int32-count array of int16-length strings, a nullable struct marked by a byte.
    assert raw == (
        b"\x00\x00" + ID.bytes + struct.pack(">i", 2) + b"\x00\x01x" + b"\x00\x02yz" + b"\x01" + struct.pack(">h", 3)
    )
    # Tagged fields do not exist before the flexible versions: read back as their defaults.
    assert decode_versioned(OUTER, raw) == Outer(ID, ("x", "yz"), Inner(3))
    null_inner = encode_versioned(OUTER, 0, Outer(ID, (), None))
    assert null_inner.endswith(struct.pack(">i", 0) + b"\xff")
    assert decode_versioned(OUTER, null_inner) == Outer(ID, (), None)


def test_flexible_tags_only_when_not_default_and_in_tag_order() -> None:
    plain_obj = Outer(ID, ("x",), None)
    raw = encode_versioned(OUTER, 1, plain_obj)
    assert raw == b"\x00\x01" + ID.bytes + b"\x02\x02x" + b"\xff" + b"\x00"
    assert decode_versioned(OUTER, raw) == plain_obj

    tagged = Outer(ID, ("x",), Inner(3), a=0, b=-2, tagged_inner=Inner(4))
    raw = encode_versioned(OUTER, 1, tagged)
    assert raw == (
        b"\x00\x01" + ID.bytes + b"\x02\x02x"
        + b"\x01" + struct.pack(">h", 3) + b"\x00"  # the untagged struct: marker byte, n, its tags
        + b"\x03"  # three tagged fields
        + b"\x01\x04" + struct.pack(">i", 0)  # tag 1 (a = 0 differs from its default 7)
        + b"\x02\x04" + b"\x01" + struct.pack(">h", 4) + b"\x00"  # tag 2: uvarint marker, struct
        + b"\x03\x08" + struct.pack(">q", -2)  # tag 3
    )
    assert decode_versioned(OUTER, raw) == tagged


def test_field_types_are_checked() -> None:
    with pytest.raises(ValueError):
        Field("x", "float64")
    with pytest.raises(ValueError):
        Field("x", "[]bytes")
    with pytest.raises(ValueError):
        Field("x", "int32", single=True)
    with pytest.raises(ValueError):
        encode_versioned(OUTER, 1, Outer("not-a-uuid", (), None))  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # a non-nullable array
        encode_versioned(OUTER, 1, Outer(ID, None, None))  # type: ignore[arg-type]


def test_truncated_values_are_format_errors() -> None:
    raw = encode_versioned(OUTER, 1, Outer(ID, ("x",), Inner(1), b=9))
    for cut in range(2, len(raw)):
        with pytest.raises(RecordFormatError):
            decode_versioned(OUTER, raw[:cut])
    with pytest.raises(RecordFormatError):  # a null string inside a []string
        decode_versioned(OUTER, b"\x00\x01" + ID.bytes + b"\x02\x00" + b"\xff\x00")
