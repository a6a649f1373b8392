"""FetchResponse encoder for versions 4-18, written by hand so record data is never copied,
and a decoder for the flexible versions (12+) that a follower reads, which leaves the records
as views of the response (strom.server.replica_fetcher appends them without a copy).

The records of each partition are passed through as opaque chunks that only need a
``length`` (for bytes, ``len``): the server sends file regions with os.sendfile. The result
is a list of chunks (bytes or the caller's region objects) and the total body size.
Layouts follow FetchResponse.json: v5 adds log_start_offset, v7 error_code and session_id,
v11 preferred_read_replica, v12 flexible encoding with tagged fields, v13 topic ids.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RemoteProtocolError
from .primitives import read_uvarint, uvarint

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


def _node_endpoints(nodes: list[dict[str, Any]]) -> bytes:
    """The response's tagged fields section (v16+): NodeEndpoints (tag 0, KIP-951) or none."""
    if not nodes:
        return b"\x00"
    data = bytearray(uvarint(len(nodes) + 1))
    for n in nodes:
        data += _I32.pack(n["node_id"]) + _compact_string(n["host"]) + _I32.pack(n["port"])
        data += _compact_string(n.get("rack")) + b"\x00"
    return b"\x01" + uvarint(0) + uvarint(len(data)) + bytes(data)


def _compact_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode()
    return uvarint(len(data) + 1) + data


def encode_fetch_response(
    version: int,
    topics: list[FetchTopicResult],
    *,
    error_code: int = 0,
    session_id: int = 0,
    throttle_time_ms: int = 0,
    node_endpoints: list[dict[str, Any]] | None = None,
) -> tuple[list[Any], int]:
    """The body as chunks, and its size. ``node_endpoints`` (node_id, host, port, rack) go out
    from v16 on, for the leaders named in partitions' ``current_leader``."""
    flexible = version >= 12
    count: Callable[[int], bytes] = (lambda n: uvarint(n + 1)) if flexible else _I32.pack  # an array's length prefix
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
    if version >= 16:
        buf += _node_endpoints(node_endpoints or [])
    elif flexible:
        buf.append(0)  # top-level tagged fields
    out.append(bytes(buf))
    return out, total + len(buf)


@dataclass(slots=True)
class FetchedPartition:
    """One partition of a decoded FetchResponse; ``records`` is a view into the response."""

    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: memoryview | None
    diverging_epoch: tuple[int, int] | None = None  # (epoch, end_offset), tag 0
    current_leader: tuple[int, int] | None = None  # (leader_id, leader_epoch), tag 1


@dataclass(slots=True)
class FetchedTopic:
    name: str | None  # v12
    topic_id: uuid.UUID | None  # v13+
    partitions: list[FetchedPartition]


_HEAD = struct.Struct(">ihi")  # throttle_time_ms, error_code, session_id
_PARTITION_FIXED = struct.Struct(">ihqqq")  # index, error, high watermark, LSO, log start
_I32_I64 = struct.Struct(">iq")
_I32_I32 = struct.Struct(">ii")


def decode_fetch_response(version: int, body: bytes | memoryview, pos: int = 0) -> tuple[int, list[FetchedTopic]]:
    """(top-level error code, topics) of a FetchResponse body, v12+. Raises
    RemoteProtocolError when it does not parse."""
    if version < 12:
        raise ValueError("only flexible FetchResponses (v12+) are decoded by hand")
    view = memoryview(body)
    try:
        _throttle, error_code, _session = _HEAD.unpack_from(view, pos)
        pos += _HEAD.size
        count, pos = read_uvarint(view, pos)
        topics = []
        for _ in range(count - 1):
            name = topic_id = None
            if version >= 13:
                topic_id = uuid.UUID(bytes=bytes(view[pos : pos + 16]))
                pos += 16
            else:
                size, pos = read_uvarint(view, pos)
                name = bytes(view[pos : pos + size - 1]).decode()
                pos += size - 1
            partitions = []
            count_p, pos = read_uvarint(view, pos)
            for _ in range(count_p - 1):
                index, error, hw, lso, start = _PARTITION_FIXED.unpack_from(view, pos)
                pos += _PARTITION_FIXED.size
                aborted, pos = read_uvarint(view, pos)
                for _ in range(aborted - 1):
                    pos += _ABORTED.size
                    pos = _skip_tags(view, pos)
                pos += 4  # preferred_read_replica
                size, pos = read_uvarint(view, pos)
                records = None
                if size:
                    end = pos + size - 1
                    if end > len(view):
                        raise RemoteProtocolError("records run past the end of the response")
                    records = view[pos:end]
                    pos = end
                partition = FetchedPartition(index, error, hw, lso, start, records)
                pos = _read_partition_tags(view, pos, partition)
                partitions.append(partition)
            pos = _skip_tags(view, pos)
            topics.append(FetchedTopic(name, topic_id, partitions))
        return error_code, topics
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"malformed FetchResponse v{version}: {exc}") from exc


def _skip_tags(view: memoryview, pos: int) -> int:
    count, pos = read_uvarint(view, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(view, pos)
        size, pos = read_uvarint(view, pos)
        pos += size
    return pos


def _read_partition_tags(view: memoryview, pos: int, partition: FetchedPartition) -> int:
    count, pos = read_uvarint(view, pos)
    for _ in range(count):
        tag, pos = read_uvarint(view, pos)
        size, pos = read_uvarint(view, pos)
        if tag == 0:
            partition.diverging_epoch = _I32_I64.unpack_from(view, pos)
        elif tag == 1:
            partition.current_leader = _I32_I32.unpack_from(view, pos)
        pos += size
    return pos
