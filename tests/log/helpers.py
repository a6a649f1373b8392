"""Helpers for log tests: batches built with strom's own record codec."""

from __future__ import annotations

from strom.log.partition import PartitionLog
from strom.protocol.records import build_batch, decode_records, validate_batches

NOW = 1_700_000_000_000


def batch(*values: bytes | None, key: bytes | None = b"k", timestamp: int = NOW, compression: int = 0) -> bytes:
    return build_batch([(key, v, [], timestamp + i) for i, v in enumerate(values)], compression=compression)


def append(log: PartitionLog, data: bytes, now_ms: int = NOW):
    return log.append(data, validate_batches(data, 1 << 30), now_ms)


def values(log: PartitionLog, start: int = 0) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record from ``start`` through the log's batch iterator."""
    out = []
    data = log.read_bytes(start)
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
        out.extend((r.offset, r.value) for r in decode_records(data[pos : pos + size]) if r.offset >= start)
        pos += size
    return out


def read_values(log: PartitionLog, offset: int, max_bytes: int = 1 << 20) -> list[tuple[int, bytes | None]]:
    """What a consumer gets from ``log.read``: whole batches decoded, a partial tail dropped."""
    import os

    result = log.read(offset, max_bytes)
    out = []
    for region in result.regions:
        data = os.pread(region.fd, region.length, region.position)
        pos = 0
        while pos + 12 <= len(data):
            size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
            if pos + size > len(data):
                break
            out.extend((r.offset, r.value) for r in decode_records(data[pos : pos + size]) if r.offset >= offset)
            pos += size
    return out


