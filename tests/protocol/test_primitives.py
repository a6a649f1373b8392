"""Unsigned varints and tagged-field sections (KIP-482)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.protocol.errors import RemoteProtocolError
from strom.protocol.primitives import read_uvarint, skip_tagged_fields, uvarint, write_uvarint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
    ],
)
def test_known_encodings(value: int, encoded: bytes) -> None:
    assert uvarint(value) == encoded
    assert read_uvarint(encoded, 0) == (value, len(encoded))
    assert read_uvarint(b"\xee" + encoded + b"\x00", 1) == (value, len(encoded) + 1)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, 2**35 - 1))
def test_round_trip(value: int) -> None:
    out = bytearray(b"x")
    write_uvarint(out, value)
    assert read_uvarint(memoryview(bytes(out)), 1) == (value, len(out))


def test_negative_is_refused() -> None:
    with pytest.raises(ValueError):
        uvarint(-1)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff\xff"])
def test_truncated(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        read_uvarint(data, 0)


def test_longer_than_five_bytes() -> None:
    assert read_uvarint(b"\xff\xff\xff\xff\x7f", 0) == (2**35 - 1, 5)
    with pytest.raises(RemoteProtocolError):
        read_uvarint(b"\xff\xff\xff\xff\xff\x01", 0)


def test_skip_tagged_fields() -> None:
    assert skip_tagged_fields(b"\x00rest", 0) == 1
    section = b"\x02" + uvarint(0) + uvarint(3) + b"abc" + uvarint(1000) + uvarint(0)
    assert skip_tagged_fields(section + b"rest", 0) == len(section)
    big = b"\x01" + uvarint(5) + uvarint(200) + b"x" * 200
    assert skip_tagged_fields(b"..." + big, 3) == 3 + len(big)


@pytest.mark.parametrize(
    "section",
    [
        b"",
        b"\x01",  # one field, no tag
        b"\x01\x00",  # no size
        b"\x01\x00\x05abc",  # payload past the end
        b"\x02\x00\x00",  # second field missing
    ],
)
def test_skip_tagged_fields_truncated(section: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        skip_tagged_fields(section, 0)
