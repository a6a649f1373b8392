"""Kafka wire primitives: fixed-width Structs, unsigned varints, tagged-field sections.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; ``buf`` is any object
indexable by int (bytes, bytearray, memoryview). Truncation raises RemoteProtocolError.
"""

from __future__ import annotations

from struct import Struct
from typing import Final

from .errors import RemoteProtocolError

INT8: Final = Struct(">b")
INT16: Final = Struct(">h")
INT32: Final = Struct(">i")
INT64: Final = Struct(">q")
UINT16: Final = Struct(">H")

# Kafka caps unsigned varints at 5 bytes (32-bit values); anything longer is malformed.
_MAX_UVARINT_SHIFT: Final = 28

EMPTY_TAGGED_FIELDS: Final = b"\x00"
_ONE_BYTE_UVARINTS: Final = [bytes([n]) for n in range(0x80)]  # lengths and counts, mostly


def uvarint(value: int) -> bytes:
    """Encode an unsigned varint (7 bits per byte, least-significant group first)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE_UVARINTS[value]
    out = bytearray()
    write_uvarint(out, value)
    return bytes(out)


def write_uvarint(out: bytearray, value: int) -> None:
    if value < 0x80:
        if value < 0:
            raise ValueError(f"unsigned varint cannot be negative: {value}")
        out.append(value)
        return
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    try:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
        value = byte & 0x7F
        shift = 7
        while True:
            pos += 1
            byte = buf[pos]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos + 1
            shift += 7
            if shift > _MAX_UVARINT_SHIFT:
                raise RemoteProtocolError("unsigned varint longer than 5 bytes")
    except IndexError:
        raise RemoteProtocolError("truncated unsigned varint") from None


def skip_tagged_fields(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """Skip a whole tagged-field section (all tags are unknown to the caller)."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise RemoteProtocolError("tagged field runs past the end of the buffer")
    return pos
