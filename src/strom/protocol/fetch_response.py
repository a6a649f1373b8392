"""FetchResponse encoder for versions 4-18, written by hand so record data is never copied.

The records of each partition are passed through as opaque chunks that only need a
``length`` (for bytes, ``len``): the server sends file regions with os.sendfile. The result
is a list of chunks (bytes or the caller's region objects) and the total body size.
Layouts follow FetchResponse.json: v5 adds log_start_offset, v7 error_code and session_id,
v11 preferred_read_replica, v12 flexible encoding with tagged fields, v13 topic ids.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from .primitives import uvarint

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I16_I32 = struct.Struct(">hi")
_PARTITION_HEAD = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_I64 = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")
_EPOCH_END_OFFSET = struct.Struct(">iqB")  # epoch, end_offset, no tagged fields
_LEADER_ID_AND_EPOCH = struct.Struct(">iiB")  # leader_id, leader_epoch, no tagged fields


def _partition_tags(p: FetchPartitionResult) -> bytes:
    """The partition's tagged fields section (v12+): count, then (tag, size, data) each."""
    tags = []
    if p.diverging_epoch is not None:
        tags.append((0, _EPOCH_END_OFFSET.pack(*p.diverging_epoch, 0)))
    if p.current_leader is not None:
        tags.append((1, _LEADER_ID_AND_EPOCH.pack(*p.current_leader, 0)))
    if not tags:
        return b"\x00"
    out = bytearray(uvarint(len(tags)))
    for tag, data in tags:
        out += uvarint(tag) + uvarint(len(data)) + data
    return bytes(out)


@dataclass(slots=True)
class FetchPartitionResult:
    partition_index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: list[tuple[int, int]] | None = None  # (producer_id, first_offset)
    preferred_read_replica: int = -1
    records: list[Any] = field(default_factory=list)  # bytes or objects with .length
    records_size: int = 0
    # v12+ tagged fields: (epoch, end_offset) where a follower's log diverges (KIP-320), and
    # (leader_id, leader_epoch) of the current leader after NOT_LEADER_OR_FOLLOWER (KIP-951).
    diverging_epoch: tuple[int, int] | None = None
    current_leader: tuple[int, int] | None = None


@dataclass(slots=True)
class FetchTopicResult:
    name: str | None
    topic_id: uuid.UUID | None
    partitions: list[FetchPartitionResult]


def encode_fetch_response(
    version: int,
    topics: list[FetchTopicResult],
    *,
    error_code: int = 0,
    session_id: int = 0,
    throttle_time_ms: int = 0,
) -> tuple[list[Any], int]:
    flexible = version >= 12
    count = (lambda n: uvarint(n + 1)) if flexible else _I32.pack  # an array's length prefix
    out: list[Any] = []
    total = 0  # body bytes
    buf = bytearray(_I32.pack(throttle_time_ms))
    if version >= 7:
        buf += _I16_I32.pack(error_code, session_id)
    buf += count(len(topics))
    for topic in topics:
        if version >= 13:
            buf += (topic.topic_id or uuid.UUID(int=0)).bytes
        else:
            name = (topic.name or "").encode()
            buf += uvarint(len(name) + 1) if flexible else _I16.pack(len(name))
            buf += name
        buf += count(len(topic.partitions))
        for p in topic.partitions:
            buf += _PARTITION_HEAD.pack(p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset)
            if version >= 5:
                buf += _I64.pack(p.log_start_offset)
            aborted = p.aborted_transactions
            if aborted is None:
                buf += b"\x00" if flexible else _I32.pack(-1)
            else:
                buf += count(len(aborted))
                for producer_id, first_offset in aborted:
                    buf += _ABORTED.pack(producer_id, first_offset)
                    if flexible:
                        buf.append(0)
            if version >= 11:
                buf += _I32.pack(p.preferred_read_replica)
            size = p.records_size
            buf += uvarint(size + 1) if flexible else _I32.pack(size)
            if size:
                out.append(bytes(buf))
                total += len(buf) + size
                buf.clear()
                out.extend(p.records)
            if flexible:
                buf += _partition_tags(p)
        if flexible:
            buf.append(0)  # topic tagged fields
    if flexible:
        buf.append(0)  # top-level tagged fields
    out.append(bytes(buf))
    return out, total + len(buf)
